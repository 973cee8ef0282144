"""Utterances -> feature tensors, and padded batches.

`SpeechDataset` reads audio through `asrlab.audio.load_audio` and makes features through the
one `FeaturePipeline`; augmentation (speed perturbation, SpecAugment) is applied only when the
dataset is built with an `AugmentConfig`, i.e. only for training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asrlab.audio import load_audio, speed_perturb
from asrlab.config import AugmentConfig
from asrlab.data.manifest import Utterance
from asrlab.features import FeaturePipeline, spec_augment


@dataclass
class Example:
    id: str
    text: str
    feats: np.ndarray  # (T, F)
    tokens: list[int]


@dataclass
class Batch:
    ids: list[str]
    texts: list[str]
    feats: torch.Tensor  # (B, T, F), zero-padded
    feat_lens: torch.Tensor  # (B,) frames
    targets: torch.Tensor  # (B, L) token ids, zero-padded
    target_lens: torch.Tensor  # (B,)

    def to(self, device) -> "Batch":
        return Batch(self.ids, self.texts, self.feats.to(device), self.feat_lens.to(device),
                     self.targets.to(device), self.target_lens.to(device))


def collate(examples: list[Example]) -> Batch:
    B = len(examples)
    T = max(e.feats.shape[0] for e in examples)
    F = examples[0].feats.shape[1]
    L = max(1, max(len(e.tokens) for e in examples))
    feats = torch.zeros(B, T, F)
    targets = torch.zeros(B, L, dtype=torch.long)
    for b, e in enumerate(examples):
        feats[b, :e.feats.shape[0]] = torch.from_numpy(e.feats)
        targets[b, :len(e.tokens)] = torch.tensor(e.tokens, dtype=torch.long)
    return Batch([e.id for e in examples], [e.text for e in examples], feats,
                 torch.tensor([e.feats.shape[0] for e in examples]), targets,
                 torch.tensor([len(e.tokens) for e in examples]))


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix `noise` (tiled or cut to length) into `wave` at `snr_db`."""
    reps = -(-len(wave) // max(1, len(noise)))
    noise = np.tile(noise, reps)[:len(wave)]
    p_sig = float(np.mean(wave ** 2)) + 1e-12
    p_noise = float(np.mean(noise ** 2)) + 1e-12
    return (wave + noise * np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))).astype(np.float32)


class SpeechDataset(torch.utils.data.Dataset):
    def __init__(self, utts: list[Utterance], pipeline: FeaturePipeline, tokenizer,
                 augment: AugmentConfig | None = None, seed: int = 0, cache_audio: bool = True,
                 noises: list[np.ndarray] | None = None, waves: dict[str, np.ndarray] | None = None):
        """`waves` (id -> waveform) pre-fills the audio cache, e.g. from asrlab.data.scan."""
        self.utts, self.pipeline, self.tokenizer = utts, pipeline, tokenizer
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.cache: dict[int, np.ndarray] | None = {} if cache_audio else None
        if self.cache is not None and waves:
            self.cache.update({i: waves[u.id] for i, u in enumerate(utts) if u.id in waves})
        self.feat_cache: dict[int, np.ndarray] = {}
        self.noises = noises or []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utts)

    def wave(self, i: int) -> np.ndarray:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        wave = load_audio(self.utts[i].audio_filepath, self.pipeline.cfg.sample_rate)
        if self.cache is not None:
            self.cache[i] = wave
        return wave

    def features(self, i: int) -> np.ndarray:
        if self.augment is None:  # evaluation: features never change, compute once
            if i not in self.feat_cache:
                self.feat_cache[i] = self.pipeline(self.wave(i))
            return self.feat_cache[i]
        rng = np.random.default_rng((self.seed, self.epoch, i))
        wave = self.wave(i)
        aug = self.augment
        if len(aug.speed_perturb) > 1 or aug.speed_perturb[0] != 1.0:
            wave = speed_perturb(wave, float(rng.choice(aug.speed_perturb)))
        if self.noises and rng.random() < aug.noise_prob:
            noise = self.noises[int(rng.integers(len(self.noises)))]
            wave = add_noise(wave, noise, float(rng.uniform(*aug.noise_snr_db)))
        return spec_augment(self.pipeline(wave), aug, rng)

    def __getitem__(self, i: int) -> Example:
        u = self.utts[i]
        return Example(u.id, u.text, self.features(i), self.tokenizer.encode(u.text))
