"""The CTC doctor as callbacks for PyTorch Lightning and the Hugging Face Trainer.

Both are thin: they hand the model's CTC output to a `CTCDoctor` (the same judgement as
asrlab's own TrainingMonitor) and report its findings through the framework's logger. The
classes exist only when their framework is installed; importing them otherwise raises an
ImportError saying what to install:

    from asrlab.integrations import DoctorLightningCallback   # needs lightning
    trainer = L.Trainer(callbacks=[DoctorLightningCallback()])
    # training_step returns {"loss": loss, "log_probs": lp (T, N, C), "output_lengths": lens,
    #                        "losses": per-utterance loss (optional), "ids": [...] (optional),
    #                        "targets": ..., "target_lengths": ... (optional: as ctc_loss takes
    #                        them; the first batch then goes through `check_batch`)}

    from asrlab.integrations import DoctorTrainerCallback     # needs transformers
    trainer = Trainer(..., callbacks=[DoctorTrainerCallback()])
    # reads `logits` of the model's forward (e.g. Wav2Vec2ForCTC) through a forward hook;
    # output lengths from `model._get_feat_extract_output_lengths(attention_mask.sum(-1))`;
    # the first training batch's `labels` (-100 padded, blank = config.pad_token_id) go
    # through `check_batch` (blank or padding in the labels, empty or infeasible targets)

The framework-free parts (`observe_outputs`, `check_outputs`, `observe_hf_forward`,
`check_hf_batch`, `report`) are plain functions, tested without either framework; the classes
are tested in their real trainers (tests/doctor/test_integrations.py).
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

import torch

from asrlab.doctor import CTCDoctor, Finding

log = logging.getLogger("asrlab.doctor")

# DoctorLightningCallback and DoctorTrainerCallback are made on first access (__getattr__)
__all__ = ["observe_outputs", "check_outputs", "observe_hf_forward", "check_hf_batch", "report"]


# ---- framework-free core ----------------------------------------------------------------

def _output_lengths(doctor: CTCDoctor, outputs: dict) -> torch.Tensor:
    lengths = outputs.get("output_lengths")
    if lengths is not None:
        return lengths
    lp = outputs["log_probs"]  # every frame counts
    n = lp.shape[0] if doctor.batch_first else lp.shape[1]
    t = lp.shape[1] if doctor.batch_first else lp.shape[0]
    return torch.full((n,), t, dtype=torch.long)


def check_outputs(doctor: CTCDoctor, outputs) -> list[Finding]:
    """A Lightning `training_step` result with `targets` and `target_lengths` -> the wiring
    checks of `check_batch` (log-probs, layout, blank in targets, zero-length targets...)."""
    if not isinstance(outputs, dict) or "log_probs" not in outputs or \
            outputs.get("targets") is None or outputs.get("target_lengths") is None:
        return []
    return doctor.check_batch(outputs["log_probs"].detach(), _output_lengths(doctor, outputs),
                              outputs["targets"], outputs["target_lengths"],
                              ids=outputs.get("ids"))


def observe_outputs(doctor: CTCDoctor, outputs, step: int | None = None) -> list[Finding]:
    """A Lightning `training_step` result (a dict) -> new findings. Needs `log_probs` and
    `output_lengths`; uses `losses` (per utterance) or `loss`, and `ids` when present."""
    if not isinstance(outputs, dict) or "log_probs" not in outputs:
        return []
    lengths = _output_lengths(doctor, outputs)
    lp = outputs["log_probs"]
    losses = outputs.get("losses", outputs.get("loss"))
    return doctor.observe(lp, lengths, losses=losses, ids=outputs.get("ids"),
                          targets=outputs.get("targets"),
                          target_lengths=outputs.get("target_lengths"), step=step)


def observe_hf_forward(doctor: CTCDoctor, logits: torch.Tensor, attention_mask=None,
                       lengths_fn: Callable | None = None, loss=None,
                       step: int | None = None) -> list[Finding]:
    """A HF CTC model's forward (logits (B, T, V), raw) -> new findings. `lengths_fn` maps
    input sample counts to output frames (`model._get_feat_extract_output_lengths`)."""
    lp = logits.detach().float().log_softmax(dim=-1)
    B, T, _ = lp.shape
    if attention_mask is not None and lengths_fn is not None:
        lengths = torch.as_tensor(lengths_fn(attention_mask.sum(-1))).long().clamp(max=T)
    else:
        lengths = torch.full((B,), T, dtype=torch.long)
    if doctor.batch_first is False:
        lp = lp.transpose(0, 1)
    losses = loss.detach().reshape(-1) if isinstance(loss, torch.Tensor) else None
    return doctor.observe(lp, lengths, losses=losses, step=step)


def check_hf_batch(doctor: CTCDoctor, logits: torch.Tensor, labels: torch.Tensor,
                   attention_mask=None, lengths_fn: Callable | None = None,
                   blank: int | None = None) -> list[Finding]:
    """A HF CTC model's forward on one batch (logits (B, T, V); `labels` (B, S) padded with
    -100, HF's convention; blank = `config.pad_token_id`) -> `check_batch`'s findings: labels
    padded with the blank instead of -100, ids beyond the vocabulary, empty or infeasible
    targets."""
    B, T, _ = logits.shape
    lp = logits.detach().float().log_softmax(dim=-1).transpose(0, 1)  # (T, B, V)
    if attention_mask is not None and lengths_fn is not None:
        lengths = torch.as_tensor(lengths_fn(attention_mask.sum(-1))).long().clamp(max=T)
    else:
        lengths = torch.full((B,), T, dtype=torch.long)
    labels = labels.detach().cpu()
    valid = labels >= 0
    rows = [labels[i][valid[i]] for i in range(B)]
    width = max([len(r) for r in rows] + [1])
    targets = torch.zeros(B, width, dtype=torch.long)
    for i, r in enumerate(rows):
        targets[i, :len(r)] = r
    return doctor.check_batch(lp, lengths, targets, valid.sum(-1), blank=blank)


def report(findings: Iterable[Finding], sink: Callable[[str], None] | None = None) -> None:
    """Log each finding (warning/error level as its severity); also pass it to `sink`."""
    for f in findings:
        log.log(f.log_level, "%s", f)
        if sink is not None:
            sink(str(f))


# ---- framework classes, created on first access ------------------------------------------

def _lightning():
    try:
        import lightning.pytorch as pl
    except ImportError:
        try:
            import pytorch_lightning as pl
        except ImportError:
            raise ImportError("DoctorLightningCallback needs PyTorch Lightning: "
                              "pip install lightning") from None
    return pl


def _make_lightning_callback():
    pl = _lightning()

    class DoctorLightningCallback(pl.Callback):
        """Observes every training step's CTC output; findings go to the log and, as
        `doctor/errors` and `doctor/warnings` counts, to the Lightning logger."""

        def __init__(self, doctor: CTCDoctor | None = None, **doctor_kw):
            self.doctor = doctor or CTCDoctor(**doctor_kw)
            self.findings: list[Finding] = []
            self._checked = False

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            new = []
            if not self._checked and isinstance(outputs, dict) and "targets" in outputs:
                new += check_outputs(self.doctor, outputs)  # wiring, once
                self._checked = True
            new += observe_outputs(self.doctor, outputs, trainer.global_step)
            self._publish(pl_module, new)

        def on_train_end(self, trainer, pl_module):
            final = self.doctor.new_findings(final=True)
            self.findings += final
            report(final)

        def _publish(self, pl_module, new: list[Finding]) -> None:
            if not new:
                return
            self.findings += new
            report(new)
            pl_module.log("doctor/errors", float(sum(f.severity == "error" for f in self.findings)))
            pl_module.log("doctor/warnings",
                          float(sum(f.severity == "warning" for f in self.findings)))

    return DoctorLightningCallback


def _make_trainer_callback():
    try:
        from transformers import TrainerCallback
    except ImportError:
        raise ImportError("DoctorTrainerCallback needs Hugging Face transformers: "
                          "pip install transformers") from None

    class DoctorTrainerCallback(TrainerCallback):
        """Hooks the model's forward to observe its CTC logits while training."""

        def __init__(self, doctor: CTCDoctor | None = None, every: int = 25):
            self._own_doctor = doctor is None  # then the blank id comes from the model
            self.doctor = doctor or CTCDoctor(batch_first=False, every=every)
            self.findings: list[Finding] = []
            self._handle = None
            self._step = 0
            self._checked = False

        def on_train_begin(self, args, state, control, model=None, **kw):
            lengths_fn = getattr(model, "_get_feat_extract_output_lengths", None)
            blank = getattr(getattr(model, "config", None), "pad_token_id", None)
            if blank is not None and self._own_doctor:  # HF CTC heads use pad as the blank
                self.doctor.blank = blank

            def hook(module, hook_args, hook_kwargs, output):
                logits = getattr(output, "logits", None)
                if not module.training or logits is None:
                    return
                mask = hook_kwargs.get("attention_mask")
                new = []
                labels = hook_kwargs.get("labels")
                if not self._checked and labels is not None:
                    self._checked = True
                    new += check_hf_batch(self.doctor, logits, labels, mask, lengths_fn,
                                          self.doctor.blank if blank is None else blank)
                new += observe_hf_forward(self.doctor, logits, mask, lengths_fn,
                                          getattr(output, "loss", None), self._step)
                self.findings += new
                report(new)

            self._handle = model.register_forward_hook(hook, with_kwargs=True)

        def on_step_end(self, args, state, control, **kw):
            self._step = state.global_step

        def on_train_end(self, args, state, control, **kw):
            final = self.doctor.new_findings(final=True)
            self.findings += final
            report(final)
            if self._handle is not None:
                self._handle.remove()

    return DoctorTrainerCallback


_FACTORIES = {"DoctorLightningCallback": _make_lightning_callback,
              "DoctorTrainerCallback": _make_trainer_callback}
_made: dict[str, type] = {}


def __getattr__(name: str):
    if name in _FACTORIES:
        if name not in _made:
            _made[name] = _FACTORIES[name]()
        return _made[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
