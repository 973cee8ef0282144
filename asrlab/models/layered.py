"""The API the pretrained encoders share (asrlab.models.whisper, asrlab.models.hf): layers a
downstream can weigh (SUPERB's weighted sum), freeze or train by index.

    forward(x, lengths) -> (y (B, T', out_dim), lengths)      the last hidden state
    forward_layers(x, lengths, upto=None) -> (states, lengths) num_layers + 1 hidden states
    output_lengths(lengths), out_dim, blocks (nn.ModuleList), num_layers
"""

from __future__ import annotations

import torch
from torch import nn


class LayeredEncoder(nn.Module):
    out_dim: int
    num_layers: int
    blocks: nn.ModuleList

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

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
