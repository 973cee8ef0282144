"""Checkpoints carry everything inference needs: config, vocabulary, feature statistics and
weights. `load(path)` takes a checkpoint file or a run folder (its best checkpoint)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from asrlab.config import Config
from asrlab.data.tokenizer import tokenizer_from_dict
from asrlab.features import FeaturePipeline, FeatureStats
from asrlab.models import CTCModel, build_model

FORMAT_VERSION = 1


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder -> its best.pt (else last.pt); a file -> itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
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
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


@dataclass
class Checkpoint:
    path: Path
    config: Config
    tokenizer: object
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
    model = build_model(config.model, config.features.n_mels, tokenizer.vocab_size)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return Checkpoint(path, config, tokenizer, stats, model, state.get("meta", {}),
                      state.get("train_state"))
