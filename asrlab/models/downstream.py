"""A pretrained speech encoder under a downstream, for CTC: `model.name: pretrained`.

    features (Whisper's log-mel, or the waveform)
      -> backbone: embedding, blocks 0 .. split-1        frozen: its states can be cached
      -> blocks split .. used-1                           the top `layers_trained`, if any
      -> softmax-weighted sum of the layer-normed states  (SUPERB's featurizer; or the last)
      -> stack `stack` frames -> Linear(proj) -> ReLU -> BiLSTM (the seed's)  -> (B, T', 2H)

The backbone (asrlab.models.whisper.WhisperEncoder, asrlab.models.hf.HFEncoder) offers
`embed(x, lengths) -> (h0, lengths)`, `run_blocks(h, lengths, start, end) -> [states]` (the last
after the final norm when `end` is its last block), `num_layers`, `out_dim` and `stages`.

Training with a frozen part computes `frozen_states` once per utterance (asrlab.encoder_cache)
and runs only `from_states` each step; inference runs `forward`, which is the two in a row, so
what training saw and what inference computes are one function. Weights come from the source
(`load_encoder_weights`) for a new run, or with the checkpoint's state dict (self-contained).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asrlab.config import FeatureConfig, ModelConfig, PretrainedConfig
from asrlab.ctc import time_mask
from asrlab.frames import Stage, stage_lengths
from asrlab.models.crnn import BiLSTM


class PretrainedEncoder(nn.Module):
    def __init__(self, backbone: nn.Module, p: PretrainedConfig, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.used = min(p.layers_used or backbone.num_layers, backbone.num_layers)
        self.all_trained = p.layers_trained == -1  # the embedding learns too
        trained = self.used if self.all_trained else min(p.layers_trained, self.used)
        self.split = self.used - trained  # blocks [0, split) never learn
        self.layer_sum = p.layer_sum
        # softmax weights over the embedding and each used block's output, equal at the start
        self.layer_weights = nn.Parameter(torch.zeros(self.used + 1)) if p.layer_sum else None
        self.stack = p.stack
        width = backbone.out_dim * p.stack
        self.proj = nn.Sequential(nn.Linear(width, p.proj), nn.ReLU(), nn.Dropout(dropout)) \
            if p.proj else nn.Identity()
        width = p.proj or width
        self.rnn = BiLSTM(width, p.hidden, p.layers, dropout) if p.layers else None
        self.out_dim = self.rnn.out_dim if self.rnn is not None else width
        self.stages = tuple(backbone.stages) + (
            (Stage(p.stack, p.stack, 0, ceil=True),) if p.stack > 1 else ())
        for block in self.frozen_modules():
            for param in block.parameters():
                param.requires_grad_(False)

    # ---- which parts learn ------------------------------------------------------------------
    def frozen_modules(self) -> list[nn.Module]:
        """The backbone's parts that never learn: the embedding and the blocks below `split`
        (unless every layer trains), the final norm, and blocks above the used ones."""
        blocks = list(self.backbone.blocks)
        if self.all_trained:
            return blocks[self.used:]
        return [m for m in self.backbone.children() if m is not self.backbone.blocks] + \
            blocks[:self.split] + blocks[self.used:]

    def trained_blocks(self) -> list[nn.Module]:
        """The backbone's blocks that learn (the top layers_trained of the used ones)."""
        return list(self.backbone.blocks)[self.split:self.used]

    @property
    def cached_states(self) -> int:
        """How many states `frozen_states` returns per frame."""
        return self.split + 1 if self.layer_sum else 1

    @property
    def cacheable(self) -> bool:
        """Whether training may compute `frozen_states` once per utterance: some part is
        frozen (not every layer learns)."""
        return not self.all_trained

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return stage_lengths(lengths, self.stages)

    # ---- the two halves -----------------------------------------------------------------------
    def frozen_states(self, x: torch.Tensor, lengths: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, T, F) -> the frozen part's states (B, T', cached_states, D), lengths:
        the embedding and the outputs of blocks below `split` (only the last of them without
        a layer sum). Runs the frozen modules in eval mode and without gradients."""
        modes = [m.training for m in self.frozen_modules()]
        for m in self.frozen_modules():
            m.eval()
        try:
            with torch.no_grad():
                h, lengths = self.backbone.embed(x, lengths)  # (B, T', D)
                states = [h] + self.backbone.run_blocks(h, lengths, 0, self.split)
        finally:
            for m, mode in zip(self.frozen_modules(), modes):
                m.train(mode)
        if not self.layer_sum:
            states = states[-1:]
        return torch.stack(states, dim=2), lengths  # (B, T', S, D)

    def from_states(self, states: torch.Tensor, lengths: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T', S, D) frozen states -> (B, T'', out_dim): the trained blocks, the layer sum
        and the downstream."""
        layers = list(states.float().unbind(2))  # S x (B, T', D)
        if self.split < self.used:
            layers += self.backbone.run_blocks(layers[-1], lengths, self.split, self.used)
        return self.downstream(layers, lengths)

    def downstream(self, layers: list[torch.Tensor], lengths: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The used states, S x (B, T', D) -> (B, T'', out_dim)."""
        if self.layer_sum:
            normed = torch.stack([F.layer_norm(h, h.shape[-1:]) for h in layers], dim=0)
            weights = self.layer_weights.softmax(0).to(normed.dtype)
            h = (normed * weights[:, None, None, None]).sum(0)  # (B, T', D)
        else:
            h = layers[-1]
        if self.stack > 1:
            h, lengths = stack_frames(h, lengths, self.stack)  # (B, T'/k, k D)
        h = self.proj(h) * time_mask(lengths, h.shape[1])[..., None].to(h.dtype)
        if self.rnn is None:
            return h, lengths
        return self.rnn(h, lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        if self.all_trained:
            h, lengths = self.backbone.embed(x, lengths)
            return self.downstream([h] + self.backbone.run_blocks(h, lengths, 0, self.used),
                                   lengths)
        return self.from_states(*self.frozen_states(x, lengths))


def stack_frames(h: torch.Tensor, lengths: torch.Tensor, k: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) -> (B, ceil(T/k), k D): k neighbouring frames joined; the last group of each
    utterance padded with zeros (its padded frames are zero already)."""
    B, T, D = h.shape
    pad = (-T) % k
    h = h * time_mask(lengths, T)[..., None].to(h.dtype)
    h = F.pad(h, (0, 0, 0, pad)).reshape(B, (T + pad) // k, k * D)  # (B, T'/k, k D)
    return h, (lengths + k - 1) // k


def pretrained_encoder(features: FeatureConfig, m: ModelConfig) -> PretrainedEncoder:
    """Registry entry "pretrained": the backbone's shape from model.pretrained (its kind and
    arch, read from the source when the run started), randomly initialized; the weights come
    from `load_encoder_weights` or a checkpoint."""
    from asrlab.models.backbones import backbone_from_arch

    return PretrainedEncoder(backbone_from_arch(m.pretrained), m.pretrained, m.dropout)
