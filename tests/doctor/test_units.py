"""BLANK_COLLAPSE judged relative to the units: output frames per label.

The sequences below are observations recorded by `asrlab train` in real runs on the default
synthetic corpus (docs/doctor.md, "Calibration runs"): (update, source, blank ratio, mean max
non-blank probability, empty-hypothesis rate, distinct tokens). Frames per label are what
`asrlab check` measured on the same data (stats.lengths.train.median_frames_per_label).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from asrlab.doctor import CTCDoctor
from asrlab.doctor.rules import HealthTracker, Observation, RunContext, Thresholds

# default preset, --tokenizer bpe --vocab-size 256 (median 4.0 frames per label): healthy, val
# CER 0.56 at update 784. Blank still wins 98.4 % of frames at update 294-300, while every
# training hypothesis already has text: the character-calibrated judgement called it collapsed.
BPE256 = [(0, "t", 0.134, 0.0043, 0.0, 28), (25, "t", 1.0, 0.0157, 1.0, 0),
          (50, "t", 1.0, 0.0139, 1.0, 0), (75, "t", 1.0, 0.0114, 1.0, 0),
          (98, "v", 1.0, 0.0082, 1.0, 0), (100, "t", 1.0, 0.0078, 1.0, 0),
          (125, "t", 1.0, 0.0091, 1.0, 0), (150, "t", 0.9986, 0.012, 0.909, 1),
          (175, "t", 0.9956, 0.009, 0.5, 2), (196, "v", 0.9841, 0.0092, 0.081, 1),
          (200, "t", 0.9873, 0.0127, 0.0, 3), (294, "v", 0.9834, 0.0089, 0.04, 3),
          (300, "t", 0.9837, 0.0124, 0.0, 2), (392, "v", 0.9642, 0.0128, 0.0, 17),
          (400, "t", 0.9494, 0.0171, 0.0, 14), (490, "v", 0.9476, 0.0243, 0.0, 28),
          (500, "t", 0.9736, 0.0151, 0.0, 14)]
BPE256_FPL = 4.0

# bench/fsdd.py's noise recipe with 1,500 espeak digit strings and word-level BPE (vocab 56:
# every digit one token; 11.0 frames per label), held-out speaker nicolas: all-blank until
# update 350, then text in every training batch, some batches back to one token. The
# previous session's known false alarm (BLANK_COLLAPSE "flat" at 300 in 4 of 4 such runs).
FSDD_WORDS = [(0, "t", 0.0, 0.0195, 0.0, 16), (25, "t", 1.0, 0.0024, 1.0, 0),
              (50, "t", 1.0, 0.0168, 1.0, 0), (75, "t", 1.0, 0.0162, 1.0, 0),
              (100, "t", 1.0, 0.0239, 1.0, 0), (125, "t", 1.0, 0.0229, 1.0, 0),
              (150, "t", 1.0, 0.0174, 1.0, 0), (175, "t", 1.0, 0.0137, 1.0, 0),
              (200, "t", 1.0, 0.0112, 1.0, 0), (225, "t", 1.0, 0.0088, 1.0, 0),
              (242, "v", 1.0, 0.0149, 1.0, 0), (250, "t", 1.0, 0.024, 1.0, 0),
              (275, "t", 1.0, 0.013, 1.0, 0), (300, "t", 1.0, 0.01, 1.0, 0),
              (325, "t", 1.0, 0.0154, 1.0, 0), (350, "t", 1.0, 0.0134, 1.0, 0),
              (375, "t", 0.9894, 0.0104, 0.545, 3), (400, "t", 0.9832, 0.0142, 0.111, 2),
              (425, "t", 0.9917, 0.0074, 0.0, 3), (450, "t", 0.9693, 0.0201, 0.0, 4),
              (475, "t", 0.9908, 0.0085, 0.333, 1), (484, "v", 0.9646, 0.0132, 0.0, 5),
              (500, "t", 0.9748, 0.0195, 0.0, 6), (600, "t", 0.9296, 0.0234, 0.15, 6)]
FSDD_WORDS_FPL = 11.0


def replay(rows, frames_per_label, context=None) -> list:
    t = HealthTracker(context=replace(context or RunContext(), frames_per_label=frames_per_label))
    found = []
    for step, src, blank, nonblank, empty, distinct in rows:
        t.observe(Observation(step, {"t": "train", "v": "val"}[src], blank, 1 - nonblank, nonblank,
                              empty, distinct, 1000))
        found += [(step, f.code, f.evidence.get("kind")) for f in t.new_findings()]
    return found


def collapses(found) -> list:
    return [(step, kind) for step, code, kind in found if code == "BLANK_COLLAPSE"]


@pytest.mark.parametrize("rows, fpl", [(BPE256, BPE256_FPL), (FSDD_WORDS, FSDD_WORDS_FPL)],
                         ids=["bpe256", "fsdd-word-units"])
def test_healthy_sparse_unit_runs_are_no_collapse_relative_to_their_units(rows, fpl):
    assert collapses(replay(rows, fpl)) == []


@pytest.mark.parametrize("rows", [BPE256, FSDD_WORDS], ids=["bpe256", "fsdd-word-units"])
def test_the_same_runs_judged_as_characters_were_the_false_alarm(rows):
    assert collapses(replay(rows, None))[0] == (300, "flat")


def test_a_noisy_batch_of_one_token_after_text_is_not_a_regression():
    """Update 475 of the FSDD run: one batch with a single token after batches with text. Only
    a fall back to (nearly) all-blank is a regression."""
    found = replay(FSDD_WORDS, FSDD_WORDS_FPL)
    assert ("BLANK_COLLAPSE", "regressed") not in [(c, k) for _, c, k in found]


def test_thresholds_scale_with_frames_per_label():
    th = Thresholds()
    assert th.for_units(None) == th and th.for_units(1.0) == th  # characters: as calibrated
    u = 13.0 / th.reference_frames_per_label  # FSDD word-level BPE
    s = th.for_units(13.0)
    assert 1 - s.blank_dominant == pytest.approx((1 - th.blank_dominant) / u)
    assert 1 - s.escaped_blank_ratio == pytest.approx((1 - th.escaped_blank_ratio) / u)
    assert s.confident_nonblank == pytest.approx(th.confident_nonblank / u)
    assert s.grace_updates == round(th.grace_updates * u ** th.grace_exponent)
    assert s.grace_updates >= th.grace_updates


def test_all_blank_is_still_the_blank_phase_at_any_units():
    for fpl in (1.0, 4.0, 13.0, 50.0):
        th = Thresholds().for_units(fpl)
        assert Observation(0, "train", 1.0, 0.9, 0.01, 1.0, 0, 100).blank_phase(th)


def test_ctc_doctor_measures_frames_per_label_on_the_first_checked_batch():
    doctor = CTCDoctor()
    lp = torch.randn(40, 2, 6).log_softmax(-1)
    targets = torch.tensor([[1, 2, 3, 4], [2, 2, 0, 0]])  # 4 labels; 2 labels + 1 repeat
    doctor.check_batch(lp, [40, 30], targets, [4, 2])
    assert doctor.tracker.ctx.frames_per_label == pytest.approx((40 / 4 + 30 / 3) / 2)
    assert doctor.tracker.th.grace_updates > Thresholds().grace_updates
    given = CTCDoctor(context=RunContext(frames_per_label=2.0))
    given.check_batch(lp, [40, 30], targets, [4, 2])
    assert given.tracker.ctx.frames_per_label == 2.0  # the context's value wins
