"""The encoder contract: what every encoder under the CTC head is and declares.

    forward(x, lengths) -> (y, lengths)
        x (B, T, F) the features its config describes (`features.kind`: asrlab's log-mel,
        Whisper's log-mel, or the waveform as (B, S, 1)); lengths (B,) absolute input frames;
        y (B, T', out_dim), padded frames zero; lengths (B,) absolute output frames
    output_lengths(lengths) -> lengths    T' without running it
    out_dim                               the width of y
    stages                                its time axis (asrlab.frames.Stage): the output frame
                                          rate and every frame count derive from it

The input an encoder takes is the run's `FeatureConfig`: from-scratch encoders take the log-mel
the config sets; a pretrained encoder fixes it (Whisper's log-mel, or the waveform), and
`Config.validate` refuses anything else. A registry entry is a factory
`(FeatureConfig, ModelConfig) -> Encoder` (asrlab.models.registry).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from asrlab.frames import Stage


@runtime_checkable
class Encoder(Protocol):
    out_dim: int
    stages: tuple[Stage, ...]

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor: ...

    def forward(self, x: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]: ...
