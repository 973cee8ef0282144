"""Encoder + CTC head, and `build_model` from a config.

`CTCModel.forward(feats (B, T, F), lengths (B,)) -> (log_probs (B, T', V), lengths (B,))`.
`output_lengths` gives T' without running the model (used by the doctor's feasibility check).
"""

from __future__ import annotations

import torch
from torch import nn

from asrlab.config import ModelConfig
from asrlab.models.registry import MODELS, check_model_name


class CTCModel(nn.Module):
    def __init__(self, encoder: nn.Module, vocab_size: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.out_dim, vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder.output_lengths(lengths)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        h, lengths = self.encoder(feats, lengths)  # (B, T', D)
        logits = self.head(self.dropout(h))  # (B, T', V)
        return logits.log_softmax(dim=-1), lengths


def init_weights(model: nn.Module, scheme: str | None, gain: float) -> None:
    """None keeps PyTorch's defaults (the right choice for these layers). "xavier" applies
    xavier_uniform_(gain) to every weight matrix: with gain 0.1, as the `seed-report` preset does,
    the head starts near-uniform and the model sits in the blank phase far longer."""
    if scheme is None:
        return
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            if scheme == "xavier":
                nn.init.xavier_uniform_(p, gain=gain)
            else:
                nn.init.kaiming_uniform_(p, nonlinearity="relu")
        elif name.endswith("bias"):
            nn.init.zeros_(p)


def build_model(cfg: ModelConfig, n_mels: int, vocab_size: int) -> CTCModel:
    check_model_name(cfg.name)
    model = CTCModel(MODELS[cfg.name](n_mels, cfg), vocab_size, cfg.dropout)
    init_weights(model, cfg.init, cfg.init_gain)
    return model
