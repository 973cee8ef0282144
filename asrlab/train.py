"""The training loop. No model code here: models come from `asrlab.models.build_model`; what
the loop needs is built once by asrlab.train_setup (the pre-flight: asrlab.preflight).

A run folder holds everything about one run:

    RUN/config.yaml      the resolved config
    RUN/check.json       the doctor's pre-training findings
    RUN/skipped.jsonl    every utterance not used, with the reason
    RUN/data.json        per split: read, used, skipped (read = used + skipped), hours used
    RUN/metrics.jsonl    one JSON object per epoch
    RUN/findings.jsonl   the doctor's findings during training
    RUN/doctor_trace.jsonl  the doctor's observations (asrlab diagnose replays it)
    RUN/train.log        the log
    RUN/tb/              TensorBoard event files
    RUN/last.pt best.pt  checkpoints (written atomically every epoch; best = lowest val CER,
                         ties to the lower val loss: asrlab.metrics.epoch_rank)
    RUN/average.pt       the mean weights of the train.average_best best epochs, written at the
                         end when it validates no worse than best.pt (kept epochs: RUN/nbest/;
                         asrlab.averaging); the run folder then resolves to it
    RUN/.lock            held (flock) by the trainer using the folder: its pid and host

Each epoch's record is written last.pt, best.pt, nbest/ (averaging on), metrics line, in that
order; `resume` rebuilds what a crash between them left from last.pt (asrlab.run_folder).

Distributed: `torchrun --nproc_per_node N -m asrlab train ...` runs the same loop in N processes
(DDP; gloo on CPU, NCCL on GPU). Batch sizes are global, metrics are reduced across ranks, and
only rank 0 writes the run folder.

Diagnostics attach from outside as callbacks (asrlab.callbacks: `TrainingCallback` subclasses,
or any object with some of its hooks).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from asrlab import distributed
from asrlab.averaging import AverageResult
from asrlab.budget import PRETRAINED_REFERENCE, SCRATCH_REFERENCE, budget_forecast
from asrlab.callbacks import TrainingCallback
from asrlab.checkpoint import load as load_checkpoint
from asrlab.checkpoint import AVERAGE, save_checkpoint
from asrlab.config import Config
from asrlab.ctc import frames_needed, time_mask
from asrlab.data.dataset import Batch
from asrlab.decode.greedy import greedy_batch
from asrlab.doctor.stats import EmissionStats
from asrlab.metrics import epoch_rank, error_rates
from asrlab.preflight import TrainingRefused  # noqa: F401  re-exported: train's refusal
from asrlab.run_folder import RunLock, append_line, resume_checkpoint
from asrlab.runtime import cpu_has_bf16, default_threads
from asrlab.train_setup import (Run, Setup, TrainState, build_setup, prepare_run_dir,
                                seed_everything, show_notes)

log = logging.getLogger("asrlab.train")


@dataclass
class EpochMetrics:
    epoch: int
    step: int
    train_loss: float
    val_loss: float
    val_cer: float
    val_wer: float
    blank_ratio: float
    empty_hyps: int
    lr: float
    elapsed_s: float
    mean_blank_prob: float = 0.0
    mean_max_nonblank_prob: float = 0.0
    distinct_tokens: int = 0
    nonfinite_losses: int = 0
    audio_seconds_per_s: float = 0.0  # training throughput
    threads: int = 0  # torch threads at the epoch's end (ThreadFollower may change them)


@dataclass
class TrainResult:
    run_dir: Path
    best_cer: float
    best_epoch: int
    epochs: int
    stopped: str  # why training ended
    metrics: list[EpochMetrics]
    average: AverageResult | None = None  # train.average_best > 1 with two epochs or more

    @property
    def checkpoint(self) -> Path:
        """The run's model: average.pt when the average was kept, else best.pt."""
        return self.run_dir / (AVERAGE if self.average and self.average.kept else "best.pt")


# ---- learning rate ----------------------------------------------------------------------

def lr_at(cfg: Config, state: TrainState, steps_per_epoch: int, time_frac: float) -> float:
    """Linear warmup, then cosine decay (over epochs or the time budget, whichever is further
    along) or plateau decay (state.lr_scale, lowered on stalled validation CER)."""
    t = cfg.train
    warmup = max(1, int(t.warmup_epochs * steps_per_epoch))
    if state.step < warmup:
        return t.lr * (state.step + 1) / warmup
    if t.schedule == "plateau":
        return t.lr * state.lr_scale
    total = max(warmup + 1, t.epochs * steps_per_epoch)
    frac = max((state.step - warmup) / (total - warmup), time_frac)
    frac = min(1.0, frac)
    floor = t.min_lr_ratio
    return t.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def update_plateau(cfg: Config, state: TrainState, val_cer: float) -> None:
    """After each epoch's validation (state.epoch = epochs completed): lower the lr scale when
    validation CER has not improved for `plateau_patience` epochs. Epochs still in the warmup
    do not count (warmup is in epochs, so compare epochs, not updates)."""
    if cfg.train.schedule != "plateau" or state.epoch < cfg.train.warmup_epochs:
        return
    if val_cer < state.plateau_best - 1e-4:
        state.plateau_best, state.plateau_bad_epochs = val_cer, 0
    else:
        state.plateau_bad_epochs += 1
        if state.plateau_bad_epochs > cfg.train.plateau_patience:
            state.lr_scale *= cfg.train.plateau_factor
            state.plateau_bad_epochs = 0


# ---- loss -------------------------------------------------------------------------------

def ctc_losses(log_probs: torch.Tensor, out_lens: torch.Tensor, batch: Batch, blank: int,
               smoothing: float) -> torch.Tensor:
    """Per-utterance CTC loss per target token, (B,).

    An utterance CTC cannot align (frames < labels + repeats) reports +inf so the caller can
    name it; its gradient is exactly zero. (Masking an inf loss after the fact is not enough:
    its backward gives 0 * inf = NaN and poisons every weight, which is why we ask ctc_loss for
    zero_infinity and put the inf back ourselves.)"""
    losses = F.ctc_loss(log_probs.transpose(0, 1), batch.targets, out_lens, batch.target_lens,
                        blank=blank, reduction="none", zero_infinity=True)  # (B,)
    losses = losses / batch.target_lens.clamp(min=1)
    if smoothing > 0:  # uniform-label term: -mean log p over valid frames and symbols
        mask = time_mask(out_lens, log_probs.shape[1])  # (B, T)
        uniform = -(log_probs.mean(dim=-1) * mask).sum(1) / out_lens.clamp(min=1)
        losses = (1 - smoothing) * losses + smoothing * uniform
    feasible = out_lens >= frames_needed(batch.targets, batch.target_lens)
    return torch.where(feasible, losses, torch.full_like(losses, math.inf))


# ---- one epoch --------------------------------------------------------------------------

@dataclass(frozen=True)
class EpochTotals:
    """Training totals, summable (icefall's MetricsTracker idea): one per update, added up over
    the epoch, reduced across DDP ranks once at its end."""
    loss: float = 0.0  # per-token losses summed over the utterances with a finite loss
    utterances: int = 0  # utterances with a finite loss
    nonfinite: int = 0  # utterances with a non-finite loss or in a skipped update
    audio_s: float = 0.0  # audio seconds trained on

    def __add__(self, other: EpochTotals) -> EpochTotals:
        return EpochTotals(*(getattr(self, f.name) + getattr(other, f.name)
                             for f in fields(self)))

    @property
    def mean_loss(self) -> float:
        return self.loss / max(1, self.utterances)

    def reduced(self, d: distributed.Dist) -> EpochTotals:
        """The sum over every rank (each rank calls it once, at the epoch's end)."""
        loss, utterances, nonfinite, audio_s = distributed.all_sum(
            d, [getattr(self, f.name) for f in fields(self)])
        return EpochTotals(loss, int(utterances), int(nonfinite), audio_s)


@dataclass(frozen=True)
class Budget:
    """The run's wall-clock budget (train.max_minutes; None: no limit) from its start."""
    start: float
    seconds: float | None

    @property
    def deadline(self) -> float:
        return self.start + self.seconds if self.seconds else math.inf

    def fraction(self, now: float) -> float:
        """How much of it is spent (0 without a budget): the cosine schedule follows it."""
        return (now - self.start) / self.seconds if self.seconds else 0.0


def autocast(run: Run):
    """bf16 autocast for precision bf16, and for auto on GPU and on CPUs that compute bf16
    natively (asrlab.runtime.cpu_has_bf16); fp32 otherwise."""
    p = run.config.train.precision
    on = p == "bf16" or (p == "auto" and (run.device.type == "cuda" or cpu_has_bf16()))
    return torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=on)


def train_epoch(run: Run, model, loader, optimizer, callbacks: list[TrainingCallback], progress,
                budget: Budget) -> tuple[EpochTotals, bool]:
    """Returns (the epoch's totals summed over ranks, out of time?). `model` is run.forward or
    its DDP wrapper."""
    model.train()
    totals, out_of_time = EpochTotals(), False
    for batch in loader:
        lr = lr_at(run.config, run.state, run.steps_per_epoch, budget.fraction(time.time()))
        for g in optimizer.param_groups:  # a pretrained encoder's layers learn at a fraction
            g["lr"] = lr * g.get("lr_scale", 1.0)
        totals += train_step(run, model, batch.to(run.device), optimizer, callbacks)
        run.state.step += 1
        if progress is not None:
            progress.advance(loss=totals.mean_loss, lr=lr)
        if distributed.any_rank(run.dist, time.time() > budget.deadline):
            out_of_time = True
            break
    return totals.reduced(run.dist), out_of_time


def train_step(run: Run, model, batch: Batch, optimizer, callbacks: list[TrainingCallback]
               ) -> EpochTotals:
    """One update: forward, per-utterance losses, the callbacks' on_step, backward, clipping,
    optimizer step. Non-finite losses contribute exactly zero gradient; a non-finite gradient
    norm skips the update (and says so)."""
    cfg, state = run.config, run.state
    with autocast(run):
        log_probs, out_lens = model(batch.feats, batch.feat_lens)  # (B, T', V)
    log_probs = log_probs.float()
    losses = ctc_losses(log_probs, out_lens, batch, run.tokenizer.blank, cfg.train.ctc_smoothing)
    finite = torch.isfinite(losses)
    for cb in callbacks:
        cb.on_step(run, state.step, log_probs, out_lens, losses.detach(), batch)
    n_ok = int(finite.sum())
    nonfinite = len(losses) - n_ok
    # Always backward (DDP needs every rank to); non-finite terms contribute exactly zero.
    loss = torch.where(finite, losses, torch.zeros_like(losses)).sum() / max(1, n_ok)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
    if n_ok and torch.isfinite(norm):  # grads are identical across ranks after DDP
        optimizer.step()
    elif n_ok:  # a NaN gradient would destroy the weights: skip the update, say so
        nonfinite += n_ok
        log.warning("step %d: non-finite gradient norm; update skipped (batch %s)",
                    state.step, ", ".join(batch.ids[:5]))
    audio_s = float(batch.feat_lens.sum()) / run.batch_rate
    return EpochTotals(loss.item() * n_ok, n_ok, nonfinite, audio_s)


@torch.no_grad()
def validate(run: Run, loader) -> tuple[float, float, float, EmissionStats, list[tuple[str, str, str]]]:
    """Returns (val loss, CER, WER, emission stats, [(id, ref, hyp)])."""
    model, tok = run.forward, run.tokenizer  # the model, or it from cached encoder states
    model.eval()
    stats, losses, rows = EmissionStats(), [], []
    for batch in loader:
        batch = batch.to(run.device)
        with autocast(run):
            log_probs, out_lens = model(batch.feats, batch.feat_lens)
        log_probs = log_probs.float()
        l = ctc_losses(log_probs, out_lens, batch, tok.blank, 0.0)
        losses.extend(l[torch.isfinite(l)].tolist())
        stats.add(log_probs, out_lens, tok.blank)
        for uid, ref, hyp in zip(batch.ids, batch.texts, greedy_batch(log_probs, out_lens, tok)):
            rows.append((uid, ref, hyp.text))
    if run.dist.enabled:  # every rank validated a shard: combine them
        stats, losses, rows = merge_shards(run.dist, stats, losses, rows)
    rates = error_rates([r[1] for r in rows], [r[2] for r in rows])
    val_loss = float(np.mean(losses)) if losses else float("nan")
    return val_loss, rates.cer, rates.wer, stats, rows


def merge_shards(d: distributed.Dist, stats: EmissionStats, losses: list[float],
                 rows: list[tuple[str, str, str]]):
    """Every rank's validation shard, combined on every rank (shards may repeat an item)."""
    parts = distributed.gather(d, (stats, losses, rows))
    stats = parts[0][0]
    for other in parts[1:]:
        stats = stats.merge(other[0])
    losses = [x for p in parts for x in p[1]]
    seen, rows = set(), []
    for uid, ref, hyp in (r for p in parts for r in p[2]):
        if uid not in seen:
            seen.add(uid)
            rows.append((uid, ref, hyp))
    return stats, losses, rows


# ---- setup ------------------------------------------------------------------------------


# ---- the loop ---------------------------------------------------------------------------

def run_epoch(s: Setup, progress, budget: Budget) -> tuple[EpochMetrics, list, bool]:
    """Train one epoch, validate, let callbacks judge; returns (metrics, val rows, out of time)."""
    run, state = s.run, s.run.state
    s.sampler.set_epoch(state.epoch)
    s.train_ds.set_epoch(state.epoch)
    progress.start_epoch(state.epoch + 1)
    t0 = time.time()
    totals, out_of_time = train_epoch(run, s.ddp_model, s.train_loader, s.optimizer, s.callbacks,
                                      progress, budget)
    train_time = time.time() - t0
    val_loss, cer, wer, emissions, rows = validate(run, s.val_loader)
    state.epoch += 1
    state.elapsed_s += time.time() - t0
    m = EpochMetrics(state.epoch, state.step, totals.mean_loss, val_loss, cer, wer,
                     emissions.blank_ratio, emissions.all_blank_utts,
                     s.optimizer.param_groups[0]["lr"], round(state.elapsed_s, 2),
                     emissions.mean_blank_prob, emissions.mean_max_nonblank_prob,
                     emissions.distinct_tokens, totals.nonfinite,
                     totals.audio_s / max(train_time, 1e-9), torch.get_num_threads())
    state.history.append(asdict(m))
    update_plateau(run.config, state, cer)
    for cb in s.callbacks:
        for f in cb.on_epoch_end(run, m, emissions) or []:
            run.emit(f)
            progress.note(str(f).splitlines()[0])
    return m, rows, out_of_time


def train(train_path: str | Path, val_path: str | Path, out: str | Path, config: Config, *,
          resume: bool = False, force: bool = False, callbacks: list | None = None,
          show_progress: bool = True, console=None, overwrite: bool = False,
          run_info: dict | None = None) -> TrainResult:
    """Train a CTC model; see the module docstring for what the run folder holds. The folder is
    locked for the whole run (a second trainer fails at once); `resume` repairs what a crash
    left; a fresh run into a folder holding a run needs `overwrite` (asrlab.run_folder)."""
    d = distributed.init(config.train.device)
    lock = RunLock(Path(out)) if d.is_main else None
    try:
        return _train(train_path, val_path, Path(out), config, d, resume, force, callbacks,
                      show_progress, console, overwrite, run_info)
    finally:
        if lock is not None:
            lock.release()


def _train(train_path, val_path, run_dir: Path, config: Config, d, resume: bool, force: bool,
           callbacks, show_progress: bool, console, overwrite: bool, run_info) -> TrainResult:
    from asrlab.progress import TrainProgress

    cfg = config.validate()
    prepare_run_dir(run_dir, resume, d.is_main, overwrite, run_info)
    ckpt = None
    if resume:  # the main rank repairs the folder; the others only read last.pt
        ckpt = (resume_checkpoint(run_dir, d.device) if d.is_main
                else load_checkpoint(run_dir / "last.pt", device=d.device))
    seed_everything(cfg.train.seed)
    torch.set_num_threads(default_threads(cfg.train.threads,
                                          int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    s = build_setup(run_dir, cfg, d, train_path, val_path, ckpt, force, callbacks)
    if d.is_main:
        show_notes(s.notes, console)
    for cb in s.callbacks:
        cb.on_train_start(s.run)
    # the budget counts from before a pretrained encoder's states were computed: they are part
    # of what a run on it costs (asrlab.encoder_cache)
    budget = Budget(s.started, cfg.train.max_minutes * 60 if cfg.train.max_minutes else None)
    progress = TrainProgress(cfg.train.epochs, len(s.sampler), bar=show_progress and d.is_main,
                             console=console, quiet=not d.is_main)
    s.run.notify = progress.note
    with progress:
        metrics, stopped = epoch_loop(s, progress, budget)
        average = finish_average(s, progress) if s.averager else None
    for cb in s.callbacks:
        cb.on_train_end(s.run)
    state = s.run.state
    log.info("stopped: %s; best val CER %.4f at epoch %d", stopped, state.best_cer, state.best_epoch)
    distributed.shutdown(d)
    return TrainResult(run_dir, state.best_cer, state.best_epoch, state.epoch, stopped, metrics,
                       average)


def finish_average(s: Setup, progress) -> AverageResult | None:
    """The average of the kept epochs, validated like an epoch (asrlab.averaging)."""
    result = s.averager.finish(s.run, s.stats, lambda: validate(s.run, s.val_loader)[:3])
    if result is not None and s.run.dist.is_main:
        log.info("%s", result.summary())
        progress.note(result.summary(), source="average")
    return result


def epoch_loop(s: Setup, progress, budget: Budget) -> tuple[list[EpochMetrics], str]:
    """Epochs until the last, the time budget or early stopping; returns (metrics, why it
    stopped)."""
    run, state, t = s.run, s.run.state, s.run.config.train
    metrics, first_step, loop_start = [], state.step, time.time()
    while state.epoch < t.epochs:
        m, rows, out_of_time = run_epoch(s, progress, budget)
        metrics.append(m)
        record_epoch(s, m, rows)
        progress.end_epoch(m)
        if budget.seconds and len(metrics) == 1 and run.dist.is_main:  # what to expect, once
            forecast = budget_forecast(
                budget.seconds, time.time() - loop_start, state.step - first_step,
                run.steps_per_epoch, before_s=loop_start - budget.start,
                reference=PRETRAINED_REFERENCE if run.config.model.name == "pretrained"
                else SCRATCH_REFERENCE)
            log.info(forecast)
            progress.note(forecast, source="budget")
        if out_of_time:
            return metrics, f"time budget ({t.max_minutes} min)"
        if m.epoch - state.best_epoch >= t.early_stop_patience:
            return metrics, (f"early stopping ({t.early_stop_patience} epochs without a better "
                             f"val CER, or the same with a lower val loss)")
    return metrics, "epochs"


def record_epoch(s: Setup, m: EpochMetrics, rows: list[tuple[str, str, str]]) -> None:
    """The best epoch so far, and (rank 0) the epoch record: last.pt, best.pt, metrics
    (asrlab.run_folder)."""
    run, state = s.run, s.run.state
    improved = epoch_rank(m.val_cer, m.val_loss) < epoch_rank(state.best_cer, state.best_loss)
    if improved:
        state.best_cer, state.best_loss, state.best_epoch = m.val_cer, m.val_loss, m.epoch
    if run.dist.is_main:
        save_run_checkpoints(run, s.optimizer, s.stats, m, improved)
    if s.averager is not None:  # every rank keeps its copy; rank 0 writes RUN/nbest
        s.averager.after_epoch(state.history)
    if run.dist.is_main:
        write_epoch(run.dir, m, rows)
        log.info("epoch %d: %s", m.epoch, json.dumps(asdict(m)))

def save_run_checkpoints(run: Run, optimizer, stats, m: EpochMetrics, improved: bool) -> None:
    """last.pt first (it carries the history a resume rebuilds the rest from), then best.pt."""
    meta = {"epoch": m.epoch, "step": m.step, "val_cer": m.val_cer, "val_wer": m.val_wer}
    train_state = {"optimizer": optimizer.state_dict(), "state": asdict(run.state),
                   "torch_rng": torch.get_rng_state()}
    common = dict(model=run.model, config=run.config, tokenizer=run.tokenizer, stats=stats)
    save_checkpoint(run.dir / "last.pt", meta=meta, train_state=train_state, **common)
    if improved:
        save_checkpoint(run.dir / "best.pt", meta=meta, **common)


def write_epoch(run_dir: Path, m: EpochMetrics, rows: list[tuple[str, str, str]]) -> None:
    """The record's last write: the metrics line (fsynced), then the latest val samples."""
    append_line(run_dir / "metrics.jsonl", json.dumps(asdict(m)))
    with open(run_dir / "val_samples.jsonl", "w") as f:  # latest epoch's predictions
        for uid, ref, hyp in rows:
            f.write(json.dumps({"id": uid, "ref": ref, "hyp": hyp}) + "\n")
