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


def test_lightning_callback_end_to_end():
    pl = pytest.importorskip("lightning.pytorch")

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 6)

        def training_step(self, batch, _):
            x, = batch
            lp = self.lin(x).log_softmax(-1).transpose(0, 1)  # (T, N, C)
            lens = torch.full((x.shape[0],), x.shape[1])
            targets = torch.ones(x.shape[0], 2, dtype=torch.long)
            loss = torch.nn.functional.ctc_loss(lp, targets, lens, torch.full_like(lens, 2))
            return {"loss": loss, "log_probs": lp.detach(), "output_lengths": lens}

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    cb = integ.DoctorLightningCallback(every=1)
    data = torch.utils.data.TensorDataset(torch.randn(8, 10, 4))
    trainer = pl.Trainer(max_steps=4, callbacks=[cb], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False)
    trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=4))
    assert len(cb.doctor.history) == 4
