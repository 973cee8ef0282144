"""The CTC doctor as callbacks for PyTorch Lightning and the Hugging Face Trainer.

Both are thin: they hand the model's CTC output to a `CTCDoctor` (the same judgement as
asrlab's own TrainingMonitor) and report its findings through the framework's logger. The
classes exist only when their framework is installed; importing them otherwise raises an
ImportError saying what to install:

    from asrlab.integrations import DoctorLightningCallback   # needs lightning
    trainer = L.Trainer(callbacks=[DoctorLightningCallback()])
    # training_step returns {"loss": loss, "log_probs": lp (T, N, C), "output_lengths": lens,
    #                        "losses": per-utterance loss (optional), "ids": [...] (optional)}

    from asrlab.integrations import DoctorTrainerCallback     # needs transformers
    trainer = Trainer(..., callbacks=[DoctorTrainerCallback()])
    # reads `logits` of the model's forward (e.g. Wav2Vec2ForCTC) through a forward hook;
    # output lengths from `model._get_feat_extract_output_lengths(attention_mask.sum(-1))`

The framework-free parts (`observe_outputs`, `observe_hf_forward`, `report`) are plain
functions, tested without either framework.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

import torch

from asrlab.doctor import CTCDoctor, Finding

log = logging.getLogger("asrlab.doctor")

# DoctorLightningCallback and DoctorTrainerCallback are made on first access (__getattr__)
__all__ = ["observe_outputs", "observe_hf_forward", "report"]


# ---- framework-free core ----------------------------------------------------------------

def observe_outputs(doctor: CTCDoctor, outputs, step: int | None = None) -> list[Finding]:
    """A Lightning `training_step` result (a dict) -> new findings. Needs `log_probs` and
    `output_lengths`; uses `losses` (per utterance) or `loss`, and `ids` when present."""
    if not isinstance(outputs, dict) or "log_probs" not in outputs:
        return []
    lengths = outputs.get("output_lengths")
    lp = outputs["log_probs"]
    if lengths is None:  # every frame counts
        n = lp.shape[0] if doctor.batch_first else lp.shape[1]
        t = lp.shape[1] if doctor.batch_first else lp.shape[0]
        lengths = torch.full((n,), t, dtype=torch.long)
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


def report(findings: Iterable[Finding], sink: Callable[[str], None] | None = None) -> None:
    """Log each finding (warning/error level as its severity); also pass it to `sink`."""
    for f in findings:
        level = logging.ERROR if f.severity == "error" else \
            logging.WARNING if f.severity == "warning" else logging.INFO
        log.log(level, "%s", f)
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

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            new = observe_outputs(self.doctor, outputs, trainer.global_step)
            self._publish(pl_module, new)

        def on_train_end(self, trainer, pl_module):
            report(self.doctor.new_findings(final=True))

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
            self.doctor = doctor or CTCDoctor(batch_first=False, every=every)
            self.findings: list[Finding] = []
            self._handle = None
            self._step = 0

        def on_train_begin(self, args, state, control, model=None, **kw):
            lengths_fn = getattr(model, "_get_feat_extract_output_lengths", None)

            def hook(module, hook_args, hook_kwargs, output):
                logits = getattr(output, "logits", None)
                if module.training and logits is not None:
                    new = observe_hf_forward(self.doctor, logits, hook_kwargs.get("attention_mask"),
                                             lengths_fn, getattr(output, "loss", None), self._step)
                    self.findings += new
                    report(new)

            self._handle = model.register_forward_hook(hook, with_kwargs=True)

        def on_step_end(self, args, state, control, **kw):
            self._step = state.global_step

        def on_train_end(self, args, state, control, **kw):
            report(self.doctor.new_findings(final=True))
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
