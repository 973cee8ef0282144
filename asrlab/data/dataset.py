"""Utterances -> feature tensors, and padded batches.

`SpeechDataset` reads audio through `asrlab.audio.load_audio` and makes features through the
one `FeaturePipeline`; augmentation (asrlab.data.augment, whose docstring gives the order) is
applied only when the dataset is built with an `AugmentConfig`, i.e. only for training. Every
draw comes from one generator seeded by (seed, epoch, utterance index); a switch that is off
draws nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asrlab.audio import load_audio
from asrlab.config import AugmentConfig
from asrlab.data.augment import (NOISE_KINDS, add_noise, augment_wave, channel_wave,
                                 generated_noise, spec_augment, speed_factor, speed_perturb,
                                 vtlp_factor)
from asrlab.data.featcache import FeatureCache
from asrlab.data.manifest import Utterance
from asrlab.features import FeaturePipeline


@dataclass
class Example:
    id: str
    text: str
    feats: np.ndarray  # (T, F); with encoder states (T, S, D)
    tokens: list[int]


@dataclass
class Batch:
    ids: list[str]
    texts: list[str]
    feats: torch.Tensor  # (B, T, F) or (B, T, S, D) encoder states, zero-padded
    feat_lens: torch.Tensor  # (B,) frames
    targets: torch.Tensor  # (B, L) token ids, zero-padded
    target_lens: torch.Tensor  # (B,)

    def to(self, device) -> "Batch":
        return Batch(self.ids, self.texts, self.feats.to(device), self.feat_lens.to(device),
                     self.targets.to(device), self.target_lens.to(device))


def collate(examples: list[Example]) -> Batch:
    """Pad to (B, T, ...) features (log-mels (T, F), or a frozen encoder's states (T, S, D))
    and (B, L) targets."""
    B = len(examples)
    T = max(e.feats.shape[0] for e in examples)
    L = max(1, max(len(e.tokens) for e in examples))
    feats = torch.zeros(B, T, *examples[0].feats.shape[1:])
    targets = torch.zeros(B, L, dtype=torch.long)
    for b, e in enumerate(examples):
        feats[b, :e.feats.shape[0]] = torch.from_numpy(e.feats)
        targets[b, :len(e.tokens)] = torch.tensor(e.tokens, dtype=torch.long)
    return Batch([e.id for e in examples], [e.text for e in examples], feats,
                 torch.tensor([e.feats.shape[0] for e in examples]), targets,
                 torch.tensor([len(e.tokens) for e in examples]))


# What SpeechDataset.features runs the augmentation draws on to learn, cheaply, whether they
# leave the waveform alone (long enough for every step's filters, e.g. band_limit's filtfilt).
CACHE_PROBE_WAVE = np.full(4000, 1e-3, np.float32)


class SpeechDataset(torch.utils.data.Dataset):
    def __init__(self, utts: list[Utterance], pipeline: FeaturePipeline, tokenizer,
                 augment: AugmentConfig | None = None, seed: int = 0, cache_audio: bool = True,
                 noises: list[np.ndarray] | None = None, waves: dict[str, np.ndarray] | None = None,
                 feature_cache: FeatureCache | None = None, states=None):
        """`waves` (id -> waveform) pre-fills the audio cache, e.g. from asrlab.data.scan;
        `feature_cache` keeps training log-mels across epochs (bit-identical batches);
        `states` (asrlab.encoder_cache.EncoderStates) makes the items a frozen encoder's
        states (T', S, D) of the drawn speed variant instead of features, masked as
        SpecAugment masks features."""
        self.utts, self.pipeline, self.tokenizer = utts, pipeline, tokenizer
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.cache: dict[int, np.ndarray] | None = {} if cache_audio else None
        if self.cache is not None and waves:
            self.cache.update({i: waves[u.id] for i, u in enumerate(utts) if u.id in waves})
        self.feat_cache: dict[int, np.ndarray] = {}
        self.noises = noises or []
        # training: raw log-mels per (utterance, speed factor), see asrlab.data.featcache
        self.feature_cache = feature_cache if augment is not None else None
        self.states = states

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utts)

    def wave(self, i: int) -> np.ndarray:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        u = self.utts[i]
        wave = load_audio(u.audio_filepath, self.pipeline.cfg.sample_rate, u.offset, u.span)
        if self.cache is not None:
            self.cache[i] = wave
        return wave

    def features(self, i: int) -> np.ndarray:
        if self.states is not None:
            return self.encoder_states(i)
        if self.augment is None:  # evaluation: features never change, compute once
            if i not in self.feat_cache:
                self.feat_cache[i] = self.pipeline(self.wave(i))
            return self.feat_cache[i]
        rng = np.random.default_rng((self.seed, self.epoch, i))
        aug = self.augment
        speed = speed_factor(aug, rng)
        if self.feature_cache is not None:
            # Try the draws on a short stand-in first: when no step changes the waveform and
            # the filterbank is not warped, the generator is now where the full path would have
            # left it and the raw log-mel of this speed variant can come from the cache.
            before = rng.bit_generator.state
            stand_in = CACHE_PROBE_WAVE
            if self.wave_steps(stand_in, rng) is stand_in and vtlp_factor(aug, rng) == 1.0:
                raw = self.feature_cache.get_or_compute(
                    i, speed, lambda: self.pipeline.raw(speed_perturb(self.wave(i), speed)))
                return spec_augment(self.pipeline.normalize(raw), aug, rng)
            rng.bit_generator.state = before
        wave = self.wave_steps(speed_perturb(self.wave(i), speed), rng)
        return spec_augment(self.pipeline(wave, vtlp_factor(aug, rng)), aug, rng)

    def encoder_states(self, i: int) -> np.ndarray:
        """A frozen encoder's states of utterance i, (T', S, D) float16: at 1.0x for
        evaluation; for training at the drawn speed, with SpecAugment's masks over time and
        over the encoder's dimensions (the waveform steps cannot apply to cached states:
        Config.validate refuses them)."""
        if self.augment is None:
            return self.states.get(i, 1.0)
        rng = np.random.default_rng((self.seed, self.epoch, i))
        aug = self.augment
        speed = speed_factor(aug, rng)
        states = self.states.get(i, speed)
        return spec_augment(states, aug, rng, states.shape[-1] / self.pipeline.cfg.n_mels)

    def wave_steps(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The waveform augmentations after speed perturbation, in order; each step returns
        its input object unchanged when it draws "off" (the feature cache relies on that)."""
        aug, sr = self.augment, self.pipeline.cfg.sample_rate
        wave, _ = augment_wave(wave, aug, rng, self.seed, sr)
        if aug.noise_prob > 0 and rng.random() < aug.noise_prob:
            snr_db = float(rng.uniform(*aug.noise_snr_db))
            wave = add_noise(wave, self.noise(len(wave), rng), snr_db)
        wave, _ = channel_wave(wave, aug, rng, sr)
        return wave

    def noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """A noise file from a random start (add_noise tiles it), or generated white/pink."""
        if self.noises:
            noise = self.noises[int(rng.integers(len(self.noises)))]
            return np.roll(noise, -int(rng.integers(len(noise))))
        return generated_noise(NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))], n, rng)

    def __getitem__(self, i: int) -> Example:
        u = self.utts[i]
        return Example(u.id, u.text, self.features(i), self.tokenizer.encode(u.text))
