"""The doctor's judgement of a training run, shared by `TrainingMonitor` (asrlab's own loop),
`CTCDoctor` (anyone's loop), the Lightning / HF callbacks and `asrlab diagnose` (replaying a
finished run): one `HealthTracker` fed with `Observation`s and per-step losses.

It tells apart:

- UNDERTRAINED: the normal blank phase. Every CTC model first learns that blank is the most
  frequent label and emits only blanks; a healthy one then grows non-blank peaks within a few
  hundred updates (its mean max non-blank probability climbs off its recent low).
- BLANK_COLLAPSE: the blank phase that does not end. After the grace period, non-blank
  probabilities stay flat (near their recent low), or the model fell back to all-blank
  after having produced text.
- DIVERGENCE: the step loss rises well above its best, swings wildly, or the outputs turn NaN.
- NONFINITE_LOSS: utterances whose CTC loss is inf/NaN, named, with the reason when known.

Thresholds live in `Thresholds`; docs/doctor.md explains how they were calibrated.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, replace

import torch

from asrlab.ctc import frames_needed_rows
from asrlab.doctor.findings import Finding
from asrlab.doctor.stats import EmissionStats


@dataclass(frozen=True)
class Thresholds:
    """Calibrated on real runs on the default synthetic corpus and FSDD (docs/doctor.md)."""
    blank_dominant: float = 0.98  # blank wins >= this share of frames: in the blank phase
    empty_dominant: float = 0.9  # ... or >= this share of hypotheses are empty
    escaped_blank_ratio: float = 0.9  # once below this (with text out), the phase is over
    grace_updates: int = 300  # healthy runs' non-blank probability rises well before this
    flat_updates: int = 150  # the trend is judged over this many updates of the blank phase
    rise_factor: float = 1.5  # signal >= rise_factor x its low in that window: learning
    confident_nonblank: float = 0.2  # mean max non-blank prob this high is never "flat"
    loss_window: int = 20  # steps per median window for divergence
    divergence_factor: float = 1.5  # window median above best window median x this: rising
    above_start_factor: float = 2.0  # window median above the untrained model's loss x this
    oscillation_log_step: float = math.log(2.0)  # median |log l_t - log l_t-1| above: swinging
    # ... unless the window median is still falling (below this x the window before): batches
    # of very different difficulty swing a learning model's loss too (fine-tuning a good model
    # with noise in half the utterances: 0.4 on clean batches, 2.0 on noisy ones)
    oscillation_progress: float = 0.9
    # ... and swings whose upper fifth stays below this x the untrained model's loss are a
    # trained model's batch-to-batch spread (fine-tuned FSDD models: 0.1-1.9 per token, 80% of
    # updates under 0.9, after starting at 3.7)
    oscillation_reach: float = 0.5
    nonfinite_error_fraction: float = 0.2  # more than this share of utterances: error
    # The blank-phase values above were calibrated on character units at about this many
    # output frames per label (the default corpus). Sparser labels (BPE, word units, models
    # without time subsampling) leave most frames blank even in a model that reads: with
    # u = frames_per_label / this (>= 1), the non-blank shares (1 - blank_dominant,
    # 1 - escaped_blank_ratio) and confident_nonblank are divided by u, and the grace
    # period is multiplied by u ** grace_exponent. docs/doctor.md has the calibration runs.
    reference_frames_per_label: float = 1.65
    grace_exponent: float = 0.25

    def for_units(self, frames_per_label: float | None) -> "Thresholds":
        """These thresholds judged relative to the units: see reference_frames_per_label."""
        u = self.units(frames_per_label)
        if u == 1.0:
            return self
        return replace(self, blank_dominant=1 - (1 - self.blank_dominant) / u,
                       escaped_blank_ratio=1 - (1 - self.escaped_blank_ratio) / u,
                       confident_nonblank=self.confident_nonblank / u,
                       grace_updates=round(self.grace_updates * u ** self.grace_exponent),
                       reference_frames_per_label=frames_per_label)

    def units(self, frames_per_label: float | None) -> float:
        if not frames_per_label or frames_per_label <= self.reference_frames_per_label:
            return 1.0
        return frames_per_label / self.reference_frames_per_label


FP16_CAUSE = ("overflow past fp16's largest value (65504) in an activation or the loss is the "
              "likely cause (wenet-e2e/wenet#2616: NaN after ~10k fp16 updates)")

# blank probability std over frames below this: the output does not depend on the input. Only
# words a BLANK_COLLAPSE finding (already judged on the trend). Measured on the tiny wav2vec2
# runs of tests/doctor/test_hf_cases.py: collapsed 0.003-0.007 from update 100 on (0.013-0.027
# before), healthy 0.06-0.45 after their first 25 updates.
FLAT_OUTPUT_STD = 0.02


@dataclass(frozen=True)
class Observation:
    """Emission statistics at one point of training (`step` = updates done so far)."""
    step: int
    source: str  # "train" (training batches) | "val" (the validation set at an epoch end)
    blank_ratio: float
    mean_blank_prob: float
    mean_max_nonblank_prob: float
    empty_rate: float
    distinct_tokens: int
    frames: int
    epoch: int | None = None
    loss: float | None = None
    lr: float | None = None
    blank_prob_std: float | None = None  # spread over frames (None: not recorded)
    max_nonblank_prob_std: float | None = None

    @classmethod
    def from_stats(cls, step: int, source: str, stats: EmissionStats, **extra) -> "Observation":
        s = stats.summary()
        return cls(step, source, s["blank_ratio"], s["mean_blank_prob"],
                   s["mean_max_nonblank_prob"], s["empty_rate"], s["distinct_tokens"],
                   s["frames"], blank_prob_std=s["blank_prob_std"],
                   max_nonblank_prob_std=s["max_nonblank_prob_std"], **extra)

    @classmethod
    def from_dict(cls, d: dict) -> "Observation":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    def blank_phase(self, th: Thresholds) -> bool:
        """Blank wins (nearly) every frame, or almost every hypothesis is empty, or the few
        non-blank frames all carry one or two symbols (no real text yet)."""
        return (self.all_blank(th)
                or (self.blank_ratio >= th.escaped_blank_ratio and self.distinct_tokens <= 2))

    def all_blank(self, th: Thresholds) -> bool:
        """Blank wins (nearly) every frame, or almost every hypothesis is empty."""
        return self.blank_ratio >= th.blank_dominant or self.empty_rate >= th.empty_dominant


@dataclass(frozen=True)
class RunContext:
    """What the doctor knows about the run's setup, to name likely causes and remedies."""
    init: str | None = None
    init_gain: float = 1.0
    lr: float | None = None
    warmup_steps: int = 0
    steps_per_epoch: int | None = None
    run_dir: str | None = None
    ctc_smoothing: float = 0.0
    # median encoder output frames per label (+ repeats) of the training data, as `asrlab
    # check` measures it (stats.lengths.train.median_frames_per_label); None: unknown (the
    # thresholds then apply as calibrated on characters)
    frames_per_label: float | None = None
    # the first updates, whose batches come shortest first (train.sort_first_epoch): the
    # per-token loss climbs there as the utterances grow longer and harder, not from divergence
    sorted_updates: int = 0
    # whose loop it is, for how a remedy is phrased: "asrlab" (its flags), "hf" (transformers
    # TrainingArguments and model methods), "torch" (anyone's loop: plain words)
    loop: str = "asrlab"
    # the precision the model computes in: "fp16" | "bf16" | None (float32 or unknown); under
    # fp16, overflow is the likely cause of NaN (wenet-e2e/wenet#2616)
    precision: str | None = None
    # a pretrained encoder is fine-tuned; whether its weights and its convolutional feature
    # encoder's are updated (None: unknown), and at which peak rate (None: `lr`)
    pretrained: bool = False
    encoder_trainable: bool | None = None
    feature_encoder_trainable: bool | None = None
    encoder_lr: float | None = None

    @classmethod
    def from_config(cls, cfg, steps_per_epoch: int | None = None, run_dir=None,
                    frames_per_label: float | None = None) -> "RunContext":
        spe = steps_per_epoch or 0
        p = cfg.model.pretrained
        pretrained = cfg.model.name == "pretrained"
        precision = cfg.train.precision if cfg.train.precision in ("fp16", "bf16") else None
        return cls(cfg.model.init, cfg.model.init_gain, cfg.train.lr,
                   int(cfg.train.warmup_epochs * spe), steps_per_epoch,
                   str(run_dir) if run_dir else None, cfg.train.ctc_smoothing, frames_per_label,
                   sorted_updates=spe if cfg.train.sort_first_epoch else 0,
                   precision=precision, pretrained=pretrained,
                   encoder_trainable=bool(p.layers_trained) if pretrained else None,
                   feature_encoder_trainable=p.layers_trained == -1 if pretrained else None,
                   encoder_lr=cfg.train.lr * p.encoder_lr_scale
                   if pretrained and p.layers_trained else None)

    @property
    def weak_init(self) -> bool:
        return self.init == "xavier" and self.init_gain < 0.5

    def resume_cmd(self, extra_epochs: str = "N") -> str:
        run = self.run_dir or "RUN"
        return f"asrlab train --resume {run} --epochs {extra_epochs}"

    def set_lr(self, value: float) -> str:
        """How to set the peak learning rate to `value` in this loop."""
        return {"asrlab": f"--lr {value:.2g}",
                "hf": f"TrainingArguments(learning_rate={value:.2g})"}.get(
                    self.loop, f"a peak learning rate of {value:.2g}")

    def set_warmup(self) -> str:
        return {"asrlab": "--warmup-epochs 1",
                "hf": "TrainingArguments(warmup_steps=0.1): a tenth of the updates (warmup_ratio"
                      "=0.1 before transformers 5)"}.get(
            self.loop, "a linear warmup over the first ~10% of updates")

    @property
    def unfrozen_encoder(self) -> bool:
        """A pretrained encoder whose weights are (or may be) updated."""
        return self.pretrained and self.encoder_trainable is not False


@dataclass
class NonfiniteRecord:
    id: str
    cause: str
    first_step: int
    count: int = 1


def nonfinite_cause(log_probs: torch.Tensor, out_len: int, targets: torch.Tensor | None) -> str:
    """Why one utterance's loss is inf/NaN. log_probs (T, V) of that utterance; targets None:
    not known (then only NaN/inf outputs can be told)."""
    if not bool(torch.isfinite(log_probs[:out_len]).all()):
        return "model output contains NaN/inf"
    if targets is None:
        return "unknown (finite outputs; targets not given)"
    need = int(frames_needed_rows([targets.reshape(-1)])[0])
    if out_len < need:
        return f"infeasible: {out_len} output frames < {need} needed (labels + repeats)"
    return "numerical (finite outputs, feasible length)"


@dataclass
class _Series:
    """Blank-phase bookkeeping for one observation source."""
    entered: int | None = None  # step of the first blank-phase observation
    escaped_at: int | None = None  # step where it first produced text after the phase
    last: list[Observation] = field(default_factory=list)  # the latest two, for smoothing
    phase: list[tuple[int, float]] = field(default_factory=list)  # (step, signal) in the phase

    def window(self, now: int, span: int) -> list[tuple[int, float]] | None:
        """The phase's signals over the last `span` updates, starting from the last one at or
        before `now - span`; None when the phase is younger than `span` on this series."""
        start = [i for i, (st, _) in enumerate(self.phase) if st <= now - span]
        return self.phase[start[-1]:] if start else None


@dataclass(frozen=True)
class _Trend:
    signal: float  # smoothed mean max non-blank probability now
    low: float  # its lowest value in the window
    low_step: int
    rising: bool | None  # None: the phase is younger than the window on this series


class HealthTracker:
    """Feed observations and losses; `findings()` says what is wrong now, `new_findings()`
    only what has not been reported yet (first occurrence, or a change of severity/state)."""

    def __init__(self, thresholds: Thresholds | None = None, context: RunContext | None = None):
        self.ctx = context or RunContext()
        self.base_th = thresholds or Thresholds()
        self.th = self.base_th.for_units(self.ctx.frames_per_label)  # relative to the units
        self.observations: list[Observation] = []
        self.step_losses: list[tuple[int, float]] = []  # (step, mean finite loss); add_step_loss
        self._medians: list[float] = []  # median of each `loss_window` steps ending here
        self._best = 0  # index of the lowest of them
        self.nan_output_steps: list[int] = []
        self.nonfinite: dict[str, NonfiniteRecord] = {}
        self.utterances_seen: set[str] = set()
        self.series: dict[str, _Series] = {}
        self.reported: set[tuple] = set()
        self.last_step = 0
        self._flat_reported = False  # a flat blank phase was judged (hysteresis in _trend)

    def set_frames_per_label(self, frames_per_label: float | None) -> None:
        """The data's output frames per label, once known (CTCDoctor measures it on the first
        batch it checks): the blank-phase thresholds become relative to the units."""
        self.update_context(frames_per_label=frames_per_label)

    def update_context(self, **changes) -> None:
        """What is learned about the run after the tracker was made (precision, the learning
        rate and frozen parts a framework reports at its start, frames per label)."""
        self.ctx = replace(self.ctx, **changes)
        self.th = self.base_th.for_units(self.ctx.frames_per_label)

    # ---- input --------------------------------------------------------------------------
    def observe(self, obs: Observation) -> None:
        self.observations.append(obs)
        self.last_step = max(self.last_step, obs.step)
        s = self.series.setdefault(obs.source, _Series())
        s.last = (s.last + [obs])[-2:]
        if obs.blank_phase(self.th):
            if s.entered is None:
                s.entered = obs.step
            s.phase.append((obs.step, self._signal(s)))
        else:
            s.phase = []
        if (obs.blank_ratio < self.th.escaped_blank_ratio and obs.distinct_tokens > 2
                and s.escaped_at is None and s.entered is not None):
            s.escaped_at = obs.step  # real text after the blank phase (not the random init)

    def observe_losses(self, step: int, losses: torch.Tensor, ids: list[str] | None = None,
                       causes: dict[int, str] | None = None) -> None:
        """Per-utterance losses of one step (non-finite allowed); `causes` maps batch index ->
        reason for the non-finite ones (see `nonfinite_cause`)."""
        losses = losses.detach().float().reshape(-1)
        finite = torch.isfinite(losses)
        self.last_step = max(self.last_step, step)
        if ids is not None:
            self.utterances_seen.update(ids)
        if bool(finite.any()):
            self.add_step_loss(step, float(losses[finite].mean()))
        bad = (~finite).nonzero().flatten().tolist()
        causes = causes or {}
        if bad and all("NaN/inf" in causes.get(i, "") for i in bad) and len(bad) == len(losses):
            self.nan_output_steps.append(step)
        for i in bad:
            uid = ids[i] if ids is not None else f"step{step}[{i}]"
            rec = self.nonfinite.get(uid)
            if rec is None:
                self.nonfinite[uid] = NonfiniteRecord(uid, causes.get(i, "unknown"), step)
            else:
                rec.count += 1

    def replay(self, observations: list[Observation], step_losses: list[tuple[int, float]]
               ) -> list[Finding]:
        """Feed a recorded run (e.g. RUN/doctor_trace.jsonl) in step order, judging after each
        observation as the live monitor did; returns what it would have reported."""
        reported, i = [], 0
        for o in observations:
            while i < len(step_losses) and step_losses[i][0] <= o.step:
                self.add_step_loss(*step_losses[i])
                i += 1
            self.observe(o)
            reported += self.new_findings()
        for step, value in step_losses[i:]:
            self.add_step_loss(step, value)
        return reported + self.new_findings()

    def add_step_loss(self, step: int, value: float) -> None:
        """One update's mean loss; keeps the windowed medians incrementally (O(window) per
        step, so the doctor costs the same at update 100,000 as at update 100)."""
        self.step_losses.append((step, value))
        w = self.th.loss_window
        if len(self.step_losses) >= w:
            self._medians.append(statistics.median(v for _, v in self.step_losses[-w:]))
            if self._medians[-1] < self._medians[self._best]:
                self._best = len(self._medians) - 1

    # ---- output -------------------------------------------------------------------------
    def findings(self, final: bool = False) -> list[Finding]:
        """Everything wrong at this point. `final`: training has ended (a run still in the
        blank phase is then UNDERTRAINED at warning level: it needs more updates)."""
        out = [f for f in (self._blank_finding(final), self._divergence_finding()) if f]
        nf = self._nonfinite_finding()
        return out + ([nf] if nf else [])

    def new_findings(self, final: bool = False) -> list[Finding]:
        fresh = []
        for f in self.findings(final):
            key = self.key(f)
            if key not in self.reported:
                self.reported.add(key)
                fresh.append(f)
        return fresh

    def mark_reported(self, findings) -> None:
        """Findings already emitted elsewhere (e.g. an earlier session's findings.jsonl)."""
        self.reported.update(self.key(f) for f in findings)

    @staticmethod
    def key(f: Finding) -> tuple:
        """Identity for "already reported": code, severity, and the kind of problem (for
        NONFINITE_LOSS the number of utterances, so that new ones are reported)."""
        if f.code == "NONFINITE_LOSS":
            return f.code, f.severity, f.evidence.get("utterances")
        return f.code, f.severity, f.evidence.get("kind")

    # ---- blank phase --------------------------------------------------------------------
    def _signal(self, s: _Series) -> float:
        """Mean max non-blank probability, averaged over the last two observations of the
        series (training batches differ from each other; this halves the noise)."""
        return sum(o.mean_max_nonblank_prob for o in s.last) / len(s.last)

    def _trend(self, s: _Series, now: int) -> "_Trend":
        """Has this series' non-blank probability climbed off its low of the last
        `flat_updates` updates? (Learning the label priors in the first updates raises it
        from uniform too, and that is not learning to read: hence a sliding window rather than
        the lowest value since the start.)"""
        signal = self._signal(s)
        window = s.window(now, self.th.flat_updates)
        if window is None:
            return _Trend(signal, signal, now, None)
        low_step, low = min(window[:-1] or window, key=lambda x: x[1])
        # hysteresis: once judged flat, noise must not flip the verdict back and forth
        factor = self.th.rise_factor ** (2 if self._flat_reported else 1)
        rising = signal >= factor * low or signal >= self.th.confident_nonblank
        return _Trend(signal, low, low_step, rising)

    def _blank_finding(self, final: bool) -> Finding | None:
        if not self.observations:
            return None
        obs = self.observations[-1]
        if not obs.blank_phase(self.th):
            return None
        source, s = obs.source, self.series[obs.source]
        # every series still in the blank phase has a say: one rising is enough to wait
        trends = {k: self._trend(v, obs.step) for k, v in self.series.items()
                  if v.last and v.last[-1].blank_phase(self.th)}
        t = trends[source]
        rising = [k for k, tr in trends.items() if tr.rising]
        judged = [k for k, tr in trends.items() if tr.rising is not None]
        # another series already out of the phase (e.g. training batches produce text while
        # the last validation still was blank): the run is leaving it, not stuck
        leaving = [k for k, v in self.series.items() if k not in trends and v.entered is not None]
        if rising:
            t = trends[rising[0]]
        ev = self._blank_evidence(obs, s, t.signal, source, t.low, t.low_step)
        if s.escaped_at is not None and obs.all_blank(self.th):
            # back to (nearly) all-blank; one or two tokens in a noisy training batch of sparse
            # units is not a regression (FSDD word units, docs/doctor.md)
            return self._collapse(ev, "regressed", f"the model produced text at update "
                                  f"{s.escaped_at} but is back to all-blank at update {obs.step}"
                                  + self._symptoms(ev))
        if obs.step >= self.th.grace_updates and judged and not rising and not leaving:
            self._flat_reported = True
            return self._collapse(ev, "flat", (
                f"blank wins {obs.blank_ratio:.1%} of frames after {obs.step} updates and the "
                f"non-blank probabilities are flat (mean max non-blank {t.signal:.3f}, "
                f"{t.signal / max(t.low, 1e-9):.2f}x its low of {t.low:.3f} at update "
                f"{t.low_step}, over the last {self.th.flat_updates} updates); healthy runs "
                f"climb off it within {self.th.grace_updates} updates") + self._symptoms(ev))
        why = (f"non-blank probability rising ({t.low:.3f} at update {t.low_step} -> "
               f"{t.signal:.3f})" if rising else
               f"the {leaving[0]} output already has text" if leaving else
               f"only {obs.step} updates so far (a healthy run leaves this phase within "
               f"~{self.th.grace_updates})" if obs.step < self.th.grace_updates else
               f"the blank phase started at update {s.entered}; too recent to judge the trend")
        if final:
            fix = (f"train longer: {self.ctx.resume_cmd()} (N larger than the epochs done); "
                   f"meanwhile `--blank-penalty 2` at decode time shows what the model has "
                   f"learned" if self.ctx.loop == "asrlab" else
                   "train longer; meanwhile subtracting ~2 from the blank's log-probability "
                   "when decoding shows what the model has learned")
            return Finding("UNDERTRAINED", "warning",
                           f"training ended in the blank phase after {obs.step} updates: {why}",
                           {**ev, "kind": "ended-blank"}, fix)
        return Finding("UNDERTRAINED", "info",
                       f"in the normal CTC blank phase (blank wins {obs.blank_ratio:.1%} of "
                       f"frames): {why}", {**ev, "kind": "blank-phase"},
                       "keep training; the doctor flags BLANK_COLLAPSE if it does not leave it")

    def _blank_evidence(self, obs: Observation, s: _Series, signal: float, source: str,
                        low: float, low_step: int) -> dict:
        return {"updates": obs.step, "source": source, "blank_ratio": round(obs.blank_ratio, 4),
                "mean_blank_prob": round(obs.mean_blank_prob, 4),
                "mean_max_nonblank_prob": round(signal, 4),
                "window_low_max_nonblank_prob": round(low, 4), "window_low_update": low_step,
                "blank_phase_since_update": s.entered, "empty_rate": round(obs.empty_rate, 4),
                "distinct_tokens": obs.distinct_tokens,
                "frames_per_label": self.ctx.frames_per_label,
                "grace_updates": self.th.grace_updates,
                "blank_dominant": round(self.th.blank_dominant, 5),
                "init": self.ctx.init, "init_gain": self.ctx.init_gain,
                "blank_prob_std": None if obs.blank_prob_std is None
                else round(obs.blank_prob_std, 4), **self._loss_trend()}

    def _loss_trend(self) -> dict:
        """The untrained model's loss (lowest of the first 3 updates) and the latest window's
        median: a collapsed run's loss usually falls (to the label prior) while it says nothing."""
        if len(self.step_losses) < 2:
            return {}
        w = self.th.loss_window
        return {"loss_first": round(min(v for _, v in self.step_losses[:3]), 4),
                "loss_now": round(statistics.median(v for _, v in self.step_losses[-w:]), 4)}

    def _symptoms(self, ev: dict) -> str:
        """What a user sees, from the evidence: the loss falling while the output is blank,
        an output that does not change from frame to frame (it ignores the input)."""
        out = ""
        first, now = ev.get("loss_first"), ev.get("loss_now")
        if first is not None and now is not None and now < 0.9 * first:
            out += (f"; meanwhile the loss fell from {first:.3g} to {now:.3g} (blank everywhere "
                    f"is what a model learns first: the label prior)")
        spread = ev.get("blank_prob_std")
        if spread is not None and spread < FLAT_OUTPUT_STD:
            out += (f"; the blank probability barely changes from frame to frame (std "
                    f"{spread:.3g}): the output ignores the input")
        return out

    def _collapse(self, ev: dict, kind: str, message: str) -> Finding:
        causes, remedies = self.collapse_causes(kind)
        return Finding("BLANK_COLLAPSE", "error", f"{message}. Likely cause: {causes[0]}",
                       {**ev, "kind": kind, "likely_causes": causes}, "; ".join(remedies))

    def collapse_causes(self, kind: str) -> tuple[list[str], list[str]]:
        """Likely causes (most likely first) and remedies, from what the context tells."""
        c, causes, remedies = self.ctx, [], []
        asrlab = c.loop == "asrlab"
        if kind == "regressed":
            causes.append(f"learning rate too high (lr {c.lr:g}) knocked the model back"
                          if c.lr else "learning rate too high knocked the model back")
            if asrlab:
                remedies.append(f"retrain with a lower peak rate: --lr {c.lr / 3:.2g}" if c.lr
                                else "retrain with a third of the learning rate (--lr)")
            elif c.lr and not c.unfrozen_encoder:
                remedies.append(f"retrain with a lower peak rate: {c.set_lr(c.lr / 3)}")
        if c.unfrozen_encoder:
            lr = c.encoder_lr or c.lr
            causes.insert(0, (f"learning rate {lr:g} on an unfrozen pretrained encoder" if lr
                              else "the learning rate of an unfrozen pretrained encoder")
                          + ": updates that large wreck its pretrained representations before "
                          "the new CTC head has learned to read them, and the output falls "
                          "back to blank everywhere")
            if c.feature_encoder_trainable:
                causes.append("the convolutional feature encoder is trained too (fine-tuning "
                              "recipes keep it frozen)")
            if not c.warmup_steps:
                causes.append("no warmup: the first updates hit the encoder at the full rate")
            remedies.append(f"lower the encoder's rate to ~{lr / 10:.2g} (a tenth; or train "
                            f"only the head for the first updates, then unfreeze)" if lr else
                            "lower the encoder's learning rate (a tenth)")
            if c.feature_encoder_trainable:
                remedies.append("freeze the feature encoder: model.freeze_feature_encoder()"
                                if c.loop == "hf" else "freeze the convolutional feature encoder")
            if not c.warmup_steps:
                remedies.append(f"warm up: {c.set_warmup()}")
        if c.weak_init:
            causes.append(f"initialization: xavier_uniform with gain {c.init_gain:g} "
                          f"(model.init_gain) makes the outputs start near-uniform, so blank "
                          f"wins and the gradients to other symbols stay tiny (the "
                          f"`seed-report` preset's failure)")
            remedies.append("retrain with PyTorch's default init: drop `--preset seed-report` "
                            "(use `--preset seed-crnn`) or pass `--init-gain 1.0`")
        if c.steps_per_epoch and c.warmup_steps > self.th.grace_updates:
            causes.append(f"long warmup: {c.warmup_steps} updates before the full lr")
            remedies.append("shorten the warmup: " + ("--warmup-epochs 1" if asrlab
                                                      else c.set_warmup()))
        if kind != "regressed" and not c.weak_init:
            causes.append("the model is stuck emitting blank (label/feature problems or a "
                          "learning rate too low can do this; check the data findings)")
            if c.lr and not c.unfrozen_encoder:
                remedies.append(f"retrain with a different learning rate (--lr, now {c.lr:g})"
                                if asrlab else f"retrain with a different learning rate "
                                f"(now {c.lr:g})")
        if asrlab:
            if c.ctc_smoothing == 0:
                remedies.append("--ctc-smoothing 0.1 penalizes blank dominance during training")
            remedies.append("to salvage this checkpoint, decode with --blank-penalty 2")
        else:
            remedies.append("to see what the model has learned, subtract ~2 from the blank's "
                            "log-probability when decoding")
        return causes, remedies

    # ---- divergence ---------------------------------------------------------------------
    def _divergence_finding(self) -> Finding | None:
        c = self.ctx
        if c.loop == "asrlab":
            lr_fix = (f"lower the learning rate: --lr {c.lr / 3:.2g} (now {c.lr:g}), "
                      if c.lr else "lower the learning rate (--lr), ")
            remedy = lr_fix + "or warm up longer (--warmup-epochs 2); a larger --batch-size " \
                              "tolerates a higher rate"
        else:
            remedy = (f"lower the learning rate: {c.set_lr(c.lr / 3)} (now {c.lr:g})" if c.lr
                      else "lower the learning rate (a third)") + \
                f", or warm up longer ({c.set_warmup()}); a larger batch tolerates a higher rate"
        if self.nan_output_steps:
            return self._nan_finding(remedy)
        if len(self._medians) <= self.th.loss_window:  # at least 2 windows of losses
            return None
        return self._rising_finding(remedy) or self._oscillation_finding(remedy)

    def _nan_finding(self, remedy: str) -> Finding:
        step = self.nan_output_steps[0]
        before = [r for r in self.nonfinite.values()
                  if r.cause.startswith("infeasible") and r.first_step < step]
        if not before:
            if self.ctx.precision == "fp16":
                return Finding("DIVERGENCE", "error", f"the model's outputs became NaN at update "
                               f"{step} while it computes in fp16: {FP16_CAUSE}",
                               {"kind": "nan", "update": step, "lr": self.ctx.lr,
                                "precision": "fp16", "likely_cause": "fp16 overflow"},
                               f"{self.fp16_remedy()}; if it persists in bf16 or float32: {remedy}")
            return Finding("DIVERGENCE", "error", f"the model's outputs became NaN at update "
                           f"{step}: the weights blew up",
                           {"kind": "nan", "update": step, "lr": self.ctx.lr}, remedy)
        r = min(before, key=lambda r: r.first_step)  # the classic trap: inf loss masked out
        return Finding(
            "DIVERGENCE", "error",
            f"the model's outputs became NaN at update {step}, after utterance {r.id} had an "
            f"infeasible target (inf loss) at update {r.first_step}: the backward of an inf "
            f"CTC loss is NaN even when the loss is masked out afterwards, and it reached the "
            f"weights", {"kind": "nan", "update": step, "infeasible_update": r.first_step,
                         "utterance": r.id},
            "compute ctc_loss with zero_infinity=True (asrlab's trainer does) and report "
            "infeasible utterances from their lengths; or drop them")

    def _loss_levels(self) -> tuple[float, float, float, float]:
        """(untrained, best, now, one window ago) step-loss levels. Untrained: the lowest of
        the first 3 updates (a huge lr can blow the loss up after one update, so a median
        would already include that); the others are medians over `loss_window` updates."""
        w, m = self.th.loss_window, self._medians
        first = min(v for _, v in self.step_losses[:3])
        return first, m[self._best], m[-1], m[-1 - w] if len(m) > w else m[0]

    def _rising_finding(self, remedy: str) -> Finding | None:
        """Well above its best AND having given back half of what it learned (scale-free: a
        model at loss 0.03 wobbling to 0.07 has not diverged; one back at 80% of its starting
        loss has), or worse than the untrained model."""
        first, best, now, before = self._loss_levels()
        learned = max(first - best, 0.0)
        rising = now > max(self.th.divergence_factor * best, best + 0.5 * learned) and now > before
        if self.step_losses[-1][0] < self.ctx.sorted_updates:
            rising = False  # short-first batches: only a loss above the untrained model's counts
        if not (rising or now > self.th.above_start_factor * first):
            return None
        best_update = self.step_losses[self._best + self.th.loss_window - 1][0]
        how = (f"{now / best:.1f}x its best {best:.3f} (around update {best_update})" if rising
               else f"above the untrained model's {first:.3f}")
        return Finding("DIVERGENCE", "error", f"training loss is rising: median over the last "
                       f"{self.th.loss_window} updates {now:.3f}, {how}",
                       {"kind": "rising", "best_loss": round(best, 4), "best_update": best_update,
                        "loss_now": round(now, 4), "first_loss": round(first, 4),
                        "update": self.step_losses[-1][0], "lr": self.ctx.lr}, remedy)

    def _oscillation_finding(self, remedy: str) -> Finding | None:
        """Consecutive updates' losses differ by a large factor most of the time, and the
        swings are large next to what training has achieved, and the loss has stopped
        falling (a model still learning fast swings with the difficulty of its batches)."""
        first, best, now, before = self._loss_levels()
        recent = [v for _, v in self.step_losses[-self.th.loss_window:]]
        if now < self.th.oscillation_progress * before:
            return None
        # the 80th percentile: one outlier batch is no swing
        if statistics.quantiles(recent, n=5)[-1] < self.th.oscillation_reach * first:
            return None
        jumps = [abs(math.log(max(b, 1e-8)) - math.log(max(a, 1e-8)))
                 for a, b in zip(recent, recent[1:])]
        swing = statistics.median(jumps)
        if swing <= self.th.oscillation_log_step or \
                max(recent) - min(recent) <= 0.5 * max(first - best, best):
            return None
        return Finding("DIVERGENCE", "error",
                       f"training loss oscillates: consecutive updates differ by a median factor "
                       f"of {math.exp(swing):.1f} over the last {self.th.loss_window} updates "
                       f"(range {min(recent):.3f}-{max(recent):.3f})",
                       {"kind": "oscillating", "median_step_ratio": round(math.exp(swing), 3),
                        "loss_min": round(min(recent), 4), "loss_max": round(max(recent), 4),
                        "update": self.step_losses[-1][0], "lr": self.ctx.lr}, remedy)

    # ---- non-finite losses ---------------------------------------------------------------
    def _nonfinite_finding(self) -> Finding | None:
        if not self.nonfinite:
            return None
        recs = sorted(self.nonfinite.values(), key=lambda r: r.first_step)
        seen = max(len(self.utterances_seen), len(recs))
        fraction = len(recs) / seen
        infeasible = [r for r in recs if r.cause.startswith("infeasible")]
        nan_out = [r for r in recs if "NaN/inf" in r.cause]
        severity = "error" if fraction > self.th.nonfinite_error_fraction or nan_out else "warning"
        asrlab = self.ctx.loop == "asrlab"
        # infeasible targets first: the NaN outputs that follow are their doing (see _nan_finding)
        root = bool(infeasible) and (len(infeasible) >= len(recs) / 2 or bool(nan_out) and
                                     infeasible[0].first_step < nan_out[0].first_step)
        fp16 = self.ctx.precision == "fp16" and not root
        ev = {"utterances": len(recs), "fraction": round(fraction, 4)}
        if root:
            remedy = ("fix or drop these utterances (transcript too long for the audio; "
                      "`asrlab check` lists them as INFEASIBLE_LENGTH), or use a model with less "
                      "time subsampling (--model seed-crnn)") if asrlab else (
                      "drop these utterances (transcript too long for the audio: CTC needs an "
                      "output frame per label, plus one between repeated labels), and compute "
                      "the loss with zero_infinity=True (transformers: config.ctc_zero_infinity"
                      "=True) so that one of them cannot poison an update")
        elif fp16:
            remedy = self.fp16_remedy()
            ev.update(precision="fp16", likely_cause="fp16 overflow")
        elif nan_out:
            remedy = ("the weights blew up: see DIVERGENCE; lower --lr" if asrlab else
                      "the weights blew up: see DIVERGENCE; lower the learning rate")
        else:
            remedy = ("inspect these utterances' audio and transcripts (`asrlab check`)" if asrlab
                      else "inspect these utterances' audio and transcripts")
        shown = recs[:20]
        unit = "batch(es)" if all(r.id.startswith("batch@") for r in recs) else "utterance(s)"
        return Finding("NONFINITE_LOSS", severity,
                       f"{len(recs)} {unit} gave an inf/NaN CTC loss (first at update "
                       f"{recs[0].first_step}): {', '.join(r.id for r in shown[:5])}"
                       + (" ..." if len(recs) > 5 else "")
                       + ("; they are left out of the update" if asrlab else "")
                       + (f"; the model computes in fp16: {FP16_CAUSE}" if fp16 else ""),
                       {**ev, "ids": [r.id for r in shown],
                        "causes": {r.id: r.cause for r in shown},
                        "first_update": recs[0].first_step}, remedy)

    def fp16_remedy(self) -> str:
        bf16 = {"asrlab": "--set train.precision=bf16", "hf": "TrainingArguments(bf16=True, "
                "fp16=False)"}.get(self.ctx.loop, "torch.autocast(..., dtype=torch.bfloat16)")
        return (f"train in bf16 where the hardware has it ({bf16}: fp32's range), else in "
                f"float32 (or float32 first and fp16 later, as WeNet's maintainers advise); keep "
                f"log_softmax and the CTC loss in float32, outside autocast (transformers' CTC "
                f"heads do), with zero_infinity=True; a lower learning rate keeps activations "
                f"smaller")
