import pytest
import torch

from asrlab.config import ModelConfig, preset
from asrlab.models import build_model


@pytest.mark.parametrize("name", ["crnn-sub4", "seed-crnn"])
def test_padding_invariance_batched_equals_one_by_one(name):
    torch.manual_seed(0)
    cfg = preset("seed-crnn" if name == "seed-crnn" else "default").model
    model = build_model(cfg, 80, 30).eval()
    lengths = torch.tensor([173, 64, 120])
    feats = [torch.randn(int(n), 80) for n in lengths]
    x = torch.zeros(3, 173, 80)
    for b, f in enumerate(feats):
        x[b, :len(f)] = f
    with torch.no_grad():
        batched, out_lens = model(x, lengths)
        for b, f in enumerate(feats):
            alone, alone_len = model(f[None], lengths[b:b + 1])
            assert int(alone_len) == int(out_lens[b])
            torch.testing.assert_close(batched[b, :int(out_lens[b])], alone[0], atol=1e-5, rtol=1e-4)


def test_output_lengths_match_forward():
    model = build_model(ModelConfig(), 80, 10).eval()
    lengths = torch.tensor([401, 400, 7, 1])
    with torch.no_grad():
        _, out = model(torch.randn(4, 401, 80), lengths)
    assert torch.equal(out, model.output_lengths(lengths))
    assert out.tolist() == [101, 100, 2, 1]


def test_log_softmax_over_vocabulary():
    model = build_model(ModelConfig(), 80, 12).eval()
    with torch.no_grad():
        lp, _ = model(torch.randn(2, 50, 80), torch.tensor([50, 40]))
    assert torch.allclose(lp.exp().sum(-1), torch.ones(2, lp.shape[1]), atol=1e-5)


def test_seed_report_init_shrinks_weights():
    default = build_model(preset("seed-crnn").model, 80, 33)
    report = build_model(preset("seed-report").model, 80, 33)
    # xavier(gain 0.1) bound for the 512->33 head is 0.1*sqrt(6/545) = 0.0105 vs PyTorch's
    # 1/sqrt(512) = 0.044; for the LSTM weights it is ~9x smaller than the default.
    assert report.head.weight.abs().max() < 0.3 * default.head.weight.abs().max()
    lstm = "encoder.rnn.rnn.weight_hh_l0"
    assert dict(report.named_parameters())[lstm].abs().max() < \
        0.15 * dict(default.named_parameters())[lstm].abs().max()
