"""asrlab.models.hf: wav2vec2 / HuBERT / WavLM behind WhisperEncoder's API, against the
transformers models themselves (tiny random ones, group-norm and layer-norm variants)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asrlab.models.pretrained import build_backbone, load_backbone
from asrlab.pretrained import resolve_encoder
from tests.models.conftest import WAVEFORM_LAYERS

transformers = pytest.importorskip("transformers")

VARIANTS = [(kind, norm) for kind in ("wav2vec2", "hubert", "wavlm") for norm in ("group", "layer")]
LENGTHS = [4000, 3000, 1234]


def batch(seed=0) -> tuple[list[np.ndarray], torch.Tensor]:
    """Waveforms far from zero-mean unit-variance (the normalization has work to do)."""
    rng = np.random.default_rng(seed)
    waves = [(3 * rng.standard_normal(n) + 1).astype(np.float32) for n in LENGTHS]
    x = torch.zeros(len(waves), max(LENGTHS))
    for i, w in enumerate(waves):
        x[i, :len(w)] = torch.from_numpy(w)
    return waves, x


@pytest.mark.parametrize("kind, norm", VARIANTS)
def test_hidden_states_equal_the_transformers_model_fed_by_its_feature_extractor(
        waveform_models, kind, norm):
    folder = waveform_models[kind, norm]
    source = resolve_encoder(folder)
    assert (source.kind, source.normalize, source.attention_mask) == (kind, True, norm == "layer")
    encoder = load_backbone(source)
    reference = getattr(transformers, f"{type(encoder.model).__name__}").from_pretrained(
        folder).eval()
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
    waves, x = batch()
    # each utterance normalized by the extractor alone, then zero-padded: what the extractor
    # gives a padded batch when it has a mask (without one it normalizes over the padding too,
    # so that an utterance's features would depend on its batch)
    values = torch.zeros_like(x)
    for i, w in enumerate(waves):
        values[i, :len(w)] = torch.from_numpy(
            extractor(w, sampling_rate=16000, return_tensors="np").input_values[0])
    inputs = extractor(waves, sampling_rate=16000, padding=True, return_tensors="pt")
    mask = inputs.get("attention_mask")
    assert (mask is not None) == (norm == "layer")  # group-norm checkpoints: no mask
    if mask is not None:
        assert torch.allclose(inputs.input_values, values, atol=1e-6)
    with torch.no_grad():
        ref = reference(values, attention_mask=mask, output_hidden_states=True)
        states, lengths = encoder.forward_layers(x, torch.tensor(LENGTHS))
    expected = reference._get_feat_extract_output_lengths(torch.tensor(LENGTHS))
    assert lengths.tolist() == expected.tolist() == [source.frames(n) for n in LENGTHS]
    assert len(states) == WAVEFORM_LAYERS + 1 == len(ref.hidden_states)
    # the last one is the model's output (after the final LayerNorm of the layer-norm variants,
    # which transformers 5 leaves out of hidden_states[-1]; 4.x put it in)
    theirs = [*ref.hidden_states[:-1], ref.last_hidden_state]
    for ours, their in zip(states, theirs):
        for i, n in enumerate(lengths.tolist()):
            assert torch.allclose(ours[i, :n], their[i, :n], atol=1e-5)
            assert not ours[i, n:].any()


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm"])
def test_layer_norm_variants_are_padding_invariant(waveform_models, kind):
    encoder = load_backbone(resolve_encoder(waveform_models[kind, "layer"]))
    waves, x = batch(1)
    with torch.no_grad():
        y, lengths = encoder(x, torch.tensor(LENGTHS))
        for i, w in enumerate(waves):
            alone, n = encoder(torch.from_numpy(w)[None, :, None], torch.tensor([len(w)]))
            assert n.tolist() == [lengths[i]]
            assert torch.allclose(y[i, :n[0]], alone[0], atol=1e-5)


def test_the_waveform_is_normalized_per_utterance_over_its_real_samples(waveform_models):
    encoder = load_backbone(resolve_encoder(waveform_models["wav2vec2", "layer"]))
    waves, x = batch(2)
    lengths = torch.tensor(LENGTHS)
    with torch.no_grad():
        y, _ = encoder(x, lengths)
        scaled, _ = encoder(x * 1000 - 7, lengths)  # int16-range samples, a DC offset
        encoder.normalize = False
        raw, _ = encoder(x, lengths)
    assert torch.allclose(y, scaled, atol=1e-4)
    assert not torch.allclose(y, raw, atol=1e-2)
    from asrlab.models.hf import normalize_waveform

    ours = normalize_waveform(x, lengths)
    for i, w in enumerate(waves):
        r = transformers.Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm(
            [w], [np.ones(len(w), np.int32)])[0]
        assert torch.allclose(ours[i, :len(r)], torch.from_numpy(r), atol=1e-5)
        assert not ours[i, len(r):].any()


def test_upto_and_the_modules_the_downstream_uses(waveform_models):
    encoder = load_backbone(resolve_encoder(waveform_models["wavlm", "group"]))
    _, x = batch(3)
    lengths = torch.tensor(LENGTHS)
    with torch.no_grad():
        full, _ = encoder.forward_layers(x, lengths)
        two, _ = encoder.forward_layers(x, lengths, upto=2)
        none, _ = encoder.forward_layers(x, lengths, upto=0)
        y, _ = encoder(x, lengths)
    assert len(two) == 3 and len(none) == 1 and torch.equal(y, full[-1])
    assert all(torch.equal(a, b) for a, b in zip(two, full)) and torch.equal(none[0], full[0])
    assert encoder.blocks is encoder.model.encoder.layers
    assert encoder.num_layers == len(encoder.blocks) == WAVEFORM_LAYERS and encoder.out_dim == 32
    assert encoder.conv_stack == ((10, 5), (3, 2), (3, 2))
    assert encoder.output_lengths(torch.tensor([0, 39, 40, 400, 16000])).tolist() == [0, 0, 1, 19, 799]
    assert encoder.model.config.layerdrop == 0.0  # every layer every step: the weighted sum
    encoder.train()
    y, _ = encoder(x, lengths)  # training mode runs (time masking as the checkpoint sets it)
    y.sum().backward()
    assert encoder.blocks[-1].feed_forward.output_dense.weight.grad is not None


@pytest.mark.parametrize("kind, norm", [("hubert", "group"), ("wav2vec2", "layer")])
def test_build_backbone_from_arch_holds_the_same_weights(waveform_models, kind, norm):
    source = resolve_encoder(waveform_models[kind, norm])
    loaded = load_backbone(source)
    rebuilt = build_backbone(source.arch())
    rebuilt.load_state_dict(loaded.state_dict())
    _, x = batch(4)
    with torch.no_grad():
        a, _ = loaded(x, torch.tensor(LENGTHS))
        b, _ = rebuilt.eval()(x, torch.tensor(LENGTHS))
    assert torch.equal(a, b)
    assert sum(p.numel() for p in loaded.parameters()) == source.dims.parameters
