"""The PyTorch module of a pretrained encoder: from its source's weights (`load_backbone`), or
untrained from the dimensions a checkpoint recorded (`build_backbone`, then load its state dict).

Whisper (CTranslate2 or transformers weights) -> asrlab.models.whisper.WhisperEncoder;
wav2vec2 / HuBERT / WavLM (transformers) -> asrlab.models.hf.HFEncoder (imports transformers).
Both: forward(x, lengths) -> (y, lengths), forward_layers, output_lengths, out_dim, blocks,
num_layers.
"""

from __future__ import annotations

from torch import nn

from asrlab.models.ct2 import read_ct2
from asrlab.models.whisper import WhisperDims, WhisperEncoder
from asrlab.pretrained import EncoderSource


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
