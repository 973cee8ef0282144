"""The training loop. No model code here: models come from `asrlab.models.build_model`.

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
    RUN/last.pt best.pt  checkpoints (written atomically every epoch; best = lowest val CER)
    RUN/.lock            held (flock) by the trainer using the folder: its pid and host

Each epoch's record is written last.pt, best.pt, metrics line, in that order; `resume` rebuilds
what a crash between them left from last.pt (asrlab.run_folder).

Distributed: `torchrun --nproc_per_node N -m asrlab train ...` runs the same loop in N processes
(DDP; gloo on CPU, NCCL on GPU). Batch sizes are global, metrics are reduced across ranks, and
only rank 0 writes the run folder.

Diagnostics attach from outside as callbacks: asrlab.callbacks.TrainingCallback subclasses
(hooks `on_train_start(run)`, `on_step(run, step, log_probs, lengths, losses, batch)`,
`on_epoch_end(run, metrics, emissions)` returning findings, `on_train_end(run)`, each a no-op
unless overridden), or any object with some of those methods (wrapped by `as_callback`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from asrlab import distributed
from asrlab.callbacks import TrainingCallback, as_callback
from asrlab.checkpoint import load as load_checkpoint
from asrlab.checkpoint import save_checkpoint
from asrlab.config import Config
from asrlab.ctc import frames_needed, time_mask
from asrlab.data.augment import load_noises
from asrlab.data.dataset import Batch, SpeechDataset, collate
from asrlab.data.featcache import FeatureCache
from asrlab.data.manifest import ManifestError, write_skipped
from asrlab.data.sampler import BucketBatchSampler
from asrlab.data.scan import ScanResult, scan_split, write_counts
from asrlab.data.text import TextNormalizer, Transcripts, read_transcripts
from asrlab.data.tokenizer import Tokenizer, build_tokenizer
from asrlab.decode.greedy import greedy_batch
from asrlab.doctor.findings import Finding, has_errors, write_findings_json
from asrlab.doctor.stats import EmissionStats
from asrlab.features import FeaturePipeline, front_end
from asrlab.frames import input_rate
from asrlab.metrics import error_rates
from asrlab.models import build_model
from asrlab.run_folder import RunLock, append_line, check_reuse, resume_checkpoint
from asrlab.runtime import ThreadGovernor, cpu_has_bf16, default_threads

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
    threads: int = 0  # torch threads at the epoch's end (ThreadFollower may change them)


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
    tokenizer: Tokenizer
    model: torch.nn.Module
    state: TrainState
    steps_per_epoch: int
    dist: distributed.Dist = field(default_factory=distributed.Dist)
    notify: Callable[[str], None] | None = None  # the progress display's note line
    log: logging.Logger = log
    findings: list[Finding] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return self.dist.device

    def emit(self, finding: Finding) -> None:
        self.findings.append(finding)
        if not self.dist.is_main:
            return
        with open(self.dir / "findings.jsonl", "a") as f:
            f.write(json.dumps({"epoch": self.state.epoch, "step": self.state.step,
                                **finding.to_dict()}) + "\n")
        self.log.log(finding.log_level, str(finding))


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

def autocast(run: Run):
    """bf16 autocast for precision bf16, and for auto on GPU and on CPUs that compute bf16
    natively (asrlab.runtime.cpu_has_bf16); fp32 otherwise."""
    p = run.config.train.precision
    on = p == "bf16" or (p == "auto" and (run.device.type == "cuda" or cpu_has_bf16()))
    return torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=on)


def train_epoch(run: Run, model, loader, optimizer, callbacks: list[TrainingCallback], progress,
                deadline: float, t_start: float, budget_s: float | None
                ) -> tuple[float, int, float, bool]:
    """Returns (mean loss, non-finite count, audio seconds seen, out of time?), summed over
    ranks. `model` is run.model or its DDP wrapper."""
    cfg, state = run.config, run.state
    model.train()
    total, count, nonfinite, audio_s = 0.0, 0, 0, 0.0
    out_of_time = False
    for batch in loader:
        time_frac = (time.time() - t_start) / budget_s if budget_s else 0.0
        lr = lr_at(cfg, state, run.steps_per_epoch, time_frac)
        for g in optimizer.param_groups:
            g["lr"] = lr
        batch = batch.to(run.device)
        with autocast(run):
            log_probs, out_lens = model(batch.feats, batch.feat_lens)  # (B, T', V)
        log_probs = log_probs.float()
        losses = ctc_losses(log_probs, out_lens, batch, run.tokenizer.blank, cfg.train.ctc_smoothing)
        finite = torch.isfinite(losses)
        for cb in callbacks:
            cb.on_step(run, state.step, log_probs, out_lens, losses.detach(), batch)
        n_ok = int(finite.sum())
        nonfinite += len(losses) - n_ok
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
        total += loss.item() * n_ok
        count += n_ok
        state.step += 1
        audio_s += float(batch.feat_lens.sum()) / input_rate(cfg.features)
        if progress is not None:
            progress.advance(loss=total / max(1, count), lr=lr)
        if distributed.any_rank(run.dist, time.time() > deadline):
            out_of_time = True
            break
    total, count, nonfinite, audio_s = distributed.all_sum(run.dist, [total, count, nonfinite, audio_s])
    return total / max(1, count), int(nonfinite), audio_s, out_of_time


@torch.no_grad()
def validate(run: Run, loader) -> tuple[float, float, float, EmissionStats, list[tuple[str, str, str]]]:
    """Returns (val loss, CER, WER, emission stats, [(id, ref, hyp)])."""
    model, tok = run.model, run.tokenizer
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
        parts = distributed.gather(run.dist, (stats, losses, rows))
        stats = parts[0][0]
        for other in parts[1:]:
            stats = stats.merge(other[0])
        losses = [x for p in parts for x in p[1]]
        seen, rows = set(), []
        for uid, ref, hyp in (r for p in parts for r in p[2]):  # shards may repeat an item
            if uid not in seen:
                seen.add(uid)
                rows.append((uid, ref, hyp))
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


def read_split(path, force: bool, normalizer: TextNormalizer) -> Transcripts:
    """A manifest's utterances (text normalized by the model's rules) and its bad lines. Bad
    lines refuse training (all of them listed) unless forced; forced, they are skipped and
    listed in skipped.jsonl like any other item."""
    read = read_transcripts(path, normalizer, strict=False)
    if read.problems and not force:
        raise TrainingRefused(f"{ManifestError(path, read.problems)}\nFix these lines, or pass "
                              "--force to skip them (they are then listed in skipped.jsonl).")
    return read


def scan_data(cfg: Config, train_path, val_path, tokenizer=None, force: bool = False):
    """Read both manifests and all audio once; returns scan results and CMVN statistics.
    Bad manifest lines (with force) count as read and skipped, like unusable audio."""
    train, val = read_split(train_path, force, cfg.text), read_split(val_path, force, cfg.text)
    (train_utts, train_bad), (val_utts, val_bad) = ((train.utterances, train.problems),
                                                    (val.utterances, val.problems))
    removed = train.removed
    if removed:
        log.info("text normalization removed from training transcripts: %s",
                 ", ".join(f"{ch!r} x{n}" for ch, n in list(removed.items())[:20]))
    if tokenizer is None:
        tokenizer = build_tokenizer(cfg.tokenizer, [u.text for u in train_utts if u.text.strip()],
                                    cfg.vocab_size)
    logmel = front_end(cfg.features)
    tr = scan_split("train", train_utts, cfg.features.sample_rate, tokenizer, logmel,
                    keep_feats=feature_cache_on(cfg), problems=train_bad,
                    duration_bounds=(cfg.train.min_duration, cfg.train.max_duration))
    va = scan_split("val", val_utts, cfg.features.sample_rate, tokenizer, problems=val_bad)
    stats = tr.stats.stats() if tr.used else None
    return tr, va, tokenizer, stats


def require_usable(tr: ScanResult, va: ScanResult, train_path, val_path, run_dir: Path) -> None:
    for scan, path in ((tr, train_path), (va, val_path)):
        if not scan.used:
            hint = ""
            if scan.skipped and all("file not found" in s.reason for s in scan.skipped):
                hint = (f"; every audio file is missing: relative paths resolve from the "
                        f"manifest's folder {Path(path).resolve().parent}; was the manifest "
                        "moved without its audio?")
            raise TrainingRefused(f"{path}: no usable {'training' if scan is tr else 'validation'} "
                                  f"utterance ({len(scan.skipped)} skipped; reasons in "
                                  f"{run_dir / 'skipped.jsonl'}){hint}")


def precheck(run_dir: Path, cfg: Config, tr: ScanResult, va: ScanResult, tokenizer, pipeline,
             force: bool, write: bool = True) -> list[Finding]:
    """Run the doctor's data checks; refuse to train on errors unless forced."""
    from asrlab.doctor.checks import check_scanned
    from asrlab.doctor.display import evidence_line

    findings = check_scanned(tr, va, cfg, tokenizer, pipeline)  # ranked, errors first
    if write:
        write_findings_json(run_dir / "check.json", findings)
    for f in findings:
        log.log(f.log_level, f"{f}\n    evidence: {evidence_line(f)}")
    if has_errors(findings) and not force:
        lines = "\n".join(f"  {f}\n    evidence: {evidence_line(f)}"
                          for f in findings if f.severity == "error")
        raise TrainingRefused(f"pre-training checks found errors (all offenders in "
                              f"{run_dir}/check.json):\n{lines}\nFix the data, or pass --force "
                              f"to train anyway.")
    return findings


def make_loader(ds: SpeechDataset, sampler: BucketBatchSampler, cfg: Config):
    return torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate,
                                       num_workers=cfg.train.num_workers)


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)


# ---- the loop ---------------------------------------------------------------------------

@dataclass
class Setup:
    """Everything the epoch loop needs, built once."""
    run: Run
    ddp_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    stats: object
    train_ds: SpeechDataset
    sampler: BucketBatchSampler
    train_loader: object
    val_loader: object
    callbacks: list[TrainingCallback]
    notes: list[str] = field(default_factory=list)  # for the console (e.g. --init-from)


def prepare_run_dir(run_dir: Path, resume: bool, is_main: bool, overwrite: bool = False,
                    run_info: dict | None = None) -> None:
    """Called with the run folder locked. A fresh run refuses a folder holding a run unless
    `overwrite`; its per-epoch logs start empty (asrlab.run_folder)."""
    if not is_main:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    check_reuse(run_dir, resume, overwrite)
    setup_logging(run_dir)
    if run_info is not None:
        (run_dir / "run.json").write_text(json.dumps(run_info, indent=2))


# ---- fine-tuning (--init-from) ------------------------------------------------------------

def architecture_differences(cfg: Config, source: Config) -> list[str]:
    """'section.key: source A, this run B' for every feature or model setting that would make
    the source's weights meaningless here (Config.architecture: dropout, initialization and
    how much of a pretrained encoder trains may differ)."""
    mine, theirs = cfg.architecture(), source.architecture()
    return [f"{key}: source {theirs.get(key)!r}, this run {mine.get(key)!r}"
            for key in dict.fromkeys([*theirs, *mine]) if mine.get(key) != theirs.get(key)]


def load_init(cfg: Config, device):
    """The --init-from checkpoint, checked against this run's architecture."""
    path = cfg.train.init_from
    try:
        source = load_checkpoint(path, device=device)
    except (FileNotFoundError, ValueError) as e:
        raise TrainingRefused(f"--init-from {path}: {e}") from None
    differ = architecture_differences(cfg, source.config)
    if differ:
        raise TrainingRefused(
            f"--init-from {path}: the model to fine-tune has another architecture than this "
            f"run:\n  " + "\n  ".join(differ) + "\nDrop the settings that change it (with "
            f"--init-from, asrlab train takes the source's model and features by default), or "
            f"train from scratch without --init-from.")
    return source


def init_tokenizer(cfg: Config, source, train_path):
    """The source's vocabulary when it can spell every training transcript (and the tokenizer
    settings agree); None otherwise: a new vocabulary and a new output layer."""
    if cfg.tokenizer != source.config.tokenizer or (
            cfg.tokenizer == "bpe" and cfg.vocab_size != source.config.vocab_size):
        return None
    utts = read_transcripts(train_path, cfg.text, strict=False).utterances
    if any(source.tokenizer.oov(u.text) for u in utts):
        return None
    return source.tokenizer


def init_model(cfg: Config, source, tokenizer) -> tuple[torch.nn.Module, str]:
    """A model with the source's weights; the output layer is new when the vocabulary is.
    Returns (model, what was done, for the log and the console)."""
    model = build_model(cfg, tokenizer.vocab_size)
    weights = source.model.state_dict()
    same = tokenizer.to_dict() == source.tokenizer.to_dict()
    if same:
        model.load_state_dict(weights)
        return model, (f"initialized from {source.path}: every weight, vocabulary of "
                       f"{tokenizer.vocab_size} symbols kept")
    head = {k for k in weights if k.startswith("head.")}
    model.load_state_dict({k: v for k, v in weights.items() if k not in head}, strict=False)
    return model, (f"initialized from {source.path}: encoder weights kept; output layer "
                   f"re-initialized because the vocabulary differs (source "
                   f"{source.tokenizer.vocab_size} symbols, this run {tokenizer.vocab_size}: "
                   f"{vocabulary_change(source.tokenizer, tokenizer)})")


def vocabulary_change(old, new) -> str:
    if old.kind != new.kind:
        return f"{old.kind} -> {new.kind} tokenizer"
    added = [s for s in new.to_dict().get("symbols", []) if s not in set(old.to_dict().get(
        "symbols", []))]
    return f"new symbols {''.join(added)!r}" if added else "different symbols"


THREAD_CHECK_S = 10.0  # how often training's threads are matched to the machine's load


class ThreadFollower(TrainingCallback):
    """Callback: torch's threads follow the cores other processes leave free
    (asrlab.runtime.ThreadGovernor, checked every THREAD_CHECK_S). On when the user gave no
    thread count and one process trains on the CPU (`follows_load`)."""

    def __init__(self, max_threads: int, interval_s: float | None = None):
        self.max_threads, self.governor = max_threads, None
        self.interval_s = interval_s or THREAD_CHECK_S

    def on_train_start(self, run) -> None:
        self.governor = ThreadGovernor(self.max_threads, torch.set_num_threads, self.interval_s)

    def on_step(self, run, step, log_probs, lengths, losses, batch) -> None:
        n = self.governor.tick() if self.governor is not None else None
        if n is not None:
            text = (f"threads: {n} of {self.max_threads} (other processes keep "
                    f"{self.governor.last_others:.1f} cores busy)")
            run.log.info(text)
            if run.notify is not None:
                run.notify(text)


def follows_load(cfg: Config, d) -> bool:
    return cfg.train.threads is None and d.device.type == "cpu" and d.world == 1


class EncoderFreeze(TrainingCallback):
    """Callback: for the first N epochs only the output layer learns. The encoder's weights
    have requires_grad off (AdamW skips them, weight decay included) and it runs in eval mode
    (dropout off, BatchNorm statistics not updated), so it stays exactly as it was loaded."""

    def __init__(self, epochs: int):
        self.epochs, self.hook = epochs, None

    def on_train_start(self, run) -> None:
        if run.state.epoch < self.epochs:
            encoder = run.model.encoder
            for p in encoder.parameters():
                p.requires_grad_(False)
            self.hook = encoder.register_forward_pre_hook(self._eval)
            run.log.info("encoder frozen for the first %d epoch(s): only the output layer "
                         "trains", self.epochs)

    @staticmethod
    def _eval(module, _inputs) -> None:  # returns None: the inputs pass unchanged
        module.eval()

    def on_epoch_end(self, run, metrics, emissions) -> list:
        if self.hook is not None and run.state.epoch >= self.epochs:
            for p in run.model.encoder.parameters():
                p.requires_grad_(True)
            self.hook.remove()
            self.hook = None
            run.log.info("epoch %d: encoder unfrozen", run.state.epoch)
        return []


def build_setup(run_dir: Path, cfg: Config, d: distributed.Dist, train_path, val_path,
                ckpt, force: bool, callbacks: list | None) -> Setup:
    source = load_init(cfg, d.device) if cfg.train.init_from and ckpt is None else None
    known = ckpt.tokenizer if ckpt else init_tokenizer(cfg, source, train_path) if source else None
    tr, va, tokenizer, stats = scan_data(cfg, train_path, val_path, known, force)
    if ckpt is not None:
        stats = ckpt.stats  # keep the statistics the model was trained with
    notes = []
    if source is not None:
        model, note = init_model(cfg, source, tokenizer)
        notes.append(note)
        if cfg.train.recompute_cmvn:
            notes.append(f"feature statistics (CMVN) recomputed on {train_path}")
        else:
            stats = source.stats
            notes.append(f"feature statistics (CMVN) kept from {source.path} "
                         f"(--recompute-cmvn to estimate them on this training set)")
        for note in notes:
            log.info("%s", note)
    if d.is_main:
        cfg.to_yaml(run_dir / "config.yaml")
        write_skipped(run_dir / "skipped.jsonl", tr.skipped + va.skipped)
        write_counts(run_dir / "data.json", [tr, va], cfg.features.sample_rate)
    require_usable(tr, va, train_path, val_path, run_dir)
    pipeline = FeaturePipeline(cfg.features, stats)
    precheck(run_dir, cfg, tr, va, tokenizer, pipeline, force, write=d.is_main)
    log.info("train: %d used, %d skipped; val: %d used, %d skipped; vocabulary %d symbols",
             len(tr.used), len(tr.skipped), len(va.used), len(va.skipped), tokenizer.vocab_size)

    if source is None:
        model = ckpt.model if ckpt else build_model(cfg, tokenizer.vocab_size)
    model.to(d.device)
    optimizer = make_optimizer(cfg, model)
    state = TrainState()
    if ckpt is not None and ckpt.train_state:
        optimizer.load_state_dict(ckpt.train_state["optimizer"])
        state = TrainState(**ckpt.train_state["state"])
        torch.set_rng_state(ckpt.train_state["torch_rng"])
    ddp_model = model
    if d.enabled:
        ids = [d.device.index] if d.device.type == "cuda" else None
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    noises = None  # augment.noise_prob > 0 without a noise_dir: generated white/pink noise
    if cfg.augment.noise_dir and cfg.augment.noise_prob > 0:
        noises = load_noises(cfg.augment.noise_dir, cfg.features.sample_rate)
        log.info("noise augmentation: %d files from %s", len(noises), cfg.augment.noise_dir)
    train_ds = SpeechDataset(tr.used, pipeline, tokenizer, cfg.augment, cfg.train.seed,
                             waves=tr.waves, noises=noises, feature_cache=feature_cache(cfg, tr))
    val_ds = SpeechDataset(va.used, pipeline, tokenizer, None, waves=va.waves)
    sampler = BucketBatchSampler([u.duration for u in tr.used], cfg.train.batch_size,
                                 cfg.train.batch_seconds, True, cfg.train.sort_first_epoch,
                                 cfg.train.seed, d.world, d.rank)
    val_sampler = BucketBatchSampler([u.duration for u in va.used], None, 200.0, False, False,
                                     num_replicas=d.world, rank=d.rank)
    run = Run(run_dir, cfg, tokenizer, model, state, len(sampler), d)
    cbs = [as_callback(cb) for cb in list(callbacks or []) + default_callbacks(cfg, run_dir,
                                                                                  d.is_main)]
    if cfg.train.freeze_encoder_epochs > 0:
        cbs.insert(0, EncoderFreeze(cfg.train.freeze_encoder_epochs))
    if follows_load(cfg, d):
        cbs.append(ThreadFollower(torch.get_num_threads()))
    return Setup(run, ddp_model, optimizer, stats, train_ds, sampler,
                 make_loader(train_ds, sampler, cfg), make_loader(val_ds, val_sampler, cfg), cbs,
                 notes)


def feature_cache(cfg: Config, tr: ScanResult) -> FeatureCache | None:
    """The training log-mel cache, holding already the 1.0x variants the CMVN scan computed."""
    if not feature_cache_on(cfg):
        return None
    t = cfg.train
    cache = FeatureCache(cfg.features, tr.used, t.feature_cache_mb, t.feature_cache_dir)
    for i, u in enumerate(tr.used):
        if u.id in tr.feats:
            cache.put(i, 1.0, tr.feats.pop(u.id))
    tr.feats.clear()  # what did not fit is not held twice
    return cache


def feature_cache_on(cfg: Config) -> bool:
    return bool(cfg.train.feature_cache_mb or cfg.train.feature_cache_dir)


def run_epoch(s: Setup, progress, deadline: float, t_start: float, budget_s: float | None
              ) -> tuple[EpochMetrics, list, bool]:
    """Train one epoch, validate, let callbacks judge; returns (metrics, val rows, out of time)."""
    run, state = s.run, s.run.state
    s.sampler.set_epoch(state.epoch)
    s.train_ds.set_epoch(state.epoch)
    progress.start_epoch(state.epoch + 1)
    t0 = time.time()
    train_loss, nonfinite, audio_s, out_of_time = train_epoch(
        run, s.ddp_model, s.train_loader, s.optimizer, s.callbacks, progress, deadline, t_start,
        budget_s)
    train_time = time.time() - t0
    val_loss, cer, wer, emissions, rows = validate(run, s.val_loader)
    state.epoch += 1
    state.elapsed_s += time.time() - t0
    m = EpochMetrics(state.epoch, state.step, train_loss, val_loss, cer, wer,
                     emissions.blank_ratio, emissions.all_blank_utts,
                     s.optimizer.param_groups[0]["lr"], round(state.elapsed_s, 2),
                     emissions.mean_blank_prob, emissions.mean_max_nonblank_prob,
                     emissions.distinct_tokens, nonfinite, audio_s / max(train_time, 1e-9),
                     torch.get_num_threads())
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
    run, state = s.run, s.run.state
    if d.is_main:
        for note in s.notes:  # --init-from: what was kept and what re-initialized
            console.print(f"fine-tuning: {note}", highlight=False, soft_wrap=True) \
                if console is not None else print(f"fine-tuning: {note}", file=sys.stderr)
    for cb in s.callbacks:
        cb.on_train_start(run)

    t_start = time.time()
    budget_s = cfg.train.max_minutes * 60 if cfg.train.max_minutes else None
    deadline = t_start + budget_s if budget_s else math.inf
    metrics_list, stopped = [], "epochs"
    progress = TrainProgress(cfg.train.epochs, len(s.sampler), bar=show_progress and d.is_main,
                             console=console, quiet=not d.is_main)
    run.notify = progress.note
    first_step = state.step
    with progress:
        while state.epoch < cfg.train.epochs:
            m, rows, out_of_time = run_epoch(s, progress, deadline, t_start, budget_s)
            metrics_list.append(m)
            improved = m.val_cer < state.best_cer
            if improved:
                state.best_cer, state.best_epoch = m.val_cer, m.epoch
            if d.is_main:  # the epoch record: last.pt, best.pt, metrics (asrlab.run_folder)
                save_run_checkpoints(run, s.optimizer, s.stats, m, improved)
                write_epoch(run_dir, m, rows)
                log.info("epoch %d: %s", m.epoch, json.dumps(asdict(m)))
            progress.end_epoch(m)
            if budget_s and len(metrics_list) == 1 and d.is_main:  # what to expect, once
                forecast = budget_forecast(budget_s, time.time() - t_start,
                                           state.step - first_step, run.steps_per_epoch)
                log.info(forecast)
                progress.note(forecast, source="budget")
            if out_of_time:
                stopped = f"time budget ({cfg.train.max_minutes} min)"
                break
            if m.epoch - state.best_epoch >= cfg.train.early_stop_patience:
                stopped = f"early stopping ({cfg.train.early_stop_patience} epochs without a better val CER)"
                break
    for cb in s.callbacks:
        cb.on_train_end(run)
    log.info("stopped: %s; best val CER %.4f at epoch %d", stopped, state.best_cer, state.best_epoch)
    distributed.shutdown(d)
    return TrainResult(run_dir, state.best_cer, state.best_epoch, state.epoch, stopped, metrics_list)


# Updates the default recipe needed to reach val CER 0.10 on the default corpus (`asrlab synth`:
# three engines, 3,333 training utterances; bench/time_to_cer.py, seed 0: epoch 18 of 270
# updates; docs/benchmarks.md). Updates, not seconds, so it holds on any machine; only the time
# per update differs. (The espeak-ng-only corpus of 1,111 needed ~1,650.)
REFERENCE_UPDATES_TO_CER_010 = 4860


def budget_forecast(budget_s: float, elapsed_s: float, updates: int, updates_per_epoch: int) -> str:
    """After the first epoch: how far the time budget will get on this machine."""
    rate = updates / max(elapsed_s, 1e-9)  # updates per second, validation included
    total = updates + rate * max(0.0, budget_s - elapsed_s)
    text = (f"this machine: {elapsed_s:.0f} s for the first epoch ({updates} updates); the "
            f"{budget_s / 60:g}-minute budget will reach about {total:,.0f} updates "
            f"({total / max(1, updates_per_epoch):.0f} epochs)")
    ref = REFERENCE_UPDATES_TO_CER_010
    if total >= ref:
        return (f"{text}. The default recipe reached val CER 0.10 after about {ref:,} updates on "
                f"the default corpus: minute {ref / rate / 60:.0f} here.")
    return (f"{text}, fewer than the ~{ref:,} the default recipe needed to reach val CER 0.10 on "
            f"the default corpus: expect a higher CER, or give --max-minutes "
            f"{math.ceil(ref / rate / 60)}.")


def default_callbacks(cfg: Config, run_dir: Path, is_main: bool = True) -> list:
    """The doctor's monitor always; TensorBoard when enabled and installed."""
    from asrlab.doctor.monitor import TrainingMonitor

    cbs: list = [TrainingMonitor()]
    if cfg.train.tensorboard and is_main:
        try:
            from asrlab.tensorboard import TensorBoardCallback

            cbs.append(TensorBoardCallback(run_dir / "tb"))
        except ImportError as e:  # tensorboard not installed: say so once, train anyway
            log.warning("TensorBoard disabled: %s", e)
    return cbs


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
