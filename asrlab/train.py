"""The training loop. No model code here: models come from `asrlab.models.build_model`.

A run folder holds everything about one run:

    RUN/config.yaml      the resolved config
    RUN/check.json       the doctor's pre-training findings
    RUN/skipped.jsonl    every utterance not used, with the reason
    RUN/metrics.jsonl    one JSON object per epoch
    RUN/findings.jsonl   the doctor's findings during training
    RUN/train.log        the log
    RUN/tb/              TensorBoard event files
    RUN/last.pt best.pt  checkpoints (written atomically every epoch; best = lowest val CER)

Diagnostics attach from outside as callbacks: any object with some of `on_train_start(run)`,
`on_step(run, step, log_probs, lengths, losses, batch)`, `on_epoch_end(run, metrics, emissions)`
(which returns findings), `on_train_end(run)`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from asrlab.checkpoint import load as load_checkpoint
from asrlab.checkpoint import save_checkpoint
from asrlab.config import Config
from asrlab.data.dataset import Batch, SpeechDataset, collate
from asrlab.data.manifest import load_manifest
from asrlab.data.sampler import BucketBatchSampler
from asrlab.data.scan import ScanResult, scan_split, write_skipped
from asrlab.data.tokenizer import build_tokenizer
from asrlab.decode.greedy import greedy_batch
from asrlab.doctor.findings import Finding, has_errors, write_findings_json
from asrlab.doctor.stats import EmissionStats
from asrlab.features import FeaturePipeline, LogMel
from asrlab.metrics import error_rates
from asrlab.models import build_model

log = logging.getLogger("asrlab.train")


class TrainingRefused(RuntimeError):
    """Pre-training checks found errors; the message lists them and how to proceed."""


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


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0
    best_cer: float = math.inf
    best_epoch: int = 0
    elapsed_s: float = 0.0
    lr_scale: float = 1.0  # plateau schedule's decay so far
    plateau_best: float = math.inf
    plateau_bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)


@dataclass
class TrainResult:
    run_dir: Path
    best_cer: float
    best_epoch: int
    epochs: int
    stopped: str  # why training ended
    metrics: list[EpochMetrics]


@dataclass
class Run:
    """What callbacks see."""
    dir: Path
    config: Config
    tokenizer: object
    model: torch.nn.Module
    state: TrainState
    steps_per_epoch: int
    log: logging.Logger = log
    findings: list[Finding] = field(default_factory=list)

    def emit(self, finding: Finding) -> None:
        self.findings.append(finding)
        with open(self.dir / "findings.jsonl", "a") as f:
            f.write(json.dumps({"epoch": self.state.epoch, "step": self.state.step,
                                **finding.to_dict()}) + "\n")
        level = logging.ERROR if finding.severity == "error" else \
            logging.WARNING if finding.severity == "warning" else logging.INFO
        self.log.log(level, str(finding))


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
    if cfg.train.schedule != "plateau" or state.step < cfg.train.warmup_epochs:
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
    """Per-utterance CTC loss per target token, (B,). Never zero_infinity: non-finite values
    are returned as they are so the caller can name the utterances."""
    losses = F.ctc_loss(log_probs.transpose(0, 1), batch.targets, out_lens, batch.target_lens,
                        blank=blank, reduction="none", zero_infinity=False)  # (B,)
    losses = losses / batch.target_lens.clamp(min=1)
    if smoothing > 0:  # uniform-label term: -mean log p over valid frames and symbols
        mask = torch.arange(log_probs.shape[1])[None, :] < out_lens[:, None]  # (B, T)
        uniform = -(log_probs.mean(dim=-1) * mask).sum(1) / out_lens.clamp(min=1)
        losses = (1 - smoothing) * losses + smoothing * uniform
    return losses


# ---- one epoch --------------------------------------------------------------------------

def train_epoch(run: Run, loader, optimizer, callbacks, progress, deadline: float,
                t_start: float, budget_s: float | None) -> tuple[float, int, float, bool]:
    """Returns (mean loss, non-finite count, audio seconds seen, out of time?)."""
    cfg, model, state = run.config, run.model, run.state
    model.train()
    total, count, nonfinite, audio_s = 0.0, 0, 0, 0.0
    for batch in loader:
        time_frac = (time.time() - t_start) / budget_s if budget_s else 0.0
        lr = lr_at(cfg, state, run.steps_per_epoch, time_frac)
        for g in optimizer.param_groups:
            g["lr"] = lr
        log_probs, out_lens = model(batch.feats, batch.feat_lens)  # (B, T', V)
        losses = ctc_losses(log_probs, out_lens, batch, run.tokenizer.blank, cfg.train.ctc_smoothing)
        finite = torch.isfinite(losses)
        for cb in callbacks:
            if hasattr(cb, "on_step"):
                cb.on_step(run, state.step, log_probs, out_lens, losses.detach(), batch)
        nonfinite += int((~finite).sum())
        if finite.any():
            loss = losses[finite].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            optimizer.step()
            total += loss.item() * int(finite.sum())
            count += int(finite.sum())
        state.step += 1
        audio_s += float(batch.feat_lens.sum()) * cfg.features.hop_ms / 1000
        if progress is not None:
            progress.advance(loss=total / max(1, count), lr=lr)
        if time.time() > deadline:
            return total / max(1, count), nonfinite, audio_s, True
    return total / max(1, count), nonfinite, audio_s, False


@torch.no_grad()
def validate(run: Run, loader) -> tuple[float, float, float, EmissionStats, list[tuple[str, str, str]]]:
    """Returns (val loss, CER, WER, emission stats, [(id, ref, hyp)])."""
    model, tok = run.model, run.tokenizer
    model.eval()
    stats, losses, rows = EmissionStats(), [], []
    for batch in loader:
        log_probs, out_lens = model(batch.feats, batch.feat_lens)
        l = ctc_losses(log_probs, out_lens, batch, tok.blank, 0.0)
        losses.extend(l[torch.isfinite(l)].tolist())
        stats.add(log_probs, out_lens, tok.blank)
        for uid, ref, hyp in zip(batch.ids, batch.texts, greedy_batch(log_probs, out_lens, tok)):
            rows.append((uid, ref, hyp.text))
    rates = error_rates([r[1] for r in rows], [r[2] for r in rows])
    val_loss = float(np.mean(losses)) if losses else float("nan")
    return val_loss, rates.cer, rates.wer, stats, rows


# ---- setup ------------------------------------------------------------------------------

def setup_logging(run_dir: Path) -> None:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.handlers = [h for h in log.handlers if not isinstance(h, logging.FileHandler)] + [handler]
    log.setLevel(logging.INFO)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def scan_data(cfg: Config, train_path, val_path, tokenizer=None):
    """Read both manifests and all audio once; returns scan results and CMVN statistics."""
    train_utts, val_utts = load_manifest(train_path), load_manifest(val_path)
    if tokenizer is None:
        tokenizer = build_tokenizer(cfg.tokenizer, [u.text for u in train_utts if u.text.strip()],
                                    cfg.vocab_size)
    logmel = LogMel(cfg.features)
    tr = scan_split("train", train_utts, cfg.features.sample_rate, tokenizer, logmel)
    va = scan_split("val", val_utts, cfg.features.sample_rate, tokenizer)
    if not tr.used:
        raise TrainingRefused(f"{train_path}: no usable training utterance "
                              f"({len(tr.skipped)} skipped; see skipped.jsonl)")
    if not va.used:
        raise TrainingRefused(f"{val_path}: no usable validation utterance "
                              f"({len(va.skipped)} skipped; see skipped.jsonl)")
    return tr, va, tokenizer, tr.stats.stats()


def precheck(run_dir: Path, cfg: Config, tr: ScanResult, va: ScanResult, tokenizer, pipeline,
             force: bool) -> list[Finding]:
    """Run the doctor's data checks; refuse to train on errors unless forced."""
    from asrlab.doctor.checks import check_scanned

    findings = check_scanned(tr, va, cfg, tokenizer, pipeline)
    write_findings_json(run_dir / "check.json", findings)
    for f in findings:
        log.log(logging.ERROR if f.severity == "error" else logging.WARNING
                if f.severity == "warning" else logging.INFO, str(f))
    if has_errors(findings) and not force:
        lines = "\n".join(f"  {f}" for f in findings if f.severity == "error")
        raise TrainingRefused(f"pre-training checks found errors (details in {run_dir}/check.json):"
                              f"\n{lines}\nFix the data, or pass --force to train anyway.")
    return findings


def make_loader(ds: SpeechDataset, sampler: BucketBatchSampler):
    return torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate,
                                       num_workers=0)


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)


# ---- the loop ---------------------------------------------------------------------------

def train(train_path: str | Path, val_path: str | Path, out: str | Path, config: Config, *,
          resume: bool = False, force: bool = False, callbacks: list | None = None,
          show_progress: bool = True, console=None) -> TrainResult:
    """Train a CTC model; see the module docstring for what the run folder holds."""
    from asrlab.progress import TrainProgress

    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(run_dir)
    ckpt = load_checkpoint(run_dir / "last.pt") if resume else None
    if not resume:  # a fresh run: per-epoch logs start empty
        for name in ("metrics.jsonl", "findings.jsonl"):
            (run_dir / name).unlink(missing_ok=True)
    cfg = config.validate()
    seed_everything(cfg.train.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    cfg.to_yaml(run_dir / "config.yaml")

    tr, va, tokenizer, stats = scan_data(cfg, train_path, val_path,
                                         ckpt.tokenizer if ckpt else None)
    if ckpt is not None:
        stats = ckpt.stats  # keep the statistics the model was trained with
    write_skipped(run_dir / "skipped.jsonl", [tr, va])
    pipeline = FeaturePipeline(cfg.features, stats)
    precheck(run_dir, cfg, tr, va, tokenizer, pipeline, force)
    log.info("train: %d used, %d skipped; val: %d used, %d skipped; vocabulary %d symbols",
             len(tr.used), len(tr.skipped), len(va.used), len(va.skipped), tokenizer.vocab_size)

    model = ckpt.model if ckpt else build_model(cfg.model, cfg.features.n_mels, tokenizer.vocab_size)
    optimizer = make_optimizer(cfg, model)
    state = TrainState()
    if ckpt is not None and ckpt.train_state:
        optimizer.load_state_dict(ckpt.train_state["optimizer"])
        state = TrainState(**ckpt.train_state["state"])
        torch.set_rng_state(ckpt.train_state["torch_rng"])

    train_ds = SpeechDataset(tr.used, pipeline, tokenizer, cfg.augment, cfg.train.seed, waves=tr.waves)
    val_ds = SpeechDataset(va.used, pipeline, tokenizer, None, waves=va.waves)
    sampler = BucketBatchSampler([u.duration for u in tr.used], cfg.train.batch_size,
                                 cfg.train.batch_seconds, True, cfg.train.sort_first_epoch,
                                 cfg.train.seed)
    val_sampler = BucketBatchSampler([u.duration for u in va.used], None, 200.0, False, False)
    train_loader, val_loader = make_loader(train_ds, sampler), make_loader(val_ds, val_sampler)

    run = Run(run_dir, cfg, tokenizer, model, state, len(sampler))
    callbacks = list(callbacks or []) + default_callbacks(cfg, run_dir)
    for cb in callbacks:
        if hasattr(cb, "on_train_start"):
            cb.on_train_start(run)

    t_start = time.time()
    budget_s = cfg.train.max_minutes * 60 if cfg.train.max_minutes else None
    deadline = t_start + budget_s if budget_s else math.inf
    metrics_list, stopped = [], "epochs"
    progress = TrainProgress(cfg.train.epochs, len(sampler), bar=show_progress, console=console)
    with progress:
        while state.epoch < cfg.train.epochs:
            epoch = state.epoch + 1
            sampler.set_epoch(state.epoch)
            train_ds.set_epoch(state.epoch)
            progress.start_epoch(epoch)
            t0 = time.time()
            train_loss, nonfinite, audio_s, out_of_time = train_epoch(
                run, train_loader, optimizer, callbacks, progress, deadline, t_start, budget_s)
            train_time = time.time() - t0
            val_loss, cer, wer, emissions, rows = validate(run, val_loader)
            state.epoch = epoch
            state.elapsed_s += time.time() - t0
            m = EpochMetrics(epoch, state.step, train_loss, val_loss, cer, wer,
                             emissions.blank_ratio, emissions.all_blank_utts,
                             optimizer.param_groups[0]["lr"], round(state.elapsed_s, 2),
                             emissions.mean_blank_prob, emissions.mean_max_nonblank_prob,
                             emissions.distinct_tokens, nonfinite,
                             audio_s / max(train_time, 1e-9))
            metrics_list.append(m)
            state.history.append(asdict(m))
            update_plateau(cfg, state, cer)
            for cb in callbacks:
                if hasattr(cb, "on_epoch_end"):
                    for f in cb.on_epoch_end(run, m, emissions) or []:
                        run.emit(f)
                        progress.note(str(f).splitlines()[0])
            improved = cer < state.best_cer
            if improved:
                state.best_cer, state.best_epoch = cer, epoch
            save_run_checkpoints(run, optimizer, stats, m, improved)
            write_epoch(run_dir, m, rows)
            progress.end_epoch(m)
            log.info("epoch %d: %s", epoch, json.dumps(asdict(m)))
            if out_of_time:
                stopped = f"time budget ({cfg.train.max_minutes} min)"
                break
            if epoch - state.best_epoch >= cfg.train.early_stop_patience:
                stopped = f"early stopping ({cfg.train.early_stop_patience} epochs without a better val CER)"
                break
    for cb in callbacks:
        if hasattr(cb, "on_train_end"):
            cb.on_train_end(run)
    log.info("stopped: %s; best val CER %.4f at epoch %d", stopped, state.best_cer, state.best_epoch)
    return TrainResult(run_dir, state.best_cer, state.best_epoch, state.epoch, stopped, metrics_list)


def default_callbacks(cfg: Config, run_dir: Path) -> list:
    """The doctor's monitor always; TensorBoard when enabled and installed."""
    from asrlab.doctor.monitor import TrainingMonitor

    cbs: list = [TrainingMonitor()]
    if cfg.train.tensorboard:
        try:
            from asrlab.tensorboard import TensorBoardCallback

            cbs.append(TensorBoardCallback(run_dir / "tb"))
        except ImportError as e:  # tensorboard not installed: say so once, train anyway
            log.warning("TensorBoard disabled: %s", e)
    return cbs


def save_run_checkpoints(run: Run, optimizer, stats, m: EpochMetrics, improved: bool) -> None:
    meta = {"epoch": m.epoch, "step": m.step, "val_cer": m.val_cer, "val_wer": m.val_wer}
    train_state = {"optimizer": optimizer.state_dict(), "state": asdict(run.state),
                   "torch_rng": torch.get_rng_state()}
    common = dict(model=run.model, config=run.config, tokenizer=run.tokenizer, stats=stats)
    save_checkpoint(run.dir / "last.pt", meta=meta, train_state=train_state, **common)
    if improved:
        save_checkpoint(run.dir / "best.pt", meta=meta, **common)


def write_epoch(run_dir: Path, m: EpochMetrics, rows: list[tuple[str, str, str]]) -> None:
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(asdict(m)) + "\n")
    with open(run_dir / "val_samples.jsonl", "w") as f:  # latest epoch's predictions
        for uid, ref, hyp in rows:
            f.write(json.dumps({"id": uid, "ref": ref, "hyp": hyp}) + "\n")
