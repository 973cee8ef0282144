"""The judgement during training (HealthTracker, shared by TrainingMonitor and CTCDoctor):
real tiny loops on real speech for divergence, non-finite losses, a healthy run, and the
blank phase that ends (UNDERTRAINED) vs the one that does not (BLANK_COLLAPSE)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asrlab.doctor import CTCDoctor, HealthTracker, Observation, RunContext, Thresholds

from .conftest import make_batch, tiny_model


def ctc(lp, targets, olens, tlens, naive: bool = False):
    """Per-utterance loss per token, inf for infeasible utterances. The right way computes
    with zero_infinity=True and puts the inf back from the lengths (as asrlab's trainer does);
    `naive` masks an inf loss after the fact, whose NaN gradient still reaches the weights."""
    if naive:
        return F.ctc_loss(lp, targets, olens, tlens, reduction="none") / tlens
    losses = F.ctc_loss(lp, targets, olens, tlens, reduction="none", zero_infinity=True) / tlens
    rows = torch.split(targets, tlens.tolist())
    need = tlens + torch.tensor([int((r[1:] == r[:-1]).sum()) for r in rows])
    return torch.where(olens >= need, losses, torch.full_like(losses, float("inf")))


def train_loop(data, steps, lr, init=None, gain=1.0, warmup=0, every=10, bad_text=None,
               seed=0, ctx=None, naive=False):
    """Adam on 16 random utterances per update, the doctor observing every update."""
    tok = data["tokenizer"]
    model = tiny_model(data["n_mels"], tok.vocab_size, init, gain, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    doctor = CTCDoctor(every=every, context=ctx or RunContext(init=init, init_gain=gain, lr=lr))
    rng = np.random.default_rng(seed)
    texts = list(data["texts"])
    if bad_text is not None:  # one utterance whose transcript cannot fit its audio
        texts[bad_text] = texts[bad_text] * 12  # no space: keep to the vocabulary
    data = {**data, "texts": texts}
    for step in range(steps):
        idx = list(rng.choice(len(texts), 16, replace=False))
        if bad_text is not None and bad_text not in idx:
            idx[0] = bad_text
        x, lens, targets, tlens, ids = make_batch(data, idx)
        if warmup:
            for g in opt.param_groups:
                g["lr"] = lr * min(1.0, (step + 1) / warmup)
        lp, olens = model(x, lens)
        lp = lp.transpose(0, 1)  # (T, N, C) as ctc_loss takes it
        losses = ctc(lp, targets, olens, tlens, naive)
        doctor.observe(lp, olens, losses=losses, ids=ids, targets=targets, target_lengths=tlens)
        finite = torch.isfinite(losses)
        if finite.any():
            opt.zero_grad()
            losses[finite].mean().backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
    return doctor


def loud(findings):
    return [str(f) for f in findings if f.severity != "info"]


def test_huge_learning_rate_diverges(fsdd_data):
    doctor = train_loop(fsdd_data, 60, lr=1.0)
    f, = [f for f in doctor.findings() if f.code == "DIVERGENCE"]
    assert f.severity == "error" and "--lr" in f.remedy


def test_infeasible_utterance_gives_nonfinite_loss_named(fsdd_data):
    doctor = train_loop(fsdd_data, 12, lr=3e-3, bad_text=7)
    f, = [f for f in doctor.findings() if f.code == "NONFINITE_LOSS"]
    bad_id = fsdd_data["ids"][7]
    assert f.evidence["ids"] == [bad_id] and f.evidence["causes"][bad_id].startswith("infeasible")
    assert f.severity == "warning"  # one utterance of many: left out of the update, listed


def test_masking_an_inf_loss_poisons_the_weights_and_is_named(fsdd_data):
    doctor = train_loop(fsdd_data, 6, lr=3e-3, bad_text=7, naive=True)
    f, = [f for f in doctor.findings() if f.code == "DIVERGENCE"]
    assert f.evidence["kind"] == "nan" and f.evidence["utterance"] == fsdd_data["ids"][7]
    assert "zero_infinity=True" in f.remedy


@pytest.mark.slow
def test_healthy_run_leaves_the_blank_phase_without_warnings(fsdd_data):
    doctor = train_loop(fsdd_data, 150, lr=3e-3)
    assert loud(doctor.findings()) == []
    assert doctor.history[-1].blank_ratio < 0.9  # it produces text
    assert any(o.blank_phase(Thresholds()) for o in doctor.history)  # after a blank phase


@pytest.mark.slow
def test_weak_init_is_blank_collapse_while_default_init_is_undertrained(fsdd_data):
    """The original failure in miniature: xavier gain 0.1 and a long warmup (700 updates),
    Adam 1e-3. With PyTorch's init the non-blank probability climbs off its trough within
    the grace period; with gain 0.1 it stays flat: BLANK_COLLAPSE naming the init."""
    steps = 320
    weak = train_loop(fsdd_data, steps, lr=1e-3, init="xavier", gain=0.1, warmup=700,
                      ctx=RunContext(init="xavier", init_gain=0.1, lr=1e-3, warmup_steps=700,
                                     steps_per_epoch=8))
    f, = [f for f in weak.findings() if f.code == "BLANK_COLLAPSE"]
    assert f.evidence["kind"] == "flat" and "gain 0.1" in f.message
    assert "--init-gain 1.0" in f.remedy or "seed-report" in f.remedy
    healthy = train_loop(fsdd_data, steps, lr=1e-3, warmup=700)
    assert loud(healthy.findings()) == []
    assert healthy.history[-1].mean_max_nonblank_prob > 1.5 * min(
        o.mean_max_nonblank_prob for o in healthy.history if o.blank_phase(Thresholds()))


# ---- the rules on recorded observation sequences -----------------------------------------

def obs(step, blank_ratio, nonblank, empty=None, distinct=0, source="train"):
    return Observation(step, source, blank_ratio, 1 - nonblank * 3, nonblank,
                       empty if empty is not None else float(blank_ratio >= 0.98), distinct, 1000)


def test_blank_phase_is_undertrained_before_the_grace_period():
    t = HealthTracker()
    for s in range(0, 200, 25):
        t.observe(obs(s, 1.0, 0.02))
    f, = t.findings()
    assert f.code == "UNDERTRAINED" and f.severity == "info"
    f, = t.findings(final=True)  # training ended here: needs more updates
    assert f.severity == "warning" and "--resume" in f.remedy


def test_flat_blank_phase_past_the_grace_period_is_collapse():
    t = HealthTracker(context=RunContext(init="xavier", init_gain=0.1, lr=1e-3))
    for s in range(0, 400, 25):
        t.observe(obs(s, 1.0, 0.02 + 0.0005 * (s % 50 == 0)))
    f, = t.findings()
    assert f.code == "BLANK_COLLAPSE" and f.severity == "error"
    assert f.evidence["likely_causes"][0].startswith("initialization")
    assert "--blank-penalty 2" in f.remedy and "--ctc-smoothing 0.1" in f.remedy


def test_rising_nonblank_probability_is_not_collapse():
    t = HealthTracker()
    for i, s in enumerate(range(0, 400, 25)):
        t.observe(obs(s, 1.0, 0.02 * (1.1 ** i)))
    f, = t.findings()
    assert f.code == "UNDERTRAINED" and "rising" in f.message


def test_back_to_blank_after_text_is_collapse():
    t = HealthTracker(context=RunContext(lr=5e-3))
    for s, (b, nb, d) in enumerate([(1.0, 0.02, 0), (0.5, 0.4, 12), (0.4, 0.5, 15), (1.0, 0.01, 0)]):
        t.observe(obs(s * 25, b, nb, distinct=d))
    f, = t.findings()
    assert f.code == "BLANK_COLLAPSE" and f.evidence["kind"] == "regressed" and "--lr" in f.remedy


def test_findings_are_reported_once():
    t = HealthTracker()
    for s in range(0, 100, 25):
        t.observe(obs(s, 1.0, 0.02))
    assert [f.code for f in t.new_findings()] == ["UNDERTRAINED"]
    t.observe(obs(100, 1.0, 0.02))
    assert t.new_findings() == []


def test_small_loss_wobble_is_not_divergence():
    """A nearly converged model's per-token loss doubling from 0.03 to 0.07 is noise."""
    t = HealthTracker()
    rng = np.random.default_rng(0)
    losses = list(np.linspace(6, 0.05, 60)) + list(0.03 + 0.1 * rng.random(40))
    for s, v in enumerate(losses):
        t.observe_losses(s, torch.tensor([v]))
    assert [f for f in t.findings() if f.code == "DIVERGENCE"] == []
    for s, v in enumerate([3.0, 0.5, 4.0, 0.3] * 10, start=len(losses)):
        t.observe_losses(s, torch.tensor([v]))
    f, = [f for f in t.findings() if f.code == "DIVERGENCE"]
    assert f.evidence["kind"] in ("oscillating", "rising")


# ---- the TrainingMonitor's hooks, on asrlab's own Run -------------------------------------

def _run(tmp_path, step=0):
    from asrlab.config import preset
    from asrlab.data.tokenizer import CharTokenizer
    from asrlab.train import Run, TrainState

    return Run(tmp_path, preset("default"), CharTokenizer.train(["abc"]), None,
               TrainState(step=step), steps_per_epoch=40)


def _blank_batch(B=4, T=30, V=4):
    from types import SimpleNamespace

    logits = torch.randn(B, T, V) * 0.1
    logits[..., 0] += 4.0
    batch = SimpleNamespace(ids=[f"u{i}" for i in range(B)], targets=torch.ones(B, 3, dtype=torch.long),
                            target_lens=torch.full((B,), 3))
    return logits.log_softmax(-1), torch.full((B,), T), batch


def test_monitor_reports_once_and_continues_after_resume(tmp_path):
    from types import SimpleNamespace

    from asrlab.doctor.findings import read_findings
    from asrlab.doctor.monitor import TrainingMonitor, read_trace, trace_meta
    from asrlab.doctor.stats import EmissionStats

    def epoch_end(monitor, run, step):
        lp, lens, _ = _blank_batch()
        em = EmissionStats()
        em.add(lp, lens)
        m = SimpleNamespace(step=step, epoch=run.state.epoch + 1, val_loss=2.0, lr=1e-3)
        return [run.emit(f) or f for f in monitor.on_epoch_end(run, m, em)]

    run = _run(tmp_path)
    mon = TrainingMonitor()
    mon.on_train_start(run)
    for step in range(40):
        lp, lens, batch = _blank_batch()
        mon.on_step(run, step, lp, lens, torch.full((4,), 2.0), batch)
        run.state.step = step + 1
    # the blank phase was reported as soon as a training batch showed it (step 0), once
    assert [(f.code, f.severity) for f in read_findings(tmp_path / "findings.jsonl")] == \
        [("UNDERTRAINED", "info")]
    assert epoch_end(mon, run, 40) == []  # the same state is not reported again
    mon.on_train_end(run)
    ended = read_findings(tmp_path / "findings.jsonl")
    assert [f.severity for f in ended] == ["info", "warning"]
    obs, losses = read_trace(tmp_path)
    assert [o.step for o in obs if o.source == "train"] == [0, 25] and len(losses) == 40
    assert trace_meta(tmp_path)["steps_per_epoch"] == 40
    # frames per label measured on the first epoch's batches: 30 frames for 3 labels + 2 repeats
    assert trace_meta(tmp_path)["frames_per_label"] == 6.0
    assert mon.tracker.th.blank_dominant > Thresholds().blank_dominant  # judged relative to it

    resumed = _run(tmp_path, step=40)
    mon2 = TrainingMonitor()
    mon2.on_train_start(resumed)
    assert mon2.tracker.ctx.frames_per_label == 6.0  # read back from the trace
    assert epoch_end(mon2, resumed, 41) == []
    mon2.on_train_end(resumed)
    assert len(read_findings(tmp_path / "findings.jsonl")) == 2  # nothing repeated


def test_validation_lagging_behind_training_is_not_collapse():
    """Training batches produce text while the last validation is still all-blank: leaving
    the phase, neither stuck nor regressed."""
    t = HealthTracker()
    for s in range(0, 350, 25):
        t.observe(obs(s, 1.0, 0.03))
        t.observe(obs(s, 1.0, 0.03, source="val"))
    t.observe(obs(375, 0.7, 0.3, distinct=9))  # train: text
    t.observe(obs(380, 1.0, 0.03, source="val"))
    f, = t.findings()
    assert f.code == "UNDERTRAINED" and "already has text" in f.message


def test_loss_swinging_with_batch_difficulty_while_falling_is_not_divergence():
    """Fine-tuning a good model with noise added to half the utterances: a clean batch's loss
    is a fifth of a noisy one's, so consecutive updates differ by 2-5x, while the median falls
    (seen on FSDD: a false DIVERGENCE error at update 130 of a healthy run)."""
    t = HealthTracker(context=RunContext(lr=5e-4))
    for s in range(150):  # noisy and clean batches in turn
        level = 0.2 + 2.5 * 0.985 ** s
        t.observe_losses(s, torch.tensor([level * (3.0 if s % 2 else 0.6)]))
    assert [f for f in t.findings() if f.code == "DIVERGENCE"] == []
    for s in range(150, 250):  # the same swings, the median no longer falling: reported
        t.observe_losses(s, torch.tensor([1.0 * (3.0 if s % 2 else 0.6)]))
    f, = [f for f in t.findings() if f.code == "DIVERGENCE"]
    assert f.evidence["kind"] in ("oscillating", "rising")


def test_a_trained_models_batch_spread_is_not_divergence():
    """After learning (3.7 -> 0.3 per token), batches of a fine-tuned FSDD model still range
    from 0.1 to 0.9 with an outlier near 2: the swings stay far below the untrained loss."""
    t = HealthTracker(context=RunContext(lr=5e-4))
    losses = list(np.linspace(3.7, 0.3, 60)) + [0.1, 0.9] * 40
    losses[90] = 1.95
    for s, v in enumerate(losses):
        t.observe_losses(s, torch.tensor([v]))
        assert [f for f in t.findings() if f.code == "DIVERGENCE"] == [], s


def test_loss_climbing_through_a_short_first_epoch_is_not_divergence():
    """Epoch 1 feeds the shortest utterances first (train.sort_first_epoch): a fine-tuned
    model's per-token loss falls to 0.3 on single digits, then climbs to 2.4 as joined digit
    strings arrive (FSDD, update 46). Only a loss above the untrained model's counts there."""
    climb = list(np.linspace(3.7, 0.3, 30)) + list(np.linspace(0.3, 2.4, 30)) + [2.4] * 20

    def divergence(sorted_updates, losses):
        t = HealthTracker(context=RunContext(lr=5e-4, sorted_updates=sorted_updates))
        for s, v in enumerate(losses):
            t.observe_losses(s, torch.tensor([v]))
        return [f for f in t.findings() if f.code == "DIVERGENCE"]

    assert divergence(100, climb) == []
    f, = divergence(0, climb)  # the same losses outside a sorted epoch: rising
    assert f.evidence["kind"] == "rising"
    f, = divergence(100, climb + [9.0] * 20)  # above 2x the untrained loss: reported even there
    assert f.evidence["kind"] == "rising" and "untrained" in f.message
