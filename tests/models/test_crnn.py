from dataclasses import replace

import pytest
import torch

from asrlab.config import Config, CRNNConfig, FeatureConfig, ModelConfig, preset
from asrlab.models import build_model


def model_of(m: ModelConfig, n_mels: int, vocab: int):
    return build_model(Config(model=m, features=FeatureConfig(n_mels=n_mels)), vocab)


@pytest.mark.parametrize("name", ["crnn-sub4", "crnn-sub2", "seed-crnn"])
def test_padding_invariance_batched_equals_one_by_one(name):
    torch.manual_seed(0)
    cfg = preset("seed-crnn" if name == "seed-crnn" else "default").model
    cfg = replace(cfg, name=name)
    model = model_of(cfg, 80, 30).eval()
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
    model = model_of(ModelConfig(), 80, 10).eval()
    lengths = torch.tensor([401, 400, 7, 1])
    with torch.no_grad():
        _, out = model(torch.randn(4, 401, 80), lengths)
    assert torch.equal(out, model.output_lengths(lengths))
    assert out.tolist() == [101, 100, 2, 1]


def test_crnn_sub2_keeps_twice_the_frames_of_crnn_sub4():
    lengths = torch.tensor([401, 400, 7, 1])
    sub2 = model_of(ModelConfig(name="crnn-sub2"), 80, 10).eval()
    with torch.no_grad():
        _, out = sub2(torch.randn(4, 401, 80), lengths)
    assert torch.equal(out, sub2.output_lengths(lengths))
    assert out.tolist() == [201, 200, 4, 1]


def test_log_softmax_over_vocabulary():
    model = model_of(ModelConfig(), 80, 12).eval()
    with torch.no_grad():
        lp, _ = model(torch.randn(2, 50, 80), torch.tensor([50, 40]))
    assert torch.allclose(lp.exp().sum(-1), torch.ones(2, lp.shape[1]), atol=1e-5)


def test_seed_report_init_shrinks_weights():
    default = model_of(preset("seed-crnn").model, 80, 33)
    report = model_of(preset("seed-report").model, 80, 33)
    # xavier(gain 0.1) bound for the 512->33 head is 0.1*sqrt(6/545) = 0.0105 vs PyTorch's
    # 1/sqrt(512) = 0.044; for the LSTM weights it is ~9x smaller than the default.
    assert report.head.weight.abs().max() < 0.3 * default.head.weight.abs().max()
    lstm = "encoder.rnn.fwd.0.weight_hh_l0"
    assert dict(report.named_parameters())[lstm].abs().max() < \
        0.15 * dict(default.named_parameters())[lstm].abs().max()


def _stacked_twin(rnn) -> torch.nn.LSTM:
    """The reference: one stacked bidirectional nn.LSTM holding BiLSTM's weights."""
    layers = len(rnn.fwd)
    ref = torch.nn.LSTM(rnn.fwd[0].input_size, rnn.hidden, num_layers=layers, batch_first=True,
                        bidirectional=True).eval()
    for k in range(layers):
        for direction, suffix in ((rnn.fwd[k], ""), (rnn.bwd[k], "_reverse")):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{k}{suffix}").data.copy_(getattr(direction, f"{name}_l0"))
    return ref


def test_bilstm_equals_packed_sequence_lstm_padding_included():
    """BiLSTM runs on the padded batch (oneDNN kernel) yet computes exactly what a packed
    bidirectional nn.LSTM computes, and zeroes padded frames as pad_packed_sequence does."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from asrlab.models.crnn import BiLSTM

    torch.manual_seed(0)
    rnn = BiLSTM(12, 16, layers=3, dropout=0.3).eval()
    ref = _stacked_twin(rnn)
    lengths = torch.tensor([37, 12, 25, 1])
    x = torch.randn(4, 37, 12)
    with torch.no_grad():
        out, out_len = rnn(x, lengths)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        want, _ = pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=37)
    assert torch.equal(out_len, lengths)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-4)
    assert out[1, 12:].abs().max() == 0


def test_bilstm_loads_checkpoints_of_the_stacked_layout():
    """Checkpoints written when BiLSTM held one stacked nn.LSTM (`rnn.weight_ih_l0_reverse`)
    still load, into the same weights."""
    torch.manual_seed(0)
    model = model_of(ModelConfig(crnn=CRNNConfig(hidden=16, layers=2, conv_channels=4)), 20, 7).eval()
    ref = _stacked_twin(model.encoder.rnn)
    old = {k: v for k, v in model.state_dict().items() if ".rnn." not in k}
    old.update({f"encoder.rnn.rnn.{k}": v for k, v in ref.state_dict().items()})
    fresh = model_of(ModelConfig(crnn=CRNNConfig(hidden=16, layers=2, conv_channels=4)), 20, 7).eval()
    fresh.load_state_dict(old)  # strict: every key must be mapped
    x, lengths = torch.randn(2, 30, 20), torch.tensor([30, 17])
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, lengths)[0], model(x, lengths)[0])
