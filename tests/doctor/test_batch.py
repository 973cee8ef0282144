"""`check_batch`: the wiring mistakes of a CTC loop, each made on a real model's output for
real speech (FSDD digits), reported with the right code; the correct call reports nothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from asrlab.doctor import CTCDoctor, check_batch

from .conftest import make_batch, tiny_model


@pytest.fixture(scope="module")
def batch(fsdd_data):
    """A correct ctc_loss call: log_probs (T, N, C), output lengths, concatenated targets."""
    model = tiny_model(fsdd_data["n_mels"], fsdd_data["tokenizer"].vocab_size).eval()
    x, lens, targets, tlens, ids = make_batch(fsdd_data, list(range(0, 120, 15)))
    with torch.no_grad():
        lp, olens = model(x, lens)  # (B, T', V) log-softmax
    return {"model": model, "x": x, "lens": lens, "lp": lp.transpose(0, 1), "olens": olens,
            "targets": targets, "tlens": tlens, "ids": ids}


def run(b, **over):
    args = {"log_probs": b["lp"], "input_lengths": b["olens"], "targets": b["targets"],
            "target_lengths": b["tlens"], "ids": b["ids"], **over}
    return check_batch(**args)


def codes(findings):
    return [f.code for f in findings]


def test_correct_batch_has_no_findings(batch):
    assert run(batch) == []
    # and ctc_loss agrees it is fine
    assert torch.isfinite(F.ctc_loss(batch["lp"], batch["targets"], batch["olens"], batch["tlens"],
                                     reduction="none")).all()


def test_padded_targets_are_accepted(batch):
    rows = torch.split(batch["targets"], batch["tlens"].tolist())
    padded = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)
    assert run(batch, targets=padded) == []


def test_batch_first_log_probs(batch):
    f, = run(batch, log_probs=batch["lp"].transpose(0, 1))
    assert f.code == "LAYOUT_MISMATCH" and "transpose(0, 1)" in f.remedy


def test_raw_logits(batch):
    logits = batch["lp"] * 0.5 + 3.0  # not normalized: what a head without log_softmax gives
    f, = run(batch, log_probs=logits)
    assert f.code == "NOT_LOG_PROBS" and f.evidence["kind"] == "logits"


def test_softmax_instead_of_log_softmax(batch):
    f, = run(batch, log_probs=batch["lp"].exp())
    assert f.code == "NOT_LOG_PROBS" and f.evidence["kind"] == "softmax"


def test_log_softmax_over_the_time_axis(batch):
    wrong = (batch["lp"] * 3).log_softmax(dim=0)  # log_softmax(dim=0) on (T, N, C)
    f, = [f for f in run(batch, log_probs=wrong) if f.code == "NOT_LOG_PROBS"]
    assert f.evidence["kind"] == "dim0"


def test_blank_in_targets_from_counting_padding(batch):
    rows = torch.split(batch["targets"], batch["tlens"].tolist())
    padded = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)  # pads with 0 = blank
    full = torch.full_like(batch["tlens"], padded.shape[1])
    found = run(batch, targets=padded, target_lengths=full)
    f, = [f for f in found if f.code == "BLANK_IN_TARGETS"]
    assert "padding" in f.message and f.evidence["blank"] == 0
    shorter = [i for i, n in zip(batch["ids"], batch["tlens"].tolist()) if n < padded.shape[1]]
    assert f.evidence["utterances"] == shorter


def test_target_ids_outside_the_vocabulary(batch):
    targets = batch["targets"].clone()
    targets[3] = batch["lp"].shape[2] + 4
    f, = run(batch, targets=targets)
    assert f.code == "BLANK_IN_TARGETS" and f.evidence["kind"] == "out-of-vocab"


def test_feature_lengths_instead_of_output_lengths(batch):
    f, = [f for f in run(batch, input_lengths=batch["lens"]) if f.code == "BAD_INPUT_LENGTHS"]
    assert f.severity == "error" and "4x subsampling" in f.message


def test_all_lengths_equal_to_padded_length(batch):
    full = torch.full_like(batch["olens"], batch["lp"].shape[0])
    found = run(batch, input_lengths=full)
    f, = [f for f in found if f.code == "BAD_INPUT_LENGTHS"]
    assert f.evidence["kind"] == "padding-ignored"
    shortest = batch["ids"][int(batch["olens"].argmin())]
    assert shortest in f.evidence["utterances"]


def test_lengths_equal_to_padded_length_without_padding_is_fine(batch):
    same = batch["lp"][:, :1].expand(-1, 4, -1).contiguous()  # 4 copies of one full utterance
    n = int(batch["olens"][0])
    assert check_batch(same[:n], [n] * 4, batch["targets"][:4], [1] * 4) == []


def test_infeasible_target(batch):
    tlens = batch["tlens"].clone()
    rows = list(torch.split(batch["targets"], tlens.tolist()))
    rows[1] = torch.tensor([2, 3] * 200)[: int(batch["olens"][1]) + 5]  # 5 labels too many
    targets = torch.cat(rows)
    tlens[1] = len(rows[1])
    f, = run(batch, targets=targets, target_lengths=tlens)
    assert f.code == "INFEASIBLE_LENGTH" and f.evidence["utterances"] == [batch["ids"][1]]
    loss = F.ctc_loss(batch["lp"], targets, batch["olens"], tlens, reduction="none")
    assert not torch.isfinite(loss[1])  # what the finding predicts


def test_repeats_count_towards_feasibility():
    lp = torch.randn(4, 1, 5).log_softmax(-1)
    assert check_batch(lp, [4], torch.tensor([[1, 2, 3, 4]]), [4]) == []
    f, = check_batch(lp, [4], torch.tensor([[1, 1, 2, 2]]), [4])  # needs 6 frames
    assert f.code == "INFEASIBLE_LENGTH" and f.evidence["needed"] == [6]


def test_nan_outputs(batch):
    lp = batch["lp"].clone()
    lp[2, 1] = float("nan")
    f, = run(batch, log_probs=lp)
    assert f.code == "DIVERGENCE" and f.evidence["kind"] == "nan"


def test_doctor_object_batch_first(batch):
    doc = CTCDoctor(batch_first=True)
    assert doc.check_batch(batch["lp"].transpose(0, 1), batch["olens"], batch["targets"],
                           batch["tlens"]) == []


def test_zero_length_targets_are_named(batch):
    """ctc_loss takes a zero-length target without complaint (its loss is -log P(all blank)),
    so an utterance whose transcript is empty teaches blank: check_batch names it."""
    tlens = batch["tlens"].clone()
    rows = list(torch.split(batch["targets"], batch["tlens"].tolist()))
    rows[3] = rows[3][:0]
    tlens[3] = 0
    targets = torch.cat(rows)
    assert torch.isfinite(F.ctc_loss(batch["lp"], targets, batch["olens"], tlens,
                                     reduction="none")).all()  # no error from PyTorch
    f, = run(batch, targets=targets, target_lengths=tlens)
    assert f.code == "EMPTY_TRANSCRIPT" and f.severity == "error"  # 1 of 8 > 10%
    assert f.evidence["utterances"] == [batch["ids"][3]]


def test_one_zero_length_target_in_a_large_batch_is_a_warning():
    lp = torch.randn(30, 12, 5).log_softmax(-1)
    targets = torch.ones(12, 3, dtype=torch.long)
    tlens = torch.full((12,), 3)
    tlens[7] = 0
    f, = check_batch(lp, torch.full((12,), 30), targets, tlens)
    assert f.code == "EMPTY_TRANSCRIPT" and f.severity == "warning"
    assert f.evidence["utterances"] == [7]
