"""`asrlab train`: train a CTC model into a run folder."""

from __future__ import annotations

import argparse
import errno
import json
from pathlib import Path

from asrlab.commands import run_flags
from asrlab.commands.run_flags import put
from asrlab.config import Config, ConfigError


#: train's own flags that set one config value each (they do not change what the pre-flight
#: checks, so `asrlab check` does not take them): flag, type, (section, key), help
CONFIG_FLAGS = (
    ("--epochs", int, ("train", "epochs"), None),
    ("--max-minutes", float, ("train", "max_minutes"),
     "stop after this much wall time (0: no limit)"),
    ("--lr", float, ("train", "lr"), "peak learning rate"),
    ("--warmup-epochs", float, ("train", "warmup_epochs"), None),
    ("--batch-size", int, ("train", "batch_size"),
     "fixed utterances per batch (default: by duration)"),
    ("--ctc-smoothing", float, ("train", "ctc_smoothing"),
     "uniform-label smoothing weight, e.g. 0.1"),
    ("--init-gain", float, ("model", "init_gain"),
     "xavier init gain (only with model.init: xavier)"),
    ("--average-best", int, ("train", "average_best"),
     "RUN/average.pt: the mean weights of the N best epochs, the run's model when it "
     "validates no worse than best.pt (0 or 1: off)"),
    ("--seed", int, ("train", "seed"), None),
    ("--threads", int, ("train", "threads"), "torch CPU threads"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", type=Path, help="training manifest (JSON Lines)")
    p.add_argument("--val", type=Path, help="validation manifest")
    p.add_argument("--out", type=Path, help="run folder to create")
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue RUN from its last checkpoint (with --epochs N to train longer)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a fresh run in an --out folder that holds one (deletes its "
                        "checkpoints, metrics and findings); without it such a folder is refused")
    run_flags.add_arguments(p)  # --preset --config --model --tokenizer --set --init-from ...
    for flag, kind, _, text in CONFIG_FLAGS:
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--freeze-encoder-epochs", type=int, metavar="N",
                   help="with --init-from: train only the output layer for the first N epochs")
    p.add_argument("--force", action="store_true", help="train even if the checks find errors")
    p.add_argument("--no-progress", action="store_true", help="plain log lines, no progress bar")


def train_flags(args) -> dict:
    """train's own flags (those that do not change what the pre-flight checks) -> overrides."""
    o: dict = {}
    for flag, _, (section, key), _ in CONFIG_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:  # given; --max-minutes 0 means no limit, None in the config
            o.setdefault(section, {})[key] = None if key == "max_minutes" and value == 0 else value
    return o


def user_overrides(args) -> dict:
    """Every flag the user gave -> {"section": {"key": value}} (--set over train's own flags;
    --freeze-encoder-epochs over --set)."""
    o = run_flags.overrides(args, train_flags(args))
    put(o, "train", "freeze_encoder_epochs", args.freeze_encoder_epochs)
    return o


def overrides_from_args(args) -> dict:
    """Flags -> {"section": {"key": value}}: only the flags the user gave; with --init-from,
    the source's settings and the fine-tuning defaults under them (asrlab.finetune)."""
    from asrlab.preflight import run_overrides

    return run_overrides(user_overrides(args), args.init_from, args.config, args.preset)


def resolve(args) -> tuple[Config, Path, Path, Path, bool]:
    """(config, train manifest, val manifest, run folder, resume?)"""
    if args.resume:
        run = args.resume
        info_path = run / "run.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{run}: not a run folder (no run.json); "
                                    "--resume takes the --out folder of an earlier asrlab train")
        if not (run / "last.pt").is_file():
            from asrlab.run_folder import no_checkpoint_message

            raise FileNotFoundError(no_checkpoint_message(run))
        info = json.loads(info_path.read_text())
        base = Config.from_yaml(run / "config.yaml")
        return (base.merged(overrides_from_args(args)), Path(args.train or info["train"]),
                Path(args.val or info["val"]), run, True)
    missing = [f"--{n}" for n in ("train", "val", "out") if getattr(args, n) is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (or --resume RUN)")
    cfg = run_flags.config_from_args(args, user_overrides(args))
    return cfg, args.train, args.val, args.out, False


def run(args) -> int:
    from rich.console import Console

    from asrlab.checkpoint import CheckpointWriteError
    from asrlab.preflight import TrainingRefused
    from asrlab.run_folder import RunFolderError
    from asrlab.train import train

    console = Console(stderr=True)
    try:
        cfg, train_path, val_path, out, resume = resolve(args)
        cfg.validate()
    except ConfigError as e:
        console.print(f"[red]config error:[/red] {e}")
        return 2
    for name, path in (("training", train_path), ("validation", val_path)):
        if path.is_file() and not path.read_text(errors="replace").strip():
            console.print(f"[red]refusing to train:[/red] {path}: the {name} manifest is empty "
                          f"(no lines); write one JSON line per utterance (asrlab prepare makes "
                          f"manifests from a folder of audio and transcripts)")
            return 1
    info = {"train": str(train_path.resolve()), "val": str(val_path.resolve())}
    try:  # run.json is written by train() once the folder is locked and may be (re)used
        result = train(train_path, val_path, out, cfg, resume=resume, force=args.force,
                       show_progress=not args.no_progress, console=console,
                       overwrite=args.overwrite, run_info=info)
    except (TrainingRefused, RunFolderError) as e:
        console.print(f"[red]refusing to train:[/red] {e}")
        return 1
    except CheckpointWriteError as e:
        console.print(f"[red]cannot save the checkpoint:[/red] {e}")
        return 1
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        console.print(f"[red]disk full:[/red] writing {e.filename or out}: {e.strerror}; free "
                      f"some space, then continue with `asrlab train --resume {out}`")
        return 1
    console.print(f"done ({result.stopped}): best val CER {result.best_cer:.4f} at epoch "
                  f"{result.best_epoch}; run folder {result.run_dir}")
    if result.average is not None:
        console.print(f"  {result.average.summary()}")
    console.print(f"  checkpoint {result.checkpoint}  metrics {result.run_dir / 'metrics.jsonl'}"
                  f"  TensorBoard: tensorboard --logdir {result.run_dir / 'tb'}")
    return 0
