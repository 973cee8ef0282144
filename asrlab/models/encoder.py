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

`StagedEncoder` is the module every encoder (and the conv front end) derives from: it gives
`output_lengths` from the `stages` the subclass sets, so the lengths a model reports and
`asrlab.frames.output_frames` are one computation.

`LayeredEncoder` is what pretrained encoders add (asrlab.models.whisper, asrlab.models.hf): the
layers a downstream can weigh (SUPERB's weighted sum), freeze or train by index.

    forward_layers(x, lengths, upto=None) -> (states, lengths)   num_layers + 1 hidden states
    run_blocks(h, lengths, start, end) -> states                  blocks start..end-1 from the
                                                                  state before block `start`
    blocks (nn.ModuleList), num_layers
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from torch import nn

from asrlab.frames import Stage, stage_lengths


@runtime_checkable
class Encoder(Protocol):
    out_dim: int
    stages: tuple[Stage, ...]

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor: ...

    def forward(self, x: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]: ...


class StagedEncoder(nn.Module):
    """`output_lengths` from the declared time `stages` (set by the subclass's __init__)."""
    stages: tuple[Stage, ...]

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return stage_lengths(lengths, self.stages)


class LayeredEncoder(StagedEncoder):
    out_dim: int
    num_layers: int
    blocks: nn.ModuleList

    def forward_layers(self, x: torch.Tensor, lengths: torch.Tensor, upto: int | None = None
                       ) -> tuple[list[torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        states, lengths = self.forward_layers(x, lengths)
        return states[-1], lengths

    def check_upto(self, upto: int | None) -> int:
        """forward_layers' `upto`: None for every layer, else 0..num_layers."""
        upto = self.num_layers if upto is None else upto
        if not 0 <= upto <= self.num_layers:
            raise ValueError(f"upto={upto}: this encoder has {self.num_layers} layers")
        return upto
