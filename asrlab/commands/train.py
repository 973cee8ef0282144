"""`asrlab train`: train a CTC model into a run folder."""

from __future__ import annotations

import argparse
import errno
import json
from pathlib import Path

import yaml

from asrlab.config import FINETUNE_TRAIN, Config, ConfigError, preset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", type=Path, help="training manifest (JSON Lines)")
    p.add_argument("--val", type=Path, help="validation manifest")
    p.add_argument("--out", type=Path, help="run folder to create")
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue RUN from its last checkpoint (with --epochs N to train longer)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a fresh run in an --out folder that holds one (deletes its "
                        "checkpoints, metrics and findings); without it such a folder is refused")
    p.add_argument("--preset", default="default",
                   help="named recipe: default, finetune (what --init-from fills in), seed-crnn, "
                        "seed-report (the original failing run)")
    p.add_argument("--config", type=Path, help="YAML config; applied over the preset")
    p.add_argument("--model", help="model name: crnn-sub4 (default), seed-crnn, conformer")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-minutes", type=float, help="stop after this much wall time (0: no limit)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--batch-size", type=int, help="fixed utterances per batch (default: by duration)")
    p.add_argument("--ctc-smoothing", type=float, help="uniform-label smoothing weight, e.g. 0.1")
    p.add_argument("--init-gain", type=float, help="xavier init gain (only with model.init: xavier)")
    p.add_argument("--tokenizer", choices=["char", "bpe"])
    p.add_argument("--vocab-size", type=int, help="BPE vocabulary size")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="any config value, e.g. --set augment.freq_masks=0 (YAML syntax)")
    p.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT",
                   help="fine-tune: start from this trained model's weights (same architecture; "
                        "its model and feature settings are taken unless you set them), in a new "
                        "run folder with a fresh optimizer; fine-tuning defaults (lr 5e-4, "
                        "warmup 0.2 epochs, 20 epochs, early stop 6) fill what you do not set")
    p.add_argument("--recompute-cmvn", action="store_true", default=None,
                   help="with --init-from: estimate the feature statistics on this training set "
                        "(default: keep the source model's)")
    p.add_argument("--freeze-encoder-epochs", type=int, metavar="N",
                   help="with --init-from: train only the output layer for the first N epochs")
    p.add_argument("--force", action="store_true", help="train even if the checks find errors")
    p.add_argument("--no-progress", action="store_true", help="plain log lines, no progress bar")


def overrides_from_args(args) -> dict:
    """Flags -> {"section": {"key": value}}; only the flags the user gave."""
    o: dict = {}

    def put(section, key, value):
        if value is not None:
            o.setdefault(section, {})[key] = value

    put("model", "name", args.model)
    put("train", "epochs", args.epochs)
    if args.max_minutes is not None:  # 0 means no limit, which is None in the config
        o.setdefault("train", {})["max_minutes"] = args.max_minutes or None
    put("train", "lr", args.lr)
    put("train", "warmup_epochs", args.warmup_epochs)
    put("train", "batch_size", args.batch_size)
    put("train", "ctc_smoothing", args.ctc_smoothing)
    put("model", "init_gain", args.init_gain)
    put("train", "seed", args.seed)
    put("train", "threads", args.threads)
    if args.tokenizer:
        o["tokenizer"] = args.tokenizer
    if args.vocab_size:
        o["vocab_size"] = args.vocab_size
    for item in args.set:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep:
            raise ConfigError(f"--set {item!r}: use SECTION.KEY=VALUE, e.g. --set train.lr=1e-4")
        if dot:
            o.setdefault(section, {})[name] = yaml.safe_load(value)
        else:
            o[section] = yaml.safe_load(value)
    put("train", "init_from", getattr(args, "init_from", None))
    put("train", "recompute_cmvn", getattr(args, "recompute_cmvn", None))
    put("train", "freeze_encoder_epochs", getattr(args, "freeze_encoder_epochs", None))
    if getattr(args, "init_from", None):
        o = finetune_overrides(args, o)
    return o


def finetune_overrides(args, user: dict) -> dict:
    """With --init-from: the source model's features, model, text rules and tokenizer settings
    (so that its weights fit), and config.FINETUNE_TRAIN under the default preset, for every
    key neither a flag, --set nor the --config file sets; the user's values on top."""
    from asrlab.checkpoint import load

    try:
        source = load(args.init_from).config.to_dict()
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"--init-from {args.init_from}: {e}") from None
    set_by_user = {(section, key) for section, values in user.items()
                   for key in (values if isinstance(values, dict) else [None])}
    if getattr(args, "config", None):
        data = yaml.safe_load(Path(args.config).read_text()) or {}
        set_by_user |= {(section, key) for section, values in data.items()
                        for key in (values if isinstance(values, dict) else [None])}
    base: dict = {}
    for section in ("features", "model", "text"):
        for key, value in source[section].items():
            if (section, key) not in set_by_user and (section, None) not in set_by_user:
                base.setdefault(section, {})[key] = value
    for key in ("tokenizer", "vocab_size"):
        if (key, None) not in set_by_user:
            base[key] = source[key]
    if getattr(args, "preset", "default") == "default":
        for key, value in FINETUNE_TRAIN.items():
            if ("train", key) not in set_by_user:
                base.setdefault("train", {})[key] = value
    for section, values in user.items():
        if isinstance(values, dict):
            base.setdefault(section, {}).update(values)
        else:
            base[section] = values
    return base


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
    cfg = preset(args.preset)
    if args.config:  # only the keys the file sets override the preset
        Config.from_yaml(args.config)  # validates the file's keys and types, naming it
        cfg = cfg.merged(yaml.safe_load(args.config.read_text()) or {})
    return cfg.merged(overrides_from_args(args)), args.train, args.val, args.out, False


def run(args) -> int:
    from rich.console import Console

    from asrlab.checkpoint import CheckpointWriteError
    from asrlab.run_folder import RunFolderError
    from asrlab.train import TrainingRefused, train

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
                       overwrite=getattr(args, "overwrite", False), run_info=info)
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
    console.print(f"  checkpoint {result.run_dir / 'best.pt'}  metrics {result.run_dir / 'metrics.jsonl'}"
                  f"  TensorBoard: tensorboard --logdir {result.run_dir / 'tb'}")
    return 0
