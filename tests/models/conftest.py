"""Tiny randomly initialized pretrained encoders, made by the tests: a transformers Whisper (and
its CTranslate2 conversions), wav2vec2 / HuBERT / WavLM folders in both normalization variants."""

from __future__ import annotations

from pathlib import Path

import pytest

WHISPER_CTX = 50  # positions: inputs up to 100 mel frames (1 s)
WAVEFORM_LAYERS = 3


def tiny_whisper_config():
    transformers = pytest.importorskip("transformers")
    return transformers.WhisperConfig(
        vocab_size=64, num_mel_bins=80, encoder_layers=2, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=2, d_model=32, encoder_ffn_dim=128,
        decoder_ffn_dim=64, max_source_positions=WHISPER_CTX, max_target_positions=16,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        begin_suppress_tokens=None, suppress_tokens=None)


@pytest.fixture(scope="session")
def whisper_hf(tmp_path_factory) -> Path:
    """A tiny random WhisperForConditionalGeneration folder (config.json + model.safetensors).
    The encoder's LayerNorms and biases are randomized too (no weight left at a default that
    would hide a mix-up), except layer 1's attention LayerNorm: left at ones and zeros like the
    decoder's, it is stored as an alias by CTranslate2 (equal values share one variable)."""
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(tiny_whisper_config()).eval()
    with torch.no_grad():
        for name, p in model.model.encoder.named_parameters():
            if (name.endswith("bias") or "layer_norm" in name) \
                    and not name.startswith("layers.1.self_attn_layer_norm"):
                p.add_(0.1 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("whisper_hf")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def whisper_ct2(whisper_hf, tmp_path_factory) -> dict[str, Path]:
    """CTranslate2 conversions of whisper_hf by quantization: float32, float16, int8, int16,
    bfloat16 (each a folder with model.bin + config.json)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    converter = ctranslate2.converters.TransformersConverter(str(whisper_hf))
    root = tmp_path_factory.mktemp("whisper_ct2")
    out = {}
    for q in ("float32", "float16", "int8", "int16", "bfloat16"):
        out[q] = Path(converter.convert(str(root / q), quantization=q))
    return out


def make_waveform_model(kind: str, norm: str, folder: Path) -> Path:
    """A tiny random {kind}ForCTC folder with its preprocessor_config.json (do_normalize on; the
    attention mask as the real checkpoints of that norm have it)."""
    transformers = pytest.importorskip("transformers")
    import torch

    names = {"wav2vec2": "Wav2Vec2", "hubert": "Hubert", "wavlm": "WavLM"}[kind]
    config = getattr(transformers, f"{names}Config")(
        vocab_size=12, hidden_size=32, num_hidden_layers=WAVEFORM_LAYERS, num_attention_heads=2,
        intermediate_size=64, conv_dim=(16, 16, 16), conv_stride=(5, 2, 2),
        conv_kernel=(10, 3, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")
    torch.manual_seed(1)
    getattr(transformers, f"{names}ForCTC")(config).eval().save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(
        do_normalize=True, return_attention_mask=norm == "layer").save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def waveform_models(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """(kind, norm) -> folder, for wav2vec2 / hubert / wavlm x group / layer."""
    return {(kind, norm): make_waveform_model(kind, norm,
                                              tmp_path_factory.mktemp(f"{kind}_{norm}"))
            for kind in ("wav2vec2", "hubert", "wavlm") for norm in ("group", "layer")}
