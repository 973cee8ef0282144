"""A per-run cache of log-mel features, so each (utterance, speed factor) is computed once.

Training draws one speed factor per utterance and epoch from a small set (0.9, 1.0, 1.1), so
the same few log-mels are computed again every epoch; profiled, that was ~13% of an epoch.
The cache keeps them: SpecAugment and every other random step after the log-mel still run fresh
each epoch, and an utterance whose waveform is changed by another augmentation this epoch (noise,
reverberation, ...) or whose filterbank is warped (VTLP) bypasses the cache, so batches are
bit-identical to the uncached path.

What is stored is the raw log-mel (before CMVN), so the entries do not depend on the feature
statistics. Memory is bounded (`memory_mb`); entries past the bound go to memory-mapped `.npy`
files under `disk_dir`, or are not cached when there is none. Disk entries live in a folder named
by a hash of the feature config, and each file name hashes the audio file's path, size and
modification time, offset, span and the speed factor: a changed config or a changed file never
reads stale features.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from asrlab.config import FeatureConfig
from asrlab.data.manifest import Utterance

FORMAT_VERSION = 1  # bump when what LogMel computes changes without its config changing


def config_namespace(cfg: FeatureConfig) -> str:
    """A short hash of everything that shapes the raw log-mel."""
    blob = json.dumps({"v": FORMAT_VERSION, **asdict(cfg)}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def entry_name(utt: Utterance, speed: float) -> str:
    """A file name for one variant, changing whenever its audio file changes."""
    try:
        st = os.stat(utt.audio_filepath)
        stamp = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = (None, None)
    blob = json.dumps([str(utt.audio_filepath), stamp, utt.offset, utt.span, speed])
    return hashlib.sha1(blob.encode()).hexdigest()[:24] + ".npy"


class FeatureCache:
    """(utterance index, speed factor) -> raw log-mel (T, F), bounded in memory."""

    def __init__(self, cfg: FeatureConfig, utts: list[Utterance], memory_mb: float,
                 disk_dir: str | Path | None = None, namespace: str | None = None):
        """`namespace` names the disk folder (default: a hash of `cfg`); the encoder-state
        cache (asrlab.encoder_cache) gives one that names the encoder too."""
        self.utts = utts
        self.limit = int(memory_mb * 2 ** 20)
        self.disk = Path(disk_dir) / (namespace or config_namespace(cfg)) if disk_dir else None
        self.memory: dict[tuple[int, float], np.ndarray] = {}
        self.bytes = 0
        self.hits = self.misses = 0

    def _path(self, i: int, speed: float) -> Path:
        assert self.disk is not None
        return self.disk / entry_name(self.utts[i], speed)

    def get(self, i: int, speed: float) -> np.ndarray | None:
        feats = self.memory.get((i, speed))
        if feats is None and self.disk is not None:
            path = self._path(i, speed)
            if path.is_file():
                try:
                    feats = np.load(path, mmap_mode="r")
                except (OSError, ValueError):  # a torn write from a killed run: recompute
                    feats = None
        if feats is None:
            self.misses += 1
        else:
            self.hits += 1
        return feats

    def put(self, i: int, speed: float, feats: np.ndarray) -> None:
        if self.bytes + feats.nbytes <= self.limit:
            self.memory[(i, speed)] = feats
            self.bytes += feats.nbytes
        elif self.disk is not None:
            path = self._path(i, speed)
            self.disk.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
            try:
                np.save(tmp, feats)
                os.replace(tmp, path)  # atomic: a reader sees the whole entry or none
            except OSError:  # disk full or read-only: run on uncached rather than fail
                tmp.unlink(missing_ok=True)

    def get_or_compute(self, i: int, speed: float, compute) -> np.ndarray:
        feats = self.get(i, speed)
        if feats is None:
            feats = compute()
            self.put(i, speed, feats)
        return feats
