"""Checkpoints carry everything inference needs: config, vocabulary, feature statistics and
weights. `load(path)` takes a checkpoint file or a run folder (its best checkpoint)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from asrlab.config import Config
from asrlab.data.tokenizer import Tokenizer, tokenizer_from_dict
from asrlab.features import FeaturePipeline, FeatureStats
from asrlab.models import CTCModel, build_model

FORMAT_VERSION = 1
AVERAGE = "average.pt"  # a run's mean weights of its best epochs (asrlab.averaging)
NBEST_DIR = "nbest"  # the epochs kept for it, in the run folder


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, ...); the message names the path, the space
    it needed and what to do. No temporary file is left behind."""


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder -> its average.pt (the mean of its best epochs, when training kept it:
    asrlab.averaging), else best.pt, else last.pt; a file -> itself."""
    path = Path(path)
    if path.is_dir():
        for name in (AVERAGE, "best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        if (path / "config.yaml").is_file():
            raise FileNotFoundError(f"{path}: the run has no checkpoint yet (it stopped before "
                                    f"the end of its first epoch); train it again: asrlab train "
                                    f"... --out {path} --overwrite")
        raise FileNotFoundError(f"{path}: no best.pt or last.pt in this run folder; train first "
                                f"(asrlab train ... --out {path})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint or run folder")
    return path


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, config: Config, tokenizer,
                    stats: FeatureStats, meta: dict, train_state: dict | None = None) -> Path:
    """Write atomically (temp file + rename): a crash never leaves a half-written checkpoint."""
    path = Path(path)
    state = {
        "format": FORMAT_VERSION,
        "config": config.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "feature_stats": stats.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
        "train_state": train_state,
    }
    write_atomically(path, lambda f: torch.save(state, f), state_bytes(state))
    return path


def state_bytes(state: dict) -> int:
    """About how many bytes a checkpoint takes on disk (its tensors; the rest is small)."""
    total = 0

    def walk(x):
        nonlocal total
        if isinstance(x, torch.Tensor):
            total += x.numel() * x.element_size()
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(state)
    return total + 64 * 1024


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX: the directory entry is data of the folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported here (e.g. Windows): the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: Path, write, size_hint: int = 0) -> None:
    """`write(file)` into PATH.tmp, fsync it, rename it over `path`, fsync the folder: after a
    crash at any moment `path` is either the old file or the new one, complete. On any failure
    the .tmp is removed; a full disk raises CheckpointWriteError naming the path and the space."""
    import errno
    import shutil

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(path.parent).free
            err = CheckpointWriteError(
                f"{path}: disk full while writing it (needs about {size_hint / 2**20:.1f} MB, "
                f"{free / 2**20:.1f} MB free on {path.parent}); free some space, then continue "
                f"with `asrlab train --resume {path.parent}`")
            err.errno = e.errno
            raise err from None
        raise
    fsync_dir(path.parent)


@dataclass
class Checkpoint:
    path: Path
    config: Config
    tokenizer: Tokenizer
    stats: FeatureStats
    model: CTCModel
    meta: dict = field(default_factory=dict)
    train_state: dict | None = None

    @property
    def pipeline(self) -> FeaturePipeline:
        return FeaturePipeline(self.config.features, self.stats)


def load(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable asrlab checkpoint ({e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: not an asrlab checkpoint (format {FORMAT_VERSION} expected)")
    config = Config.from_dict(state["config"])
    tokenizer = tokenizer_from_dict(state["tokenizer"])
    stats = FeatureStats.from_dict(state["feature_stats"])
    model = build_model(config, tokenizer.vocab_size)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return Checkpoint(path, config, tokenizer, stats, model, state.get("meta", {}),
                      state.get("train_state"))
