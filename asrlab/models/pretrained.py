"""A pretrained speech encoder under a downstream, for CTC: `model.name: pretrained`.

    features (Whisper's log-mel, or the waveform)
      -> backbone: embedding, blocks 0 .. split-1        frozen: its states can be cached
      -> blocks split .. used-1                           the top `layers_trained`, if any
      -> softmax-weighted sum of the layer-normed states  (SUPERB's featurizer; or the last)
      -> stack `stack` frames -> Linear(proj) -> ReLU -> BiLSTM (the seed's)  -> (B, T', 2H)

The backbone is a `LayeredEncoder` (asrlab.models.encoder): asrlab.models.whisper.WhisperEncoder
(CTranslate2 or transformers weights) or asrlab.models.hf.HFEncoder (wav2vec2 / HuBERT / WavLM,
imports transformers). `load_backbone(source)` gives it with the source's weights,
`build_backbone(arch)` untrained from the dimensions a config records (to load a checkpoint's
state dict into: checkpoints are self-contained).

Training with a frozen part computes `frozen_states` once per utterance (asrlab.encoder_cache)
and runs only `from_states` each step; inference runs `forward`, which is the two in a row, so
what training saw and what inference computes are one function. Backbones without `run_blocks`
(the wav2vec2 family) cache only when no block trains; otherwise every step runs `forward`,
the frozen blocks without gradients.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from asrlab.config import FeatureConfig, ModelConfig, PretrainedConfig
from asrlab.ct2 import read_ct2
from asrlab.ctc import time_mask
from asrlab.frames import Stage
from asrlab.models.crnn import BiLSTM
from asrlab.models.encoder import StagedEncoder
from asrlab.models.whisper import WhisperDims, WhisperEncoder
from asrlab.pretrained import EncoderSource


class PretrainedEncoder(StagedEncoder):
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
        for param in self.frozen_parameters():
            param.requires_grad_(False)

    # ---- which parts learn ------------------------------------------------------------------
    def trained_blocks(self) -> list[nn.Module]:
        """The backbone's blocks that learn (the top layers_trained of the used ones)."""
        return list(self.backbone.blocks)[self.split:self.used]

    def trained_parameters(self) -> list[nn.Parameter]:
        """The backbone's weights that learn: the trained blocks', or with every layer trained
        all but those of blocks above the used ones."""
        if not self.all_trained:
            return [p for b in self.trained_blocks() for p in b.parameters()]
        unused = {id(p) for b in list(self.backbone.blocks)[self.used:] for p in b.parameters()}
        return [p for p in self.backbone.parameters() if id(p) not in unused]

    def frozen_parameters(self) -> list[nn.Parameter]:
        """The backbone's weights that never learn (the embedding, the blocks below `split`, the
        final norm, unused blocks: whatever `trained_parameters` leaves)."""
        trained = {id(p) for p in self.trained_parameters()}
        return [p for p in self.backbone.parameters() if id(p) not in trained]

    @property
    def cached_states(self) -> int:
        """How many states `frozen_states` returns per frame."""
        return self.split + 1 if self.layer_sum else 1

    @property
    def cacheable(self) -> bool:
        """Whether training may compute `frozen_states` once per utterance: some part is
        frozen, and the blocks above it can run from its output (`run_blocks`)."""
        return not self.all_trained and (self.split == self.used or
                                          hasattr(self.backbone, "run_blocks"))

    # ---- the two halves -----------------------------------------------------------------------
    def frozen_states(self, x: torch.Tensor, lengths: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, T, F) -> the frozen part's states (B, T', cached_states, D), lengths:
        the embedding and the outputs of blocks below `split` (only the last of them without
        a layer sum). The backbone runs in eval mode (all of what runs here is frozen) and
        without gradients."""
        mode = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                states, lengths = self.backbone.forward_layers(x, lengths, upto=self.split)
        finally:
            self.backbone.train(mode)
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
            normed = torch.stack([F.layer_norm(h, (self.backbone.out_dim,)) for h in layers],
                                 dim=0)  # (S, B, T', D); a static width for the ONNX trace
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
        if not self.cacheable:  # the frozen blocks run without gradients: nothing needs them
            states, lengths = self.backbone.forward_layers(x, lengths, upto=self.used)
            return self.downstream(states, lengths)
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


class FromStates(nn.Module):
    """A pretrained-encoder CTC model run from its frozen states (asrlab.encoder_cache):
    (B, T', S, D) states, lengths -> log-probs, lengths; what training and validation call
    when the states are cached. The same weights as `model` (it holds it)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, states: torch.Tensor, lengths: torch.Tensor):
        return self.model.from_encoded(*self.model.encoder.from_states(states, lengths))


def pretrained_encoder(features: FeatureConfig, m: ModelConfig) -> PretrainedEncoder:
    """Registry entry "pretrained": the backbone's shape from model.pretrained.arch (read from
    the source when the run started), untrained; the weights come from `load_encoder_weights`
    or a checkpoint's state dict."""
    p = m.pretrained
    return PretrainedEncoder(build_backbone(json.loads(p.arch), p.pad_to_30s), p, m.dropout)


def load_encoder_weights(model: nn.Module, source: EncoderSource) -> None:
    """Put the source's weights into a freshly built pretrained model's backbone."""
    backbone = model.encoder.backbone
    loaded = load_backbone(source, backbone.pad_to_30s if hasattr(backbone, "pad_to_30s")
                           else False)
    backbone.load_state_dict(loaded.state_dict())


def load_backbone(source: EncoderSource, pad_to_30s: bool = False) -> nn.Module:
    """The encoder with the source's weights, float32, in eval mode."""
    if source.kind == "whisper":
        if source.format == "ct2":
            variables = read_ct2(source.files, select=lambda n: n.startswith("encoder/"),
                                 hint=source.hint)
            model = WhisperEncoder.from_ct2(variables, pad_to_30s)
        else:
            model = WhisperEncoder.from_transformers(source.folder, pad_to_30s)
    else:
        from asrlab.models.hf import HFEncoder  # transformers: an optional dependency

        if pad_to_30s:
            raise ValueError("pad_to_30s is for Whisper encoders only")
        model = HFEncoder.from_source(source)
    return model.eval()


def build_backbone(arch: dict, pad_to_30s: bool = False) -> nn.Module:
    """Untrained, from `EncoderSource.arch()` (what a checkpoint keeps)."""
    if arch["kind"] == "whisper":
        return WhisperEncoder(WhisperDims(arch["n_mels"], arch["width"], arch["heads"],
                                          arch["layers"], arch["n_ctx"]), pad_to_30s)
    from asrlab.models.hf import HFEncoder  # transformers: an optional dependency

    return HFEncoder.from_config(arch["config"], arch["normalize"], arch["attention_mask"])
