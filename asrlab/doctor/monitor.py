"""`TrainingMonitor`: the doctor inside `asrlab train` (a train.py callback).

It records emission statistics (blank ratio, mean blank probability, mean max non-blank
probability, empty-hypothesis rate, distinct tokens) on a training batch every
`config.train.monitor_every` updates during the first `early_epochs` epochs (then 4x less
often), and on the whole validation set at every epoch end; it feeds them, with every step's
per-utterance losses, to the shared `HealthTracker`. Findings are emitted once when they first
appear or change (never every epoch): BLANK_COLLAPSE / UNDERTRAINED, DIVERGENCE,
NONFINITE_LOSS (naming the utterances).

Every observation is appended to RUN/doctor_trace.jsonl, which `asrlab diagnose` plots and
replays.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from asrlab.callbacks import TrainingCallback
from asrlab.ctc import frames_needed
from asrlab.doctor.findings import Finding, read_findings
from asrlab.doctor.rules import (HealthTracker, Observation, RunContext, Thresholds,
                                 nonfinite_cause)
from asrlab.doctor.stats import EmissionStats

TRACE_NAME = "doctor_trace.jsonl"


def _trace_lines(run_dir: str | Path):
    path = Path(run_dir) / TRACE_NAME
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                yield json.loads(line)


def read_trace(run_dir: str | Path) -> tuple[list[Observation], list[tuple[int, float]]]:
    """(observations, step losses) recorded by a TrainingMonitor; empty when absent."""
    obs, losses = [], []
    for d in _trace_lines(run_dir):
        if d.get("type") == "loss":
            losses.extend((int(s), float(v)) for s, v in d["losses"])
        elif d.get("type", "obs") == "obs":
            obs.append(Observation.from_dict(d))
    return obs, losses


def trace_meta(run_dir: str | Path) -> dict:
    """What the monitor knew about the run when it (last) started: steps per epoch etc."""
    meta: dict = {}
    for d in _trace_lines(run_dir):
        if d.get("type") == "meta":
            meta = d
    return meta


class TrainingMonitor(TrainingCallback):
    """Callback for `asrlab.train.train` (see its docstring for the hooks)."""

    def __init__(self, thresholds: Thresholds | None = None, every: int | None = None,
                 early_epochs: float = 2.0, trace: bool = True):
        self.thresholds = thresholds or Thresholds()
        self.every = every  # None: config.train.monitor_every
        self.early_epochs = early_epochs
        self.trace = trace
        self.tracker = HealthTracker(self.thresholds)
        self._pending_losses: list[tuple[int, float]] = []
        self._trace_path: Path | None = None
        self._meta: dict = {}
        self._ratios: list[float] = []  # output frames per label of the first epoch's batches
        self._units_frozen = False

    # ---- hooks --------------------------------------------------------------------------
    def on_train_start(self, run) -> None:
        fpl = trace_meta(run.dir).get("frames_per_label") if run.state.step > 0 else None
        ctx = RunContext.from_config(run.config, run.steps_per_epoch, run.dir, fpl)
        self.tracker = HealthTracker(self.thresholds, ctx)
        self._units_frozen = fpl is not None
        if self.every is None:
            self.every = max(1, int(run.config.train.monitor_every))
        if run.state.step > 0:  # resumed: continue the trend from where the run stopped
            self.tracker.replay(*read_trace(run.dir))  # reported in the earlier session
            self.tracker.mark_reported(read_findings(Path(run.dir) / "findings.jsonl"))
        dist = getattr(run, "dist", None)
        if self.trace and getattr(dist, "is_main", True):  # one trace per run, from rank 0
            self._trace_path = Path(run.dir) / TRACE_NAME
            if run.state.step == 0:
                self._trace_path.write_text("")
            self._meta = {"type": "meta", "step": run.state.step,
                          "steps_per_epoch": run.steps_per_epoch,
                          "warmup_steps": ctx.warmup_steps, "frames_per_label": fpl}
            with open(self._trace_path, "a") as f:
                f.write(json.dumps(self._meta) + "\n")

    def on_step(self, run, step: int, log_probs: torch.Tensor, lengths: torch.Tensor,
                losses: torch.Tensor, batch) -> None:
        blank = run.tokenizer.blank
        if not self._units_frozen:
            self._measure_units(run, step, lengths, batch)
        causes = self._causes(log_probs, lengths, losses, batch)
        self.tracker.observe_losses(step, losses, list(batch.ids), causes)
        if self.tracker.step_losses and self.tracker.step_losses[-1][0] == step:
            self._pending_losses.append(self.tracker.step_losses[-1])
        if self._due(run, step):
            stats = EmissionStats()
            stats.add(log_probs.detach(), lengths, blank)
            finite = losses[torch.isfinite(losses)]
            obs = Observation.from_stats(step, "train", stats, epoch=run.state.epoch + 1,
                                         loss=float(finite.mean()) if finite.numel() else None)
            self.tracker.observe(obs)
            self._write(obs)
        for f in self.tracker.new_findings():
            self._emit_now(run, f)

    def on_epoch_end(self, run, metrics, emissions: EmissionStats) -> list[Finding]:
        obs = Observation.from_stats(metrics.step, "val", emissions, epoch=metrics.epoch,
                                     loss=metrics.val_loss, lr=metrics.lr)
        self.tracker.observe(obs)
        self._write(obs)
        return self.tracker.new_findings()

    def on_train_end(self, run) -> None:
        for f in self.tracker.new_findings(final=True):
            self._emit_now(run, f)
        self._flush_losses()

    # ---- helpers ------------------------------------------------------------------------
    def _measure_units(self, run, step: int, lengths: torch.Tensor, batch) -> None:
        """Output frames per label (labels + repeats) over the first epoch's batches, as `asrlab
        check` measures it on the data: the blank-phase judgement is relative to it (the
        running median until the epoch ends; then fixed, and recorded in the trace)."""
        needs = frames_needed(batch.targets, batch.target_lens).tolist()
        for i, need in enumerate(needs):
            if need:
                self._ratios.append(float(lengths[i]) / need)
        if not self._ratios:
            return
        fpl = round(float(statistics.median(self._ratios)), 3)
        self.tracker.set_frames_per_label(fpl)
        if step + 1 >= max(1, run.steps_per_epoch):
            self._units_frozen = True
            if self._trace_path is not None:
                self._meta = {**self._meta, "step": step, "frames_per_label": fpl}
                with open(self._trace_path, "a") as f:
                    f.write(json.dumps(self._meta) + "\n")

    def _due(self, run, step: int) -> bool:
        early = step < self.early_epochs * max(1, run.steps_per_epoch)
        every = self.every if early else 4 * self.every
        return step % every == 0

    @staticmethod
    def _causes(log_probs, lengths, losses, batch) -> dict[int, str]:
        """Reasons for the non-finite losses of this batch (only those: cheap)."""
        bad = (~torch.isfinite(losses)).nonzero().flatten().tolist()
        return {i: nonfinite_cause(log_probs[i].detach(), int(lengths[i]),
                                   batch.targets[i, :int(batch.target_lens[i])]) for i in bad}

    def _emit_now(self, run, finding: Finding) -> None:
        """Findings raised between epoch ends go out at once (log, findings.jsonl, and the
        progress display when the run offers a `notify` hook)."""
        run.emit(finding)
        notify = getattr(run, "notify", None)
        if callable(notify):
            notify(str(finding).splitlines()[0])

    def _write(self, obs: Observation) -> None:
        if self._trace_path is None:
            return
        self._flush_losses()
        with open(self._trace_path, "a") as f:
            f.write(json.dumps({"type": "obs", **obs.to_dict()}) + "\n")

    def _flush_losses(self) -> None:
        if self._trace_path is None or not self._pending_losses:
            return
        with open(self._trace_path, "a") as f:
            f.write(json.dumps({"type": "loss", "losses": [[s, round(v, 5)]
                                                           for s, v in self._pending_losses]}) + "\n")
        self._pending_losses = []
