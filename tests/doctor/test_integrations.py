"""The framework callbacks' core, without the frameworks; the classes when installed."""

from __future__ import annotations

import logging

import pytest
import torch

import asrlab.integrations as integ
from asrlab.doctor import CTCDoctor


def blank_heavy(T=50, B=4, V=12, blank_logit=6.0):
    logits = torch.randn(T, B, V) * 0.1
    logits[..., 0] += blank_logit
    return logits.log_softmax(-1)


def test_lightning_outputs_are_observed():
    doctor = CTCDoctor(every=2)
    lp = blank_heavy()
    for step in range(4):
        integ.observe_outputs(doctor, {"loss": torch.tensor(3.0), "log_probs": lp,
                                       "output_lengths": torch.tensor([50, 40, 30, 20])}, step)
    assert len(doctor.history) == 2 and doctor.history[-1].blank_ratio == 1.0
    f, = doctor.findings()
    assert f.code == "UNDERTRAINED"
    assert integ.observe_outputs(doctor, {"loss": torch.tensor(1.0)}) == []  # nothing to see


def test_lightning_per_utterance_losses_name_ids():
    doctor = CTCDoctor(every=1)
    integ.observe_outputs(doctor, {"log_probs": blank_heavy(B=2), "output_lengths": torch.tensor([50, 50]),
                                   "losses": torch.tensor([2.0, float("inf")]), "ids": ["a", "b"]})
    f, = [f for f in doctor.findings() if f.code == "NONFINITE_LOSS"]
    assert f.evidence["ids"] == ["b"]


def test_hf_forward_uses_attention_mask_lengths():
    doctor = CTCDoctor(every=1)
    logits = torch.randn(2, 30, 8)  # raw logits (B, T, V), as HF CTC heads return
    logits[..., 0] += 8
    mask = torch.zeros(2, 4800, dtype=torch.long)
    mask[0, :4800] = 1
    mask[1, :1600] = 1
    integ.observe_hf_forward(doctor, logits, mask, lambda n: n // 160, torch.tensor(2.5), step=0)
    assert doctor.history[0].frames == 30 + 10


def test_report_logs_by_severity(caplog):
    doctor = CTCDoctor(every=1)
    seen = []
    with caplog.at_level(logging.INFO, logger="asrlab.doctor"):
        integ.report(doctor.check_batch(torch.randn(5, 2, 4), [5, 5], [[1], [2]], [1, 1]),
                     seen.append)
    assert seen and "NOT_LOG_PROBS" in seen[0]
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_classes_need_their_frameworks():
    for name, module in (("DoctorLightningCallback", "lightning"),
                         ("DoctorTrainerCallback", "transformers")):
        try:
            __import__(module)
            installed = True
        except ImportError:
            installed = False
        if installed:
            assert isinstance(getattr(integ, name), type)
        else:
            with pytest.raises(ImportError, match=f"pip install {module}"):
                getattr(integ, name)
    with pytest.raises(AttributeError):
        integ.NoSuchThing  # noqa: B018


# ---- the callbacks in their real trainers (lightning and transformers are in the test extra) --

def lightning_fit(log_probs_of, steps: int = 6, **trainer_kw):
    """A tiny CTC model in a real Lightning Trainer. `log_probs_of(logits)` is the model's
    output step: log_softmax when wired right. The output layer starts with blank winning
    (as every CTC model soon does): the healthy run is in the normal blank phase."""
    import lightning.pytorch as pl

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 6)
            with torch.no_grad():
                self.lin.bias[0] = 6.0

        def training_step(self, batch, _):
            x, = batch
            lp = log_probs_of(self.lin(x)).transpose(0, 1)  # (T, N, C)
            lens = torch.full((x.shape[0],), x.shape[1])
            targets = torch.tensor([[1, 2]] * x.shape[0])
            tlens = torch.full_like(lens, 2)
            loss = torch.nn.functional.ctc_loss(lp, targets, lens, tlens)
            return {"loss": loss, "log_probs": lp.detach(), "output_lengths": lens,
                    "targets": targets, "target_lengths": tlens}

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    torch.manual_seed(0)
    cb = integ.DoctorLightningCallback(every=2)
    data = torch.utils.data.TensorDataset(torch.randn(8, 10, 4))
    trainer = pl.Trainer(max_steps=steps, callbacks=[cb], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         **trainer_kw)
    trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=4))
    return cb, trainer


def test_lightning_callback_healthy_run():
    cb, trainer = lightning_fit(lambda logits: logits.log_softmax(-1))
    assert len(cb.doctor.history) == 3  # 6 updates, one observation every 2
    assert "UNDERTRAINED" in [f.code for f in cb.findings]  # the blank phase, reported
    assert not [f for f in cb.findings if f.severity == "error"]
    assert float(trainer.callback_metrics["doctor/errors"]) == 0


def test_lightning_callback_knows_the_precision():
    """Mixed precision reaches the doctor's context (fp16 is then named for NaN losses)."""
    cb, _ = lightning_fit(lambda logits: logits.float().log_softmax(-1), steps=2,
                          precision="bf16-mixed")
    assert cb.doctor.tracker.ctx.precision == "bf16"
    cb, _ = lightning_fit(lambda logits: logits.log_softmax(-1), steps=2)
    assert cb.doctor.tracker.ctx.precision is None


def test_lightning_callback_names_a_wiring_fault():
    """softmax instead of log_softmax: ctc_loss raises nothing, the doctor names it."""
    cb, trainer = lightning_fit(lambda logits: logits.softmax(-1))
    f, = [f for f in cb.findings if f.code == "NOT_LOG_PROBS"]
    assert f.severity == "error" and f.evidence["kind"] == "softmax"
    assert float(trainer.callback_metrics["doctor/errors"]) >= 1


def hf_fit(tmp_path, label_pad: int, steps: int = 4):
    """A tiny Wav2Vec2ForCTC in a real transformers Trainer; labels padded with `label_pad`
    (-100 is HF's convention; the pad token, 0, is CTC's blank: the classic collator bug)."""
    from .hfkit import collate, fit, tiny_ctc

    model = tiny_ctc(vocab_size=8)
    with torch.no_grad():
        model.lm_head.bias[0] = 6.0  # blank wins from the start: the normal blank phase
    data = [{"input_values": torch.randn(3200), "labels": torch.randint(1, 8, (2 + i % 3,))}
            for i in range(16)]
    cb = integ.DoctorTrainerCallback(every=2)
    fit(model, data, tmp_path / "hf", cb, steps, lr=1e-3,
        collator=lambda items: collate(items, label_pad=label_pad))
    return cb


def test_hf_trainer_callback_healthy_run(tmp_path):
    cb = hf_fit(tmp_path, label_pad=-100)
    assert len(cb.doctor.history) == 2  # 4 updates, one observation every 2
    assert "UNDERTRAINED" in [f.code for f in cb.findings]
    assert not [f for f in cb.findings if f.severity == "error"]


def test_hf_trainer_callback_names_labels_padded_with_the_blank(tmp_path):
    cb = hf_fit(tmp_path, label_pad=0)
    f, = [f for f in cb.findings if f.code == "BLANK_IN_TARGETS"]
    assert f.severity == "error" and "padding" in f.message
