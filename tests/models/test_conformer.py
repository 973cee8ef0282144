"""Conformer encoder: padding invariance, lengths, config sizes, and that it can learn."""

import pytest
import torch
import torch.nn.functional as F

from asrlab.config import Config, ConformerConfig, FeatureConfig, ModelConfig
from asrlab.models import build_model
from asrlab.models.conformer import ConformerEncoder, apply_rotary, rotary_tables

SMALL = ModelConfig(name="conformer", dropout=0.1, conformer=ConformerConfig(
    d_model=64, heads=4, ff_mult=2, conv_kernel=7, layers=2, conv_channels=16))


def model_of(m: ModelConfig, n_mels: int, vocab: int):
    return build_model(Config(model=m, features=FeatureConfig(n_mels=n_mels)), vocab)


def padded(feats: list[torch.Tensor], pad_value: float = 0.0) -> torch.Tensor:
    x = torch.full((len(feats), max(len(f) for f in feats), feats[0].shape[1]), pad_value)
    for b, f in enumerate(feats):
        x[b, :len(f)] = f
    return x


@pytest.mark.parametrize("pad_value", [0.0, 7.0])  # whatever the padding holds
def test_padding_invariance_batched_equals_one_by_one(pad_value):
    torch.manual_seed(0)
    model = model_of(ModelConfig(name="conformer"), 80, 30).eval()  # default sizes
    lengths = torch.tensor([173, 64, 9, 120])  # absolute frame counts
    feats = [torch.randn(int(n), 80) for n in lengths]
    with torch.no_grad():
        batched, out_lens = model(padded(feats, pad_value), lengths)
        for b, f in enumerate(feats):
            alone, alone_len = model(f[None], lengths[b:b + 1])
            assert int(alone_len) == int(out_lens[b])
            torch.testing.assert_close(batched[b, :int(out_lens[b])], alone[0], atol=1e-5,
                                       rtol=1e-4)


def test_padded_frames_do_not_leak_into_real_frames():
    """Changing what lies beyond an utterance's end changes nothing inside it."""
    torch.manual_seed(1)
    enc = ConformerEncoder(80, 16, 64, 4, 2, 7, 2, 0.0).eval()
    x = torch.randn(1, 100, 80)
    lengths = torch.tensor([60])
    y1, n = enc(x, lengths)
    x2 = x.clone()
    x2[:, 60:] = torch.randn(1, 40, 80) * 100
    y2, _ = enc(x2, lengths)
    torch.testing.assert_close(y1[:, :int(n)], y2[:, :int(n)])
    assert y1[:, int(n):].abs().max() == 0  # padded outputs are zero


def test_output_lengths_match_forward_and_4x_subsampling():
    model = model_of(SMALL, 80, 10).eval()
    lengths = torch.tensor([401, 400, 7, 1])
    with torch.no_grad():
        lp, out = model(torch.randn(4, 401, 80), lengths)
    assert torch.equal(out, model.output_lengths(lengths))
    assert out.tolist() == [101, 100, 2, 1]
    assert lp.shape == (4, 101, 10)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(4, 101), atol=1e-5)


def test_sizes_come_from_the_config():
    enc = model_of(SMALL, 80, 10).encoder
    assert enc.out_dim == 64 and len(enc.blocks) == 2
    assert enc.blocks[0].conv.depthwise.kernel_size == (7,)
    assert enc.blocks[0].attn.heads == 4
    assert enc.blocks[0].ff1.net[1].out_features == 128  # ff_mult * d_model


def test_config_rejects_heads_that_do_not_divide_d_model():
    from asrlab.config import ConfigError

    with pytest.raises(ConfigError, match="divisible"):
        Config().merged({"model": {"name": "conformer", "d_model": 100, "heads": 3}}).validate()


def test_rotary_attention_scores_depend_on_relative_position_only():
    cos, sin = rotary_tables(50, 8, "cpu", torch.float32)
    q, k = torch.randn(8), torch.randn(8)
    q_at = apply_rotary(q.expand(1, 1, 50, 8), cos, sin)[0, 0]
    k_at = apply_rotary(k.expand(1, 1, 50, 8), cos, sin)[0, 0]
    assert torch.allclose(q_at[10] @ k_at[7], q_at[40] @ k_at[37], atol=1e-4)
    assert not torch.allclose(q_at[10] @ k_at[7], q_at[10] @ k_at[9], atol=1e-3)


def test_tiny_overfit_loss_falls_a_lot():
    """Four fixed utterances (random features, distinct targets): the loss must fall >10x."""
    torch.manual_seed(0)
    model = model_of(SMALL, 40, 8)
    lengths = torch.tensor([80, 72, 64, 56])
    x = padded([torch.randn(int(n), 40) for n in lengths])
    targets = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 1, 2, 0], [3, 5, 7, 0, 0], [2, 4, 6, 1, 0]])
    target_lens = torch.tensor([5, 4, 3, 4])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(120):
        lp, out_lens = model(x, lengths)
        loss = F.ctc_loss(lp.transpose(0, 1), targets, out_lens, target_lens, blank=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])
    model.eval()
    with torch.no_grad():
        lp, out_lens = model(x, lengths)
    from asrlab.decode.greedy import collapse

    for b in range(4):
        tokens, _ = collapse(lp[b, :int(out_lens[b])].argmax(-1).numpy())
        assert tokens == targets[b, :int(target_lens[b])].tolist()
