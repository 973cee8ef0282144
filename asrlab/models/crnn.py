"""Convolutional front end + bidirectional LSTM encoders.

Dimensions: B batch, T frames, F mel bins, C channels, H hidden. Every module takes and returns
absolute integer lengths: `forward(x, lengths) -> (y, lengths)`. Padded frames are zeroed after
every convolution so that a padded batch computes exactly what each utterance computes alone.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from asrlab.config import FeatureConfig, ModelConfig
from asrlab.ctc import time_mask
from asrlab.frames import conv3
from asrlab.models.encoder import StagedEncoder


class ConvFrontEnd(StagedEncoder):
    """Conv2d stack over (time, frequency): (B, T, F) -> (B, T', C * F')."""

    def __init__(self, n_mels: int, channels: int, time_strides: tuple[int, ...],
                 freq_strides: tuple[int, ...], batch_norm: bool = True):
        super().__init__()
        self.time_strides = time_strides
        self.stages = conv3(*time_strides)  # the time axis (asrlab.frames)
        layers, in_ch, f = [], 1, n_mels
        for ts, fs in zip(time_strides, freq_strides):
            block = [nn.Conv2d(in_ch, channels, 3, stride=(ts, fs), padding=1)]
            if batch_norm:
                block.append(nn.BatchNorm2d(channels))
            block.append(nn.ReLU())
            layers.append(nn.Sequential(*block))
            in_ch, f = channels, (f - 1) // fs + 1
        self.layers = nn.ModuleList(layers)
        self.out_dim = channels * f

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        x = x.unsqueeze(1)  # (B, 1, T, F)
        for layer, stage in zip(self.layers, self.stages):
            x = layer(x)  # (B, C, T', F')
            lengths = stage.apply(lengths)
            x = x * time_mask(lengths, x.shape[2])[:, None, :, None]
        B, C, T, F = x.shape
        return x.permute(0, 2, 1, 3).reshape(B, T, C * F), lengths  # (B, T', C*F')


class BiLSTM(nn.Module):
    """Bidirectional LSTM over a padded batch: (B, T, D) -> (B, T, 2H); padding never enters
    the state, and padded output frames are zero.

    Each layer runs a forward LSTM over the padded batch (padding comes after the real frames, so
    it never reaches them) and a backward LSTM over each utterance reversed *within its own
    length* (a gather), reversed back. Why not pack_padded_sequence, which computes the same:
    packed input leaves PyTorch's oneDNN LSTM kernel and made CPU training steps twice as slow
    (docs/benchmarks.md); this form also exports to ONNX as it is.
    """

    def __init__(self, input_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        dims = [input_dim] + [2 * hidden] * (layers - 1)
        self.fwd = nn.ModuleList(nn.LSTM(d, hidden, batch_first=True) for d in dims)
        self.bwd = nn.ModuleList(nn.LSTM(d, hidden, batch_first=True) for d in dims)
        self.dropout = nn.Dropout(dropout)  # between layers, as nn.LSTM(dropout=...) does
        self.hidden, self.out_dim = hidden, 2 * hidden
        self._register_load_state_dict_pre_hook(_from_stacked_lstm)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        T = x.shape[1]
        t = torch.arange(T, device=x.device)[None, :]  # (1, T)
        real = time_mask(lengths, T)  # (B, T)
        rev = torch.where(real, lengths[:, None] - 1 - t, t)[:, :, None]  # (B, T, 1)
        # explicit zero states shaped from the input keep the batch size dynamic in ONNX
        h0 = x.new_zeros(1, x.shape[0], self.hidden)
        for layer, (fwd, bwd) in enumerate(zip(self.fwd, self.bwd)):
            if layer > 0:
                x = self.dropout(x)
            y_f, _ = fwd(x, (h0, h0))
            y_b, _ = bwd(torch.gather(x, 1, rev.expand(-1, -1, x.shape[2])), (h0, h0))
            y_b = torch.gather(y_b, 1, rev.expand(-1, -1, self.hidden))
            x = torch.cat([y_f, y_b], dim=2)  # (B, T, 2H)
        return x * real[:, :, None].to(x.dtype), lengths


def _from_stacked_lstm(state_dict, prefix, *args) -> None:
    """Load checkpoints written when BiLSTM held one stacked nn.LSTM (`rnn.weight_ih_l0`,
    `rnn.weight_ih_l0_reverse`, ...) into the per-layer, per-direction modules."""
    pattern = re.compile(re.escape(prefix) + r"rnn\.((?:weight|bias)_(?:ih|hh))_l(\d+)(_reverse)?$")
    for key in [k for k in state_dict if pattern.match(k)]:
        name, layer, reverse = pattern.match(key).groups()
        direction = "bwd" if reverse else "fwd"
        state_dict[f"{prefix}{direction}.{layer}.{name}_l0"] = state_dict.pop(key)


class CRNNEncoder(StagedEncoder):
    """ConvFrontEnd -> (projection) -> BiLSTM. Time subsampling = product of time strides."""

    def __init__(self, n_mels: int, channels: int, hidden: int, layers: int, dropout: float,
                 time_strides: tuple[int, ...], freq_strides: tuple[int, ...],
                 project: bool, batch_norm: bool = True):
        super().__init__()
        self.frontend = ConvFrontEnd(n_mels, channels, time_strides, freq_strides, batch_norm)
        dim = self.frontend.out_dim
        self.proj = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout)) \
            if project else nn.Identity()
        self.rnn = BiLSTM(hidden if project else dim, hidden, layers, dropout)
        self.out_dim = self.rnn.out_dim
        self.stages = self.frontend.stages

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        x, lengths = self.frontend(x, lengths)  # (B, T', C*F')
        x = self.proj(x)
        return self.rnn(x, lengths)  # (B, T', 2H)


def _crnn(features: FeatureConfig, m: ModelConfig, time_strides: tuple[int, ...],
          **kw) -> CRNNEncoder:
    c = m.crnn
    return CRNNEncoder(features.n_mels, c.conv_channels, c.hidden, c.layers, m.dropout,
                       time_strides=time_strides, freq_strides=(2, 2), **kw)


def seed_crnn(features: FeatureConfig, m: ModelConfig) -> CRNNEncoder:
    """The `seed-crnn` preset's encoder (also `seed-report`'s): 2 Conv2D layers of 64 channels
    (stride 2 in frequency only, so T stays at the feature frame rate, 1000 / features.hop_ms
    per second, as in the `seed-report` run's 438-frame dumps), 2-layer BiLSTM of 256."""
    return _crnn(features, m, (1, 1), project=False, batch_norm=False)


def crnn_sub2(features: FeatureConfig, m: ModelConfig) -> CRNNEncoder:
    """crnn-sub4 with 2x time subsampling (50 frames/s): twice the recurrent cost, for words
    spoken faster than 25 characters a second (short, tightly trimmed clips; CTC needs a frame
    per character, and one more between repeats)."""
    return _crnn(features, m, (2, 1), project=True)


def crnn_sub4(features: FeatureConfig, m: ModelConfig) -> CRNNEncoder:
    """Default: 4x time subsampling in the conv front end, then a BiLSTM at 25 frames/s.
    Subsampling first makes the recurrent layers 4x cheaper, which is what a CPU needs."""
    return _crnn(features, m, (2, 2), project=True)

