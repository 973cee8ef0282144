"""Encoder + CTC head, and `build_model` from a config.

`CTCModel.forward(feats (B, T, F), lengths (B,)) -> (log_probs (B, T', V), lengths (B,))`.
`output_lengths` gives T' without running the model; it is asrlab.frames' arithmetic on the
encoder's declared stages, which `asrlab.frames.output_frames` computes without torch.
"""

from __future__ import annotations

import torch
from torch import nn

from asrlab.config import Config
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
        return self.from_encoded(*self.encoder(feats, lengths))

    def from_encoded(self, h: torch.Tensor, lengths: torch.Tensor):
        """The head on the encoder's output (B, T', D) -> log-probs (B, T', V), lengths."""
        logits = self.head(self.dropout(h))  # (B, T', V)
        return logits.log_softmax(dim=-1), lengths


def init_weights(model: nn.Module, scheme: str | None, gain: float,
                 skip: set[str] = frozenset()) -> None:
    """None keeps PyTorch's defaults (the right choice for these layers). "xavier" applies
    xavier_uniform_(gain) to every weight matrix: with gain 0.1, as the `seed-report` preset does,
    the head starts near-uniform and the model sits in the blank phase far longer."""
    if scheme is None:
        return
    for name, p in model.named_parameters():
        if name in skip:
            continue
        if p.dim() >= 2:
            if scheme == "xavier":
                nn.init.xavier_uniform_(p, gain=gain)
            else:
                nn.init.kaiming_uniform_(p, nonlinearity="relu")
        elif name.endswith("bias"):
            nn.init.zeros_(p)


def build_model(config: Config, vocab_size: int) -> CTCModel:
    """The network `config` describes (features in, vocab_size log-probs out), freshly
    initialized; a pretrained encoder's weights are loaded separately
    (asrlab.models.pretrained.load_encoder_weights) or with a checkpoint's state dict."""
    m = config.model
    check_model_name(m.name)
    model = CTCModel(MODELS[m.name](config.features, m), vocab_size, m.dropout)
    init_weights(model, m.init, m.init_gain, skip=frozen_names(model))
    return model


def frozen_names(model: nn.Module) -> set[str]:
    """Parameters that come pretrained (never re-initialized by model.init)."""
    return {f"encoder.backbone.{n}" for n, _ in model.encoder.backbone.named_parameters()} \
        if hasattr(model.encoder, "backbone") else set()
