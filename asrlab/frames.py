"""Frame counts and rates, derived once from the config (torch-free: the ONNX path, the doctor's
checks and the corpus builder use it as the models do).

    samples --features--> input frames --encoder's time stages--> output frames

An encoder declares its time axis as a list of `Stage(kernel, stride, padding)` (a convolution,
or a frame stacker: `Stage(k, k, 0, ceil=True)`); `stage_lengths` applies them to an int, a NumPy
array or a torch tensor alike, so `model.output_lengths` and `output_frames(cfg, samples)` are
one computation:

    feature_frames(features, n_samples)   frames the features step makes
    input_rate(features)                  those frames per second of audio
    time_stages(config)                   the encoder's stages (asrlab.models build on them)
    output_frames(config, n_samples)      encoder output frames for that many samples
    output_frame_rate(config)             encoder output frames per second
    frame_seconds(config)                 seconds per output frame (word times, windows)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from asrlab.config import Config, FeatureConfig, ModelConfig


@dataclass(frozen=True)
class Stage:
    """One step on the time axis: frames out = (frames + 2 padding - kernel) // stride + 1, or
    ceil(frames / stride) for a stacker (`ceil`: the last group padded)."""
    kernel: int
    stride: int
    padding: int = 0
    ceil: bool = False

    def apply(self, lengths):
        """An int, a NumPy integer array or a torch integer tensor (`//` floors on all three);
        never below 0 (an input shorter than an unpadded kernel gives no frame)."""
        if self.ceil:
            return (lengths + self.stride - 1) // self.stride
        out = (lengths + 2 * self.padding - self.kernel) // self.stride + 1
        return (out + abs(out)) // 2  # max(out, 0) for an int, an array and a tensor alike


def stage_lengths(lengths, stages: tuple[Stage, ...]):
    for stage in stages:
        lengths = stage.apply(lengths)
    return lengths


def conv3(*strides: int) -> tuple[Stage, ...]:
    """Kernel-3, padding-1 convolutions with these time strides (the conv front ends)."""
    return tuple(Stage(3, s, 1) for s in strides)


#: From-scratch encoders' time stages (asrlab.models.crnn, asrlab.models.conformer).
SCRATCH_STAGES = {
    "crnn-sub4": conv3(2, 2),
    "crnn-sub2": conv3(2, 1),
    "seed-crnn": conv3(1, 1),
    "conformer": conv3(2, 2),
}
WHISPER_STAGES = conv3(1, 2)  # conv1 (stride 1), conv2 (stride 2): 100 -> 50 frames/s


def arch_stages(arch: dict) -> tuple[Stage, ...]:
    """A pretrained encoder's convolutions over its input frames, as its source declared them
    (asrlab.pretrained.EncoderSource.arch: Whisper's two, the wav2vec2 family's seven)."""
    return tuple(Stage(k, s, p) for k, s, p in
                 zip(arch["conv_kernel"], arch["conv_stride"], arch["conv_padding"]))


def pretrained_arch(model: ModelConfig) -> dict:
    """The pretrained encoder's dimensions (model.pretrained.arch, JSON from its source)."""
    return json.loads(model.pretrained.arch) if model.pretrained.arch else {}


def time_stages(config: Config) -> tuple[Stage, ...]:
    """The encoder's time stages, input frames -> output frames."""
    m = config.model
    if m.name != "pretrained":
        return SCRATCH_STAGES[m.name]
    stages = arch_stages(pretrained_arch(m))
    if m.pretrained.stack > 1:
        stages += (Stage(m.pretrained.stack, m.pretrained.stack, 0, ceil=True),)
    return stages


def feature_frames(features: FeatureConfig, n_samples):
    """Frames the features step makes of n_samples (an int or a NumPy array), the silence of
    features.pad_end_s included."""
    n_samples = features.padded_samples(n_samples)
    if features.kind == "waveform":
        return n_samples
    hop = int(round(features.sample_rate * features.hop_ms / 1000))
    if features.kind == "whisper":  # centered STFT, the last frame dropped
        return n_samples // hop
    win = int(round(features.sample_rate * features.win_ms / 1000))
    # asrlab.features.LogMel pads audio shorter than one window to one frame
    frames = (n_samples - win) // hop + 1
    return max(frames, 1) if isinstance(frames, int) else frames.clip(min=1)


def input_rate(features: FeatureConfig) -> float:
    """Feature frames per second of audio (100 for 10 ms hops; the sample rate for waveforms)."""
    return float(features.sample_rate) if features.kind == "waveform" \
        else 1000.0 / features.hop_ms


def output_frames(config: Config, n_samples):
    """Encoder output frames for n_samples of audio at the feature rate (int or NumPy array)."""
    return stage_lengths(feature_frames(config.features, n_samples), time_stages(config))


def output_frame_rate(config: Config) -> float:
    """Encoder output frames per second: the input rate over the product of the strides."""
    return input_rate(config.features) / math.prod(s.stride for s in time_stages(config))


def frame_seconds(config: Config) -> float:
    """Seconds per encoder output frame (word timing, long-audio windows)."""
    return 1.0 / output_frame_rate(config)
