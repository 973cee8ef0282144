"""Conformer encoder (Gulati et al., 2020) for CTC: `--model conformer`.

    (B, T, F) -> ConvFrontEnd (Conv2d, 4x time subsampling) -> Linear -> N x ConformerBlock
              -> (B, T/4, d_model)

A block is macaron-style: x + 1/2 FF, x + MHSA, x + Conv, x + 1/2 FF, LayerNorm. Positions enter
attention through rotary embeddings (RoPE: relative by construction, no length limit, no extra
parameters). Padding never changes a real frame's output: attention gets a key padding mask,
the depthwise convolution sees zeros on padded frames, and normalization is LayerNorm (per frame)
where the original used BatchNorm (whose batch statistics would mix utterances). Sizes come from
`ModelConfig.conformer`: d_model, heads, ff_mult, conv_kernel, layers (and model.dropout);
conv_channels sets the subsampling convolution's width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asrlab.config import FeatureConfig, ModelConfig
from asrlab.ctc import time_mask
from asrlab.models.crnn import ConvFrontEnd
from asrlab.models.encoder import StagedEncoder


class FeedForward(nn.Module):
    """LayerNorm -> Linear(d, ff_mult d) -> SiLU -> Dropout -> Linear(ff_mult d, d) -> Dropout."""

    def __init__(self, d_model: int, mult: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, mult * d_model),
                                 nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(mult * d_model, d_model), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def rotary_tables(length: int, dim: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (T, dim) for rotary position embeddings (rotate-half layout)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)  # (T, dim)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, dim): rotate each (i, i + dim/2) pair by its position's angle."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class RotarySelfAttention(nn.Module):
    """Multi-head self-attention with rotary positions and a key padding mask."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        if d_model % heads or (d_model // heads) % 2:
            raise ValueError(f"d_model ({d_model}) must split into {heads} heads of even size")
        self.heads, self.dropout = heads, dropout
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), valid (B, T) bool -> (B, T, D)."""
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm(x)).view(B, T, 3, self.heads, D // self.heads).permute(
            2, 0, 3, 1, 4)  # each (B, H, T, Dh)
        cos, sin = rotary_tables(T, D // self.heads, x.device, x.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        mask = valid[:, None, None, :]  # (B, 1, 1, T): attend to real frames only
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.out(y.transpose(1, 2).reshape(B, T, D)))


class ConvModule(nn.Module):
    """LayerNorm -> pointwise (2d) -> GLU -> depthwise (kernel k) -> LayerNorm -> SiLU ->
    pointwise -> Dropout. Padded frames are zeroed before the depthwise convolution, so a
    frame near the end of an utterance sees zeros, batched or alone."""

    def __init__(self, d_model: int, kernel: int, dropout: float):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd (centered), got {kernel}")
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2, groups=d_model)
        self.mid_norm = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Conv1d(d_model, d_model, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        y = self.pointwise_in(self.norm(x).transpose(1, 2))  # (B, 2D, T)
        y = F.glu(y, dim=1) * valid[:, None, :]  # (B, D, T), padding zeroed
        y = self.depthwise(y).transpose(1, 2)  # (B, T, D)
        y = F.silu(self.mid_norm(y)).transpose(1, 2)
        return self.drop(self.pointwise_out(y).transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, d_model: int, heads: int, ff_mult: int, kernel: int, dropout: float):
        super().__init__()
        self.ff1 = FeedForward(d_model, ff_mult, dropout)
        self.attn = RotarySelfAttention(d_model, heads, dropout)
        self.conv = ConvModule(d_model, kernel, dropout)
        self.ff2 = FeedForward(d_model, ff_mult, dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, valid)
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x) * valid[..., None]


class ConformerEncoder(StagedEncoder):
    def __init__(self, n_mels: int, channels: int, d_model: int, heads: int, ff_mult: int,
                 kernel: int, layers: int, dropout: float):
        super().__init__()
        # No BatchNorm in the front end: in training it would mix padded and real frames.
        self.frontend = ConvFrontEnd(n_mels, channels, time_strides=(2, 2), freq_strides=(2, 2),
                                     batch_norm=False)
        self.proj = nn.Sequential(nn.Linear(self.frontend.out_dim, d_model), nn.Dropout(dropout))
        self.blocks = nn.ModuleList(ConformerBlock(d_model, heads, ff_mult, kernel, dropout)
                                    for _ in range(layers))
        self.out_dim = d_model
        self.stages = self.frontend.stages

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        """x (B, T, F), lengths (B,) frames -> (B, T', d_model), (B,) frames."""
        x = x * time_mask(lengths, x.shape[1])[..., None]  # whatever the padding held
        x, lengths = self.frontend(x, lengths)
        valid = time_mask(lengths, x.shape[1])
        x = self.proj(x) * valid[..., None]
        for block in self.blocks:
            x = block(x, valid)
        return x, lengths


def conformer(features: FeatureConfig, m: ModelConfig) -> ConformerEncoder:
    """Registry entry "conformer": sizes from model.conformer."""
    c = m.conformer
    return ConformerEncoder(features.n_mels, c.conv_channels, c.d_model, c.heads, c.ff_mult,
                            c.conv_kernel, c.layers, m.dropout)
