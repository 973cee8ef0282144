"""Configuration as data: frozen dataclasses whose defaults train well, YAML in and out.

A `Config` has four parts that follow the pipeline: features -> augment -> model -> train.
Multi-field rules live in one place, `Config.validate()`, and every message says how to fix it.
Presets (`PRESETS`) are named configs: `default`, `seed-crnn` (the `seed-report` recipe with
correct initialization) and `seed-report` (the failing seed run, xavier gain 0.1 included).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import yaml

from asrlab.data.text import TextNormalizer


class ConfigError(ValueError):
    """A configuration that cannot train; the message says what to change."""


#: What an encoder takes in (`features.kind`): "logmel", asrlab's log-mel filterbank normalized
#: with the training set's statistics (CMVN); "whisper", Whisper's own log-mel (n_fft 400, hop
#: 160, Slaney filters, log10, floored 8 below the maximum, (x + 4) / 4; no statistics);
#: "waveform", the samples themselves ((S, 1) per utterance), zero-mean unit-variance per
#: utterance when `normalize` is on (wav2vec2 / HuBERT / WavLM: their feature extractor's
#: `do_normalize`).
FEATURE_KINDS = ("logmel", "whisper", "waveform")
#: Whisper's log-mel parameters, fixed by its weights (openai/whisper audio.py).
WHISPER_FEATURES = {"sample_rate": 16000, "win_ms": 25.0, "hop_ms": 10.0, "n_fft": 400}
#: Whisper's input window: its encoder takes at most this much audio (3,000 log-mel frames).
WHISPER_WINDOW_S = 30.0


@dataclass(frozen=True)
class FeatureConfig:
    kind: str = "logmel"  # see FEATURE_KINDS
    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    fmin: float = 20.0
    fmax: float = 7600.0
    # Subtract each utterance's mean log-mel (over its frames within 50 dB of the loudest)
    # before the global normalization: removes a fixed microphone/channel colouring, which
    # helps on speakers or microphones unseen in training. Off by default: on the synthetic
    # corpus there is no channel to remove.
    utterance_mean: bool = False
    # kind "waveform": zero-mean unit-variance per utterance (a feature extractor's do_normalize)
    normalize: bool = True
    # kind "whisper": seconds of silence (zero samples) appended to every utterance before its
    # log-mel, in training, evaluation and inference alike, never past Whisper's 30 s window.
    # Whisper's encoder only ever saw speech followed by its 30 s padding; on tightly trimmed
    # clips (FSDD) a word's last letters then had no frames left to be emitted in ("thre",
    # "fou"). The output frames over the silence count, so CTC can emit there.
    pad_end_s: float = 0.0

    def padded_samples(self, n_samples):
        """Samples the features are made of for n_samples of audio (an int or a NumPy array):
        n_samples plus pad_end_s of silence, the silence cut where Whisper's window ends."""
        pad = int(round(self.pad_end_s * self.sample_rate))
        if pad == 0:
            return n_samples
        room = int(WHISPER_WINDOW_S * self.sample_rate) - n_samples  # how far the window goes
        return n_samples + (room.clip(0, pad) if hasattr(room, "clip") else min(max(room, 0), pad))

    @property
    def uses_stats(self) -> bool:
        """Whether features are normalized with statistics of the training set (CMVN)."""
        return self.kind == "logmel"


@dataclass(frozen=True)
class AugmentConfig:
    """Train-time augmentation; all of it is off at evaluation and inference."""
    speed_perturb: tuple[float, ...] = (0.9, 1.0, 1.1)
    freq_masks: int = 2
    freq_mask_width: int = 15  # bins, at most
    time_masks: int = 2
    time_mask_ratio: float = 0.05  # each mask at most this fraction of the utterance
    noise_dir: str | None = None  # folder of noise WAVs; None: generated noise
    noise_prob: float = 0.0
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    # Vocal-tract-length perturbation (Jaitly & Hinton 2013): each utterance's mel filters are
    # placed on a frequency axis scaled by a factor drawn from [low, high], so that one speaker
    # sounds like speakers with longer or shorter vocal tracts. (1.0, 1.0) is off.
    vtlp: tuple[float, float] = (1.0, 1.0)
    # Robustness to rooms, voices and channels (asrlab.data.augment); each off at its default.
    # Reverberation: a bank of reverb_rooms simulated shoebox rooms (pyroomacoustics' image
    # method, RT60 drawn from reverb_rt60 seconds); each utterance picks one.
    reverb_prob: float = 0.0
    reverb_rt60: tuple[float, float] = (0.2, 0.7)
    reverb_rooms: int = 32
    # Re-excitation (an LPC vocoder): the voice's envelope kept, its source replaced by pulses
    # at an F0 drawn from vocode_f0 Hz and noise, as formant/parametric synthesizers speak.
    vocode_prob: float = 0.0
    vocode_f0: tuple[float, float] = (80.0, 250.0)
    # Pitch shift in semitones keeping the duration (resampling + WSOLA).
    pitch_prob: float = 0.0
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    # Band-limiting: "telephone" (300-3400 Hz band-pass) or "8k" (down to 8 kHz and back).
    bandlimit_prob: float = 0.0
    bandlimit_kinds: tuple[str, ...] = ("telephone", "8k")
    # Gain in dB drawn per utterance; (0, 0) is off.
    gain_db: tuple[float, float] = (0.0, 0.0)
    # Mild clipping: hard-clip at clip_level (fraction of the peak) in clip_prob of utterances.
    clip_prob: float = 0.0
    clip_level: tuple[float, float] = (0.5, 0.9)


#: The model names a config may give; asrlab.models.MODELS has a factory for each (config sits
#: below the models and does not import them; tests/models/test_registry.py checks the two agree).
#: "pretrained" is a pretrained speech encoder (model.pretrained.source) under a downstream.
MODEL_NAMES = ("crnn-sub4", "crnn-sub2", "seed-crnn", "conformer", "pretrained")
#: The pretrained encoders' kinds and the input each takes (features.kind).
PRETRAINED_INPUT = {"whisper": "whisper", "wav2vec2": "waveform", "hubert": "waveform",
                    "wavlm": "waveform"}


@dataclass(frozen=True)
class CRNNConfig:
    """crnn-sub4, crnn-sub2 and seed-crnn: conv front end + BiLSTM."""
    conv_channels: int = 32
    hidden: int = 256
    layers: int = 2


@dataclass(frozen=True)
class ConformerConfig:
    """conformer: conv subsampling + Conformer blocks."""
    conv_channels: int = 32
    d_model: int = 176
    heads: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15
    layers: int = 2


@dataclass(frozen=True)
class PretrainedConfig:
    """pretrained: a pretrained speech encoder (Whisper, wav2vec2, HuBERT, WavLM) under a
    downstream: its last layer (or a learned weighted sum of its layers, SUPERB's), a
    projection, a BiLSTM and the CTC head. `source` is a bundle name (`asrlab encoders` lists
    them) or a folder; `kind`, `arch` and `sha256` are filled in when the source is resolved
    (asrlab.pretrained), so a checkpoint rebuilds the network without the source."""
    source: str = ""
    kind: str = ""  # whisper | wav2vec2 | hubert | wavlm (from the source)
    arch: str = ""  # the encoder's dimensions, JSON (from the source)
    sha256: str = ""  # of the source's weights, when they were resolved
    layers_used: int | None = None  # the encoder's first N layers only (None: all)
    layers_trained: int = 0  # top layers that learn: 0 frozen (outputs cached), -1 all
    # True: SUPERB's softmax-weighted sum of every layer used; False: the last one. For Whisper
    # tiny.en the last one did better on voices never heard (seed 0): held-out espeak-ng voices
    # CER 27.0% vs 28.7%, FSDD's george 3.2% vs 3.8% WER (top 2 layers trained), and caches one
    # state per frame instead of layers + 1; the sum learns the voices trained on faster when
    # they are one engine's (1,111 espeak-ng utterances: val CER 0.05 in 390 s against 0.079
    # after 10 min, two seeds; docs/benchmarks.md, "Pretrained encoders")
    layer_sum: bool = False
    proj: int = 256  # projection of the encoder's width before the BiLSTM (0: none)
    hidden: int = 256  # downstream BiLSTM per direction (the seed's)
    layers: int = 2  # downstream BiLSTM layers (0: the head sits on the projection)
    stack: int = 1  # frames joined before the BiLSTM (2: half the frame rate, half the cost)
    encoder_lr_scale: float = 0.1  # trained encoder layers learn at this fraction of train.lr
    frozen_epochs: int = 1  # with layers_trained != 0: the trained layers wait this many epochs
    pad_to_30s: bool = False  # Whisper: pad every input to 30 s (Whisper's own way) and crop
    # Training computes the frozen part's states once per utterance and speed factor
    # (asrlab.encoder_cache) instead of every step; false: the encoder runs every step (what
    # waveform augmentation needs; a GPU may not mind).
    cache: bool = True

    @property
    def caches_states(self) -> bool:
        """Whether training runs from cached frozen states: `cache` on, some part frozen, and
        the trained blocks (if any) able to run from the frozen part's output (Whisper's can;
        the wav2vec2 family's run inside transformers' encoder, so only a frozen one caches)."""
        return self.cache and self.layers_trained != -1 and (
            self.layers_trained == 0 or self.kind == "whisper")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "crnn-sub4"  # see asrlab.models.MODELS
    # 0.1 (was 0.25): val CER 0.10 at epoch 16-17 instead of 18 at one thread on the espeak-ng
    # corpus (3 seeds; 14 vs 18 in the GPU sweep), earlier on the three-engine corpus too, and
    # held-out-engine CER unchanged (docs/benchmarks.md, "Fewer updates")
    dropout: float = 0.1
    # Initialization: None keeps PyTorch's defaults. "xavier" with init_gain=0.1 is the
    # `seed-report` preset's mistake (outputs start near-uniform and blank wins); kept for it.
    init: str | None = None
    init_gain: float = 1.0
    # One section per encoder family; only the one `name` picks is used. Defaults measured on
    # the default corpus (docs/benchmarks.md): 2 BiLSTM layers learn faster per CPU-second than
    # 3 (0.46 vs 0.76 val CER after 2 epochs).
    crnn: CRNNConfig = field(default_factory=CRNNConfig)
    conformer: ConformerConfig = field(default_factory=ConformerConfig)
    pretrained: PretrainedConfig = field(default_factory=PretrainedConfig)

    @property
    def section(self) -> str:
        """The section `name` uses: crnn, conformer or pretrained."""
        return model_section(self.name)

    def encoder_config(self):
        """The section of the encoder `name` picks."""
        return getattr(self, self.section)


def model_section(name: str) -> str:
    return {"conformer": "conformer", "pretrained": "pretrained"}.get(name, "crnn")


#: Model settings that change how a network trains, not its shape (Config.architecture).
TRAINING_ONLY = {"pretrained.source", "pretrained.layers_trained", "pretrained.encoder_lr_scale",
                 "pretrained.frozen_epochs"}

#: Keys of the flat ModelConfig of earlier versions (checkpoints, YAML files, `--set
#: model.hidden=...`): read into the section of the model they name (`_legacy_model_keys`).
LEGACY_MODEL_KEYS = ("conv_channels", "hidden", "layers", "d_model", "heads", "ff_mult",
                     "conv_kernel")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    max_minutes: float | None = 10.0
    optimizer: str = "adamw"  # adamw | adam
    lr: float = 3e-3
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.98)
    schedule: str = "cosine"  # cosine | plateau
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.02
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    grad_clip: float = 5.0
    batch_size: int | None = None  # fixed utterance count; None: bucket by batch_seconds
    batch_seconds: float = 30.0  # seconds of (padded) audio per batch: ~14 utterances, more updates
    # training utterances outside [min_duration, max_duration] seconds (measured on the audio)
    # are skipped and listed in RUN/skipped.jsonl; validation keeps every utterance
    min_duration: float = 0.0
    max_duration: float | None = 30.0
    sort_first_epoch: bool = True  # short utterances first in epoch 1
    early_stop_patience: int = 12  # epochs without a better val CER (ties: lower val loss)
    # RUN/average.pt: the mean weights of this many best epochs, kept when its val CER is not
    # worse than best.pt's (asrlab.averaging); 0 or 1: off (from scratch it did not help; the
    # pretrained recipe sets 5: docs/benchmarks.md)
    average_best: int = 1
    ctc_smoothing: float = 0.0  # weight of a uniform-label (entropy) term added to CTC
    seed: int = 0
    # torch threads; None: the physical cores, lowered while other processes keep cores busy
    # and raised again when they stop (asrlab.runtime.ThreadGovernor, CPU single-process runs)
    threads: int | None = None
    monitor_every: int = 25  # steps between doctor observations early in training
    tensorboard: bool = True
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    # auto: bf16 autocast on cuda and on CPUs with native bf16 (AVX512_BF16/AMX), else fp32
    precision: str = "auto"  # auto | fp32 | bf16
    num_workers: int = 0  # DataLoader workers (features are cheap next to the model on CPU)
    # Training log-mels of each (utterance, speed factor) are computed once and kept: up to
    # feature_cache_mb in memory, the rest as memory-mapped files under feature_cache_dir
    # (None: not kept). 0 and None: computed every epoch. See asrlab.data.featcache.
    feature_cache_mb: float = 2048.0
    feature_cache_dir: str | None = None
    # Fine-tuning: start from this run folder's (or checkpoint's) weights, same architecture;
    # a fresh optimizer and schedule in a new run folder (not --resume). See FINETUNE_TRAIN.
    init_from: str | None = None
    recompute_cmvn: bool = False  # estimate CMVN on this training set instead of keeping it
    freeze_encoder_epochs: int = 0  # train only the output layer for the first N epochs


@dataclass(frozen=True)
class Config:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    text: TextNormalizer = field(default_factory=TextNormalizer)  # transcript rules, saved
    tokenizer: str = "char"  # char | bpe
    vocab_size: int = 256  # bpe only

    def validate(self) -> "Config":
        problems = []
        if self.model.name not in MODEL_NAMES:
            problems.append(f"model.name {self.model.name!r} is unknown: use one of {sorted(MODEL_NAMES)}")
        if self.features.win_ms < self.features.hop_ms:
            problems.append("features.win_ms must be >= features.hop_ms (frames would skip audio)")
        win = int(self.features.sample_rate * self.features.win_ms / 1000)
        if win > self.features.n_fft:
            problems.append(f"features.n_fft ({self.features.n_fft}) must be >= the window "
                            f"({win} samples): raise n_fft to {1 << (win - 1).bit_length()}")
        if self.features.fmax > self.features.sample_rate / 2:
            problems.append(f"features.fmax ({self.features.fmax}) exceeds Nyquist "
                            f"({self.features.sample_rate / 2}): lower it")
        if self.train.batch_size is None and self.train.batch_seconds <= 0:
            problems.append("set train.batch_size or a positive train.batch_seconds")
        if self.train.max_duration is not None and \
                not 0 <= self.train.min_duration < self.train.max_duration:
            problems.append(f"train.min_duration ({self.train.min_duration}) must be >= 0 and "
                            f"below train.max_duration ({self.train.max_duration}); "
                            "null max_duration means no upper bound")
        if self.train.optimizer not in ("adamw", "adam"):
            problems.append(f"train.optimizer {self.train.optimizer!r}: use adamw or adam")
        if self.train.schedule not in ("cosine", "plateau"):
            problems.append(f"train.schedule {self.train.schedule!r}: use cosine or plateau")
        if self.train.device not in ("auto", "cpu", "cuda"):
            problems.append(f"train.device {self.train.device!r}: use auto, cpu or cuda")
        if self.train.precision not in ("auto", "fp32", "bf16"):
            problems.append(f"train.precision {self.train.precision!r}: use auto, fp32 or bf16")
        if self.train.feature_cache_mb < 0:
            problems.append(f"train.feature_cache_mb ({self.train.feature_cache_mb}) must be >= 0 "
                            "(megabytes of log-mels kept in memory; 0 keeps none)")
        if not 0 <= self.train.ctc_smoothing < 1:
            problems.append("train.ctc_smoothing must be in [0, 1): 0.05-0.1 is typical")
        if not 0 <= self.model.dropout < 1:
            problems.append("model.dropout must be in [0, 1)")
        if self.model.init not in (None, "xavier", "kaiming"):
            problems.append("model.init must be null (PyTorch defaults), xavier or kaiming")
        c = self.model.conformer
        if self.model.name == "conformer" and c.d_model % c.heads:
            problems.append(f"model.conformer.d_model ({c.d_model}) must be divisible by "
                            f"model.conformer.heads ({c.heads})")
        problems += _feature_problems(self.features, self.model, self.augment)
        if self.tokenizer not in ("char", "bpe"):
            problems.append(f"tokenizer {self.tokenizer!r}: use char or bpe")
        if not 0 <= self.augment.noise_prob <= 1:
            problems.append("augment.noise_prob must be in [0, 1]")
        if self.augment.noise_snr_db[0] > self.augment.noise_snr_db[1]:
            problems.append("augment.noise_snr_db must be [low, high] with low <= high")
        if any(s <= 0 for s in self.augment.speed_perturb):
            problems.append("augment.speed_perturb factors must be positive, e.g. [0.9, 1.0, 1.1]")
        low, high = self.augment.vtlp
        if not 0.5 <= low <= high <= 2.0:
            problems.append(f"augment.vtlp must be [low, high] with 0.5 <= low <= high <= 2.0, "
                            f"got [{low}, {high}]: e.g. [0.9, 1.1], or [1.0, 1.0] for off")
        if self.train.freeze_encoder_epochs < 0:
            problems.append("train.freeze_encoder_epochs must be >= 0 (0: nothing frozen)")
        if self.train.average_best < 0:
            problems.append(f"train.average_best must be >= 0, got {self.train.average_best}: "
                            f"the number of best epochs averaged (0 or 1: off; 5 is typical)")
        if self.train.freeze_encoder_epochs and not self.train.init_from:
            problems.append("train.freeze_encoder_epochs freezes a trained encoder: give "
                            "--init-from RUN too, or set it to 0")
        problems += _augment_problems(self.augment)
        if problems:
            raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
        return self

    def architecture(self) -> dict[str, Any]:
        """The settings that shape the network and what it takes in, flat ("model.crnn.hidden":
        256): what a checkpoint's weights are only meaningful with. Dropout, initialization and
        how much of a pretrained encoder trains may differ between runs of one network."""
        out = {f"features.{k}": v for k, v in _to_plain(dataclasses.asdict(self.features)).items()}
        out["model.name"] = self.model.name
        section = self.model.section
        for k, v in _to_plain(dataclasses.asdict(self.model.encoder_config())).items():
            if f"{section}.{k}" not in TRAINING_ONLY:
                out[f"model.{section}.{k}"] = v
        return out

    # ---- YAML / dict round trip ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        return _build(cls, data or {}, "config")

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Config":
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        return cls.from_dict(data)

    def merged(self, overrides: dict[str, Any]) -> "Config":
        """A copy with `{"train": {"lr": 1e-4}}`-style overrides applied (nested mappings
        merge key by key: {"model": {"pretrained": {"stack": 2}}} changes one value)."""
        return Config.from_dict(deep_merge(self.to_dict(), overrides))


def _feature_problems(f: FeatureConfig, m: ModelConfig, a: AugmentConfig) -> list[str]:
    """The input the encoder takes against the features configured, each with its fix."""
    problems = []
    if f.kind not in FEATURE_KINDS:
        return [f"features.kind {f.kind!r}: use one of {', '.join(FEATURE_KINDS)}"]
    if f.kind != "logmel" and tuple(a.vtlp) != (1.0, 1.0):
        problems.append(f"augment.vtlp warps asrlab's log-mel filterbank; features.kind "
                        f"{f.kind} has none: set augment.vtlp to [1.0, 1.0]")
    if not 0.0 <= f.pad_end_s <= 2.0:
        problems.append(f"features.pad_end_s {f.pad_end_s}: use seconds of silence between 0 "
                        f"and 2, e.g. 0.4")
    elif f.pad_end_s and f.kind != "whisper":
        problems.append(f"features.pad_end_s appends the silence Whisper's encoder was trained "
                        f"to see after speech; features.kind {f.kind} has no such habit: set it "
                        f"to 0")
    if f.kind == "whisper":
        wrong = {k: getattr(f, k) for k, v in WHISPER_FEATURES.items() if getattr(f, k) != v}
        if wrong:
            problems.append(f"features.kind whisper is Whisper's own log-mel, computed with "
                            f"{WHISPER_FEATURES}; this config has {wrong}: remove those "
                            f"settings (or use features.kind logmel)")
    if m.name != "pretrained":
        if f.kind == "waveform":
            problems.append(f"model {m.name} takes log-mel features, not the waveform: set "
                            f"features.kind to logmel (or whisper), or use a pretrained "
                            f"waveform encoder (--encoder)")
        return problems
    p = m.pretrained
    if not p.source:
        problems.append("model.name pretrained needs an encoder: give --encoder NAME_OR_DIR "
                        "(`asrlab encoders` lists what is installed)")
    elif p.kind not in PRETRAINED_INPUT:
        problems.append(f"model.pretrained.kind {p.kind!r} is not a known encoder kind "
                        f"({', '.join(PRETRAINED_INPUT)}): let asrlab read it from the source "
                        f"(--encoder {p.source})")
    elif f.kind != PRETRAINED_INPUT[p.kind]:
        problems.append(f"a {p.kind} encoder takes features.kind {PRETRAINED_INPUT[p.kind]}, "
                        f"not {f.kind}: its weights were trained on those inputs (remove the "
                        f"features settings; --encoder sets them)")
    if p.layers_trained < -1:
        problems.append("model.pretrained.layers_trained: 0 (frozen), N (the top N layers) or "
                        "-1 (all)")
    if p.layers_used is not None and p.layers_used < 1:
        problems.append("model.pretrained.layers_used must be >= 1, or null for every layer")
    if p.stack < 1:
        problems.append("model.pretrained.stack must be >= 1 (1: every encoder frame)")
    if not 0 < p.encoder_lr_scale <= 1:
        problems.append("model.pretrained.encoder_lr_scale must be in (0, 1], e.g. 0.1")
    if p.frozen_epochs < 0:
        problems.append("model.pretrained.frozen_epochs must be >= 0")
    if p.pad_to_30s and p.kind not in ("", "whisper"):
        problems.append("model.pretrained.pad_to_30s is for Whisper encoders only")
    if p.pad_to_30s and p.layers_trained != 0:
        problems.append("model.pretrained.pad_to_30s is for a frozen encoder "
                        "(layers_trained 0): a 30 s window costs every step 30 s of encoder")
    waveform_steps = [name for name in ("noise_prob", "reverb_prob", "vocode_prob", "pitch_prob",
                                        "bandlimit_prob", "clip_prob") if getattr(a, name) > 0]
    waveform_steps += ["gain_db"] if tuple(a.gain_db) != (0.0, 0.0) else []
    if p.caches_states and waveform_steps:
        problems.append(f"augment.{', augment.'.join(waveform_steps)} change the waveform, "
                        f"but the frozen encoder's states are computed once per run: set "
                        f"model.pretrained.cache=false (the encoder runs every step, slower), "
                        f"or turn them off (speed perturbation and SpecAugment still apply)")
    return problems


def _augment_problems(a: AugmentConfig) -> list[str]:
    """What is wrong with the robustness-augmentation switches, each with its fix."""
    problems = []
    for name in ("reverb_prob", "vocode_prob", "pitch_prob", "bandlimit_prob", "clip_prob"):
        if not 0 <= getattr(a, name) <= 1:
            problems.append(f"augment.{name} must be in [0, 1] (a fraction of the training "
                            f"utterances), got {getattr(a, name)}: e.g. 0.3, or 0 for off")
    for name, low_ok, high_ok, example in (("reverb_rt60", 0.05, 3.0, "[0.2, 0.7]"),
                                           ("vocode_f0", 40.0, 500.0, "[80, 250]"),
                                           ("pitch_semitones", -12.0, 12.0, "[-2, 2]"),
                                           ("gain_db", -40.0, 40.0, "[-6, 6], or [0, 0] for off"),
                                           ("clip_level", 0.05, 1.0, "[0.5, 0.9]")):
        value = getattr(a, name)
        if len(value) != 2 or not low_ok <= value[0] <= value[1] <= high_ok:
            problems.append(f"augment.{name} must be [low, high] with {low_ok} <= low <= high "
                            f"<= {high_ok}, got {list(value)}: e.g. {example}")
    if a.reverb_rooms < 1:
        problems.append(f"augment.reverb_rooms must be >= 1, got {a.reverb_rooms}: e.g. 32")
    bad = [k for k in a.bandlimit_kinds if k not in ("telephone", "8k")]
    if bad or not a.bandlimit_kinds:
        problems.append(f"augment.bandlimit_kinds {list(a.bandlimit_kinds)}: use one or both of "
                        f"telephone, 8k")
    if a.reverb_prob > 0:
        import importlib.util

        if importlib.util.find_spec("pyroomacoustics") is None:
            problems.append("augment.reverb_prob > 0 simulates rooms with pyroomacoustics, which "
                            "is not installed: pip install pyroomacoustics (or the asrlab "
                            "extra: pip install -e '.[augment]'), or set augment.reverb_prob=0")
    return problems


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over`'s values, mappings merged key by key (a copy; neither changes)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def key_paths(d: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The path of every value a nested mapping sets: {"model": {"crnn": {"hidden": 1}}} ->
    {("model", "crnn", "hidden")}."""
    out: set[tuple[str, ...]] = set()
    for key, value in d.items():
        if isinstance(value, Mapping) and value:
            out |= key_paths(value, prefix + (key,))
        else:
            out.add(prefix + (key,))
    return out


def _legacy_model_keys(data: dict[str, Any]) -> dict[str, Any]:
    """A model mapping with the flat keys of earlier versions (LEGACY_MODEL_KEYS) moved into
    the section of the model it names (keys that model does not have: into the section that
    has them); a flat key wins over the same key in its section (it is what `--set
    model.hidden=64` gives)."""
    flat = {k: data[k] for k in LEGACY_MODEL_KEYS if k in data}
    if not flat:
        return data
    data = {k: v for k, v in data.items() if k not in flat}
    home = model_section(data.get("name", ModelConfig.name))
    for key, value in flat.items():  # the named model's section if it has the key, else its own
        section = next(s for s in (home, "crnn", "conformer")
                       if key in {f.name for f in fields(type(getattr(ModelConfig(), s)))})
        data[section] = {**(data.get(section) or {}), key: value}
    return data


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if cls is ModelConfig:
        data = _legacy_model_keys(data)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{name}: expected a mapping")
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = _coerce(value, str(known[name].type), f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _coerce(value: Any, type_name: str, where: str) -> Any:
    """YAML reads `3e-3` as a string (1.1 floats need a dot): convert numbers written so, and
    reject other values of the wrong type with the key's name."""
    if value is None or isinstance(value, bool):
        if value is None and "None" not in type_name:
            raise ConfigError(f"{where}: must not be null")
        return value
    if type_name.startswith("float") and isinstance(value, (int, str)):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if type_name.startswith("int") and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a whole number, got {value!r}") from None
    if type_name.startswith(("float", "int")) and not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return value


PRESETS: dict[str, Config] = {
    "default": Config(),
    # The `seed-report` preset's recipe (Adam 1e-3, 5-epoch warmup then plateau, batch 8), with
    # correct (PyTorch default) initialization and no augmentation.
    "seed-crnn": Config(
        augment=AugmentConfig(speed_perturb=(1.0,), freq_masks=0, time_masks=0),
        model=ModelConfig(name="seed-crnn", dropout=0.3,
                          crnn=CRNNConfig(conv_channels=64, hidden=256, layers=2)),
        train=TrainConfig(epochs=15, max_minutes=None, optimizer="adam", lr=1e-3,
                          weight_decay=1e-5, betas=(0.9, 0.999), schedule="plateau",
                          warmup_epochs=5, batch_size=8, sort_first_epoch=False,
                          early_stop_patience=1000)),
}
# Fine-tuning defaults, applied by `asrlab train --init-from` to every value the user did not
# set (and the `finetune` preset): a short warmup (the weights are already good), a peak rate a
# sixth of training from scratch, fewer epochs and earlier stopping (little data overfits).
FINETUNE_TRAIN = {"lr": 5e-4, "warmup_epochs": 0.2, "epochs": 20, "early_stop_patience": 6}
# A pretrained encoder's recipe (`asrlab train --encoder X`), applied like FINETUNE_TRAIN to every
# value the user does not set: the encoder's frozen states are computed once per speed variant,
# so speed perturbation is off (three variants would triple the encoding), and the downstream
# learns at a BiLSTM's usual rate; the run's model is the average of its 5 best epochs (when
# it validates no worse than the best one). Measured in docs/benchmarks.md ("Pretrained
# encoders").
PRETRAINED_RECIPE = {"augment": {"speed_perturb": [1.0]},
                     "train": {"lr": 2e-3, "warmup_epochs": 1.0, "early_stop_patience": 10,
                               "average_best": 5}}
PRESETS["finetune"] = replace(PRESETS["default"],
                              train=replace(PRESETS["default"].train, **FINETUNE_TRAIN))
# The failing run itself: everything above plus xavier_uniform(gain=0.1) on every weight.
PRESETS["seed-report"] = replace(
    PRESETS["seed-crnn"], model=replace(PRESETS["seed-crnn"].model, init="xavier", init_gain=0.1))


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: use one of {sorted(PRESETS)}")
    return PRESETS[name]
