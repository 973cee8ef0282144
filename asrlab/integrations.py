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
    trainer = Trainer(..., processing_class=processor, callbacks=[DoctorTrainerCallback()])
    # reads `logits` of the model's forward (e.g. Wav2Vec2ForCTC) through a forward hook;
    # output lengths from `model._get_feat_extract_output_lengths(attention_mask.sum(-1))`;
    # the first training batch's `labels` (-100 padded, blank = config.pad_token_id) go
    # through `check_batch` (blank or padding in the labels, empty or infeasible targets);
    # before training, the blank against the tokenizer (`check_hf_setup`); before the first
    # training forward, its `input_values` (`check_hf_inputs`: scale, bandwidth) and, before
    # every one, the batch's frames against SpecAugment's span (`check_hf_masking`); the run's
    # learning rate, warmup, precision and frozen parts go into the doctor's RunContext

The framework-free parts (`observe_outputs`, `check_outputs`, `observe_hf_forward`,
`check_hf_batch`, `check_hf_inputs`, `check_hf_masking`, `check_hf_setup`, `check_references`,
`hf_run_context`, `report`) are plain functions: the Lightning ones are tested without the
framework, the transformers ones on tiny models the tests build; the classes are tested in
their real trainers (tests/doctor/test_integrations.py, tests/doctor/test_hf_cases.py).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from asrlab.doctor import CTCDoctor, Finding
from asrlab.doctor.pretrained import (blank_token_findings, encoder_rate_findings,
                                      grouped_reference_findings, input_scale_findings,
                                      span_mask_findings)
from asrlab.doctor.rules import RunContext

log = logging.getLogger("asrlab.doctor")

# DoctorLightningCallback and DoctorTrainerCallback are made on first access (__getattr__)
__all__ = ["observe_outputs", "check_outputs", "observe_hf_forward", "check_hf_batch",
           "check_hf_inputs", "check_hf_masking", "check_hf_setup", "check_references",
           "hf_run_context", "report"]


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


def _hf_lengths(logits: torch.Tensor, attention_mask, lengths_fn) -> torch.Tensor:
    """Output frames per row, as transformers' CTC loss computes them (every frame when there
    is no attention mask)."""
    B, T = logits.shape[:2]
    if attention_mask is not None and lengths_fn is not None:
        return torch.as_tensor(lengths_fn(attention_mask.sum(-1))).long().cpu().clamp(max=T)
    return torch.full((B,), T, dtype=torch.long)


def _hf_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HF labels (B, S), -100 padded -> (targets (B, S') zero padded, target lengths)."""
    labels = labels.detach().cpu()
    valid = labels >= 0
    rows = [labels[i][valid[i]] for i in range(labels.shape[0])]
    width = max([len(r) for r in rows] + [1])
    targets = torch.zeros(labels.shape[0], width, dtype=torch.long)
    for i, r in enumerate(rows):
        targets[i, :len(r)] = r
    return targets, valid.sum(-1)


def observe_hf_forward(doctor: CTCDoctor, logits: torch.Tensor, attention_mask=None,
                       lengths_fn: Callable | None = None, loss=None,
                       step: int | None = None, labels: torch.Tensor | None = None
                       ) -> list[Finding]:
    """A HF CTC model's forward (logits (B, T, V), raw) -> new findings. `lengths_fn` maps
    input sample counts to output frames (`model._get_feat_extract_output_lengths`); `labels`
    (optional) let a non-finite loss be explained (infeasible utterances)."""
    doctor.note_precision(logits.dtype)  # fp16 logits: the model runs in fp16 (autocast)
    lp = logits.detach().float().log_softmax(dim=-1)
    lengths = _hf_lengths(lp, attention_mask, lengths_fn)
    if doctor.batch_first is False:
        lp = lp.transpose(0, 1)
    losses = loss.detach().reshape(-1) if isinstance(loss, torch.Tensor) else None
    targets = target_lengths = None
    if labels is not None and losses is not None and not bool(torch.isfinite(losses).all()):
        targets, target_lengths = _hf_targets(labels)
    return doctor.observe(lp, lengths, losses=losses, step=step, targets=targets,
                          target_lengths=target_lengths)


def check_hf_batch(doctor: CTCDoctor, logits: torch.Tensor, labels: torch.Tensor,
                   attention_mask=None, lengths_fn: Callable | None = None,
                   blank: int | None = None, samples_per_frame: int | None = None,
                   sampling_rate: int | None = None) -> list[Finding]:
    """A HF CTC model's forward on one batch (logits (B, T, V); `labels` (B, S) padded with
    -100, HF's convention; blank = `config.pad_token_id`) -> `check_batch`'s findings: labels
    padded with the blank instead of -100, ids beyond the vocabulary, empty or infeasible
    targets (with the encoder's frame rate when `samples_per_frame` is given)."""
    lp = logits.detach().float().log_softmax(dim=-1).transpose(0, 1)  # (T, B, V)
    lengths = _hf_lengths(logits, attention_mask, lengths_fn)
    targets, target_lengths = _hf_targets(labels)
    found = doctor.check_batch(lp, lengths, targets, target_lengths, blank=blank)
    if samples_per_frame:
        rate = (f": {sampling_rate / samples_per_frame:g} frames a second at {sampling_rate} Hz"
                if sampling_rate else "")
        found = [replace(f, message=f"{f.message} (the encoder makes one frame per "
                                    f"{samples_per_frame} samples{rate})",
                         evidence={**f.evidence, "samples_per_frame": samples_per_frame,
                                   "sampling_rate": sampling_rate})
                 if f.code == "INFEASIBLE_LENGTH" else f for f in found]
    return found


# ---- transformers models: inputs, setup, references --------------------------------------

DEFAULT_ENCODER_RATE = 16000  # wav2vec2 / HuBERT / WavLM / Whisper are all pretrained at 16 kHz


def hf_waveforms(input_values: torch.Tensor, attention_mask=None) -> list[np.ndarray]:
    """Each row's real samples: the attention mask's length, else without the trailing exact
    zeros that transformers' feature extractors pad with."""
    x = input_values.detach().float().cpu().numpy()
    if attention_mask is not None:
        n = attention_mask.detach().cpu().sum(-1).tolist()
        return [row[:int(k)] for row, k in zip(x, n)]
    out = []
    for row in x:
        nz = np.flatnonzero(row)
        out.append(row[:nz[-1] + 1] if nz.size else row[:0])
    return out


def hf_parts(processing_class) -> tuple[object | None, object | None]:
    """(tokenizer, feature extractor) of a processor, a tokenizer or a feature extractor."""
    if processing_class is None:
        return None, None
    tok = getattr(processing_class, "tokenizer", None)
    fe = getattr(processing_class, "feature_extractor", None)
    if tok is None and hasattr(processing_class, "convert_ids_to_tokens"):
        tok = processing_class
    if fe is None and hasattr(processing_class, "sampling_rate") and tok is None:
        fe = processing_class
    return tok, fe


def hf_expected_input(feature_extractor) -> str:
    """What a feature extractor makes of the waveform: "normalized" (do_normalize), "raw", or
    "any" when unknown (or when it makes log-mels, which the waveform checks do not judge)."""
    norm = getattr(feature_extractor, "do_normalize", None)
    if norm is None or "input_values" not in getattr(feature_extractor, "model_input_names",
                                                      ["input_values"]):
        return "any"
    return "normalized" if norm else "raw"


def _encoder_rate(feature_extractor) -> int:
    return int(getattr(feature_extractor, "sampling_rate", None) or DEFAULT_ENCODER_RATE)


def _samples_per_frame(model) -> int | None:
    strides = getattr(getattr(model, "config", None), "conv_stride", None)
    return math.prod(strides) if strides else None


def min_samples_for(lengths_fn: Callable, frames: int, limit: int = 1 << 24) -> int | None:
    """The fewest input samples whose output has `frames` frames (lengths_fn is monotonic)."""
    def out(n: int) -> int:
        return int(lengths_fn(torch.tensor(n)))
    hi = 1
    while out(hi) < frames:
        hi *= 2
        if hi > limit:
            return None
    lo = hi // 2
    while lo + 1 < hi:  # out(lo) < frames <= out(hi)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if out(mid) >= frames else (mid, hi)
    return hi


def check_hf_inputs(input_values: torch.Tensor, attention_mask=None, expected: str = "any",
                    sampling_rate: int | None = None, ids: Sequence[str] | None = None
                    ) -> list[Finding]:
    """One batch's `input_values` as a transformers speech encoder receives them: INPUT_SCALE
    (int16 range; not normalized the way `expected` says: "normalized" for feature extractors
    with do_normalize, "raw" without, "any" unknown) and SAMPLE_RATE_MISMATCH (band-limited:
    nothing above the Nyquist frequency of a lower rate, at the encoder's `sampling_rate`,
    16 kHz by default)."""
    rows = hf_waveforms(input_values, attention_mask)
    found = input_scale_findings(rows, expected, ids)
    if not any(f.evidence.get("kind") in ("int16", "unsigned") for f in found):
        found += encoder_rate_findings(None, sampling_rate or DEFAULT_ENCODER_RATE, rows)
    return found


def check_hf_masking(model, input_values: torch.Tensor, attention_mask=None,
                     ids: Sequence[str] | None = None) -> list[Finding]:
    """SPAN_MASK_TOO_LONG for one training batch: utterances with fewer encoder frames than
    `config.mask_time_length`, and an error when the whole batch is (span masking then raises
    inside the forward: transformers#15366). Nothing when time masking is off."""
    cfg = getattr(model, "config", None)
    lengths_fn = getattr(model, "_get_feat_extract_output_lengths", None)
    prob = float(getattr(cfg, "mask_time_prob", 0.0) or 0.0)
    span = int(getattr(cfg, "mask_time_length", 0) or 0)
    if lengths_fn is None or prob <= 0 or span <= 1 or not getattr(cfg, "apply_spec_augment", True):
        return []
    n = (attention_mask.detach().cpu().sum(-1) if attention_mask is not None else
         torch.full((input_values.shape[0],), input_values.shape[-1]))
    frames = torch.as_tensor(lengths_fn(n)).long().tolist()
    batch_frames = int(lengths_fn(torch.tensor(input_values.shape[-1])))
    if min(frames) >= span and batch_frames >= span:
        return []  # every batch but the rare one: no search for the shortest clip
    return span_mask_findings(frames, span, prob, ids, batch_frames,
                              min_samples_for(lengths_fn, span))


def _vocabulary(tokenizer) -> dict[int, str]:
    return {int(i): t for t, i in tokenizer.get_vocab().items()}


def check_hf_setup(model, tokenizer=None, feature_extractor=None,
                   data_sampling_rate: int | None = None) -> list[Finding]:
    """Before training: BLANK_MISMATCH (the blank transformers' CTC heads use,
    `config.pad_token_id`, against the tokenizer's pad token and vocabulary) and
    SAMPLE_RATE_MISMATCH (the data's rate, when given, against the feature extractor's)."""
    found = []
    blank = getattr(getattr(model, "config", None), "pad_token_id", None)
    if tokenizer is not None and blank is not None:
        found += blank_token_findings(blank, _vocabulary(tokenizer),
                                      getattr(tokenizer, "pad_token_id", None),
                                      getattr(tokenizer, "all_special_tokens", ()))
    if data_sampling_rate is not None:
        found += encoder_rate_findings(data_sampling_rate, _encoder_rate(feature_extractor))
    return found


def check_references(tokenizer, label_ids, references: Sequence[str]) -> list[Finding]:
    """GROUPED_REFERENCES: the references a metric computed (e.g. in `compute_metrics`, from
    `pred.label_ids`) against the label ids spelled out by the tokenizer. -100 and the pad id
    are skipped."""
    rows = [[int(i) for i in row if int(i) >= 0] for row in np.asarray(label_ids)]
    pad = getattr(tokenizer, "pad_token_id", None)
    return grouped_reference_findings(rows, references, _vocabulary(tokenizer),
                                      getattr(tokenizer, "word_delimiter_token", None),
                                      [] if pad is None else [pad])


def _trainable(module) -> bool | None:
    params = list(module.parameters()) if module is not None else []
    return any(p.requires_grad for p in params) if params else None


HF_CONTEXT = ("lr", "warmup_steps", "loop", "pretrained", "encoder_trainable",
              "feature_encoder_trainable", "encoder_lr")  # what hf_run_context knows


def hf_run_context(model, args=None, optimizer=None, max_steps: int | None = None
                   ) -> RunContext:
    """What the doctor should know of a transformers run: learning rate and warmup (from
    TrainingArguments), whether a pretrained encoder is fine-tuned (loaded with
    `from_pretrained`) and which of its parts train, at which rate (from the optimizer's
    groups when given)."""
    lr = float(getattr(args, "learning_rate", 0.0) or 0.0) or None
    warmup = 0
    if args is not None and max_steps:
        warmup = int(args.get_warmup_steps(max_steps))
    base = getattr(model, "base_model", None)
    base = None if base is model else base
    fe = getattr(base, "feature_extractor", None)
    encoder_lr = None
    if optimizer is not None and base is not None:
        mine = {id(p) for p in base.parameters()}
        rates = [g["lr"] for g in optimizer.param_groups
                 if any(id(p) in mine and p.requires_grad for p in g["params"])]
        encoder_lr = max(rates) if rates else None
    name = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    return RunContext(lr=lr, warmup_steps=warmup, steps_per_epoch=None, loop="hf",
                      pretrained=bool(name), encoder_trainable=_trainable(base),
                      feature_encoder_trainable=_trainable(fe), encoder_lr=encoder_lr)


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

        def on_train_start(self, trainer, pl_module):
            precision = str(getattr(trainer, "precision", ""))  # "16-mixed", "bf16-mixed", ...
            fast = "bf16" if precision.startswith("bf16") else \
                "fp16" if precision.startswith("16") else None
            if fast and self.doctor.tracker.ctx.precision is None:
                self.doctor.tracker.update_context(precision=fast)

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
        """Hooks the model's forward to check its inputs and observe its CTC logits while
        training. `processor`: the Wav2Vec2Processor (or tokenizer / feature extractor) the
        data was made with, when the Trainer is not given it as `processing_class`;
        `sampling_rate`: the data's native rate, checked against the feature extractor's;
        `expected_input`: "normalized" / "raw" / "any", when the feature extractor cannot
        tell (see `check_hf_inputs`)."""

        def __init__(self, doctor: CTCDoctor | None = None, every: int = 25, processor=None,
                     sampling_rate: int | None = None, expected_input: str | None = None):
            self._own_doctor = doctor is None  # then the blank id comes from the model
            self.doctor = doctor or CTCDoctor(batch_first=False, every=every)
            self.processor, self.sampling_rate = processor, sampling_rate
            self.expected_input = expected_input
            self.findings: list[Finding] = []
            self._handles: list = []
            self._step = 0
            self._checked = False
            self._inputs_checked = False
            self._said: set[tuple] = set()  # findings of the input checks already reported

        def on_train_begin(self, args, state, control, model=None, processing_class=None,
                           optimizer=None, **kw):
            lengths_fn = getattr(model, "_get_feat_extract_output_lengths", None)
            blank = getattr(getattr(model, "config", None), "pad_token_id", None)
            tok, fe = hf_parts(self.processor if self.processor is not None else processing_class)
            expected = self.expected_input or hf_expected_input(fe)
            rate = _encoder_rate(fe)
            if self._own_doctor:
                if blank is not None:  # HF CTC heads use pad as the blank
                    self.doctor.blank = blank
                ctx = hf_run_context(model, args, optimizer, state.max_steps)
                self.doctor.tracker.update_context(**{k: getattr(ctx, k) for k in HF_CONTEXT})
            self._publish(check_hf_setup(model, tok, fe, self.sampling_rate))

            def before(module, hook_args, hook_kwargs):
                x = hook_kwargs.get("input_values", hook_args[0] if hook_args else None)
                if not module.training or not isinstance(x, torch.Tensor):
                    return
                mask = hook_kwargs.get("attention_mask")
                new = check_hf_masking(module, x, mask)  # before span masking can raise
                if not self._inputs_checked:
                    self._inputs_checked = True
                    new += check_hf_inputs(x, mask, expected, rate)
                self._publish(new)

            def after(module, hook_args, hook_kwargs, output):
                logits = getattr(output, "logits", None)
                if not module.training or logits is None:
                    return
                mask = hook_kwargs.get("attention_mask")
                labels = hook_kwargs.get("labels")
                new = []
                if not self._checked and labels is not None:
                    self._checked = True
                    new += check_hf_batch(self.doctor, logits, labels, mask, lengths_fn,
                                          self.doctor.blank if blank is None else blank,
                                          _samples_per_frame(module), rate)
                new += observe_hf_forward(self.doctor, logits, mask, lengths_fn,
                                          getattr(output, "loss", None), self._step, labels)
                self.findings += new
                report(new)

            self._handles = [model.register_forward_pre_hook(before, with_kwargs=True),
                             model.register_forward_hook(after, with_kwargs=True)]

        def _publish(self, new: list[Finding]) -> None:
            """Report findings of the input checks once each (code, severity, kind)."""
            fresh = []
            for f in new:
                key = (f.code, f.severity, f.evidence.get("kind"))
                if key not in self._said:
                    self._said.add(key)
                    fresh.append(f)
            self.findings += fresh
            report(fresh)

        def on_step_end(self, args, state, control, **kw):
            self._step = state.global_step

        def on_train_end(self, args, state, control, **kw):
            final = self.doctor.new_findings(final=True)
            self.findings += final
            report(final)
            for h in self._handles:
                h.remove()
            self._handles = []

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
