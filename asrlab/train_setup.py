"""Everything the training loop (asrlab.train) needs, built once: `build_setup` runs the
pre-flight (asrlab.preflight: the data scan, the doctor's checks and their refusals), records
the run's config and data (RUN/config.yaml, skipped.jsonl, data.json), and builds the model
(fresh, resumed, or fine-tuned: asrlab.finetune), the optimizer, the datasets and batch
samplers, and the callbacks. `Run` and `TrainState` are what the loop advances and callbacks
see.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asrlab import distributed
from asrlab.averaging import EpochAverager
from asrlab.callbacks import (EncoderFreeze, ThreadFollower, TrainingCallback, as_callback,
                              follows_load)
from asrlab.checkpoint import Checkpoint
from asrlab.config import Config
from asrlab.data.augment import load_noises
from asrlab.data.dataset import SpeechDataset, collate
from asrlab.data.featcache import FeatureCache
from asrlab.data.sampler import BucketBatchSampler
from asrlab.data.manifest import write_skipped
from asrlab.data.scan import ScanResult, write_counts
from asrlab.data.tokenizer import Tokenizer
from asrlab.doctor.findings import Finding
from asrlab.features import FeaturePipeline
from asrlab.finetune import init_model
from asrlab.encoder_cache import EncoderStates, states_namespace
from asrlab.frames import input_rate
from asrlab.models import build_model
from asrlab.models.pretrained import FromStates, load_encoder_weights
from asrlab.pretrained import resolve_encoder
from asrlab.preflight import DataScan, TrainingRefused, precheck, require_usable, scan_data
from asrlab.run_folder import check_reuse

log = logging.getLogger("asrlab.train")


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0
    best_cer: float = math.inf
    best_loss: float = math.inf  # the best epoch's val loss: ties of val CER (metrics.epoch_rank)
    best_epoch: int = 0
    elapsed_s: float = 0.0
    lr_scale: float = 1.0  # plateau schedule's decay so far
    plateau_best: float = math.inf
    plateau_bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)


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
    # What batches hold and what runs them: features at the input rate through `model`, or a
    # frozen encoder's cached states at its rate through FromStates(model) (encoder_cache).
    forward: torch.nn.Module | None = None
    batch_rate: float = 0.0  # frames of batch.feats per second of audio

    def __post_init__(self):
        self.forward = self.forward or self.model
        self.batch_rate = self.batch_rate or input_rate(self.config.features)

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


def setup_logging(run_dir: Path) -> None:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.handlers = [h for h in log.handlers if not isinstance(h, logging.FileHandler)] + [handler]
    log.setLevel(logging.INFO)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(ds: SpeechDataset, sampler: BucketBatchSampler, cfg: Config):
    return torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate,
                                       num_workers=cfg.train.num_workers)


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW (or Adam) over the weights that learn. A pretrained encoder's trained blocks are a
    group of their own at model.pretrained.encoder_lr_scale of the rate (each group's
    `lr_scale`: the loop sets lr x lr_scale); its frozen part is left out."""
    t = cfg.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    encoder = {id(p) for p in getattr(model.encoder, "trained_parameters", list)()}
    frozen = {id(p) for p in getattr(model.encoder, "frozen_parameters", list)()}
    groups = [{"params": [p for p in model.parameters()
                          if id(p) not in encoder and id(p) not in frozen], "lr_scale": 1.0}]
    if encoder:
        groups.append({"params": [p for p in model.parameters() if id(p) in encoder],
                       "lr_scale": cfg.model.pretrained.encoder_lr_scale})
    return cls(groups, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)


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
    started: float = field(default_factory=time.time)  # when the budget starts: before encoding
    averager: EpochAverager | None = None  # train.average_best > 1 (asrlab.averaging)


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


def build_setup(run_dir: Path, cfg: Config, d: distributed.Dist, train_path, val_path,
                ckpt: Checkpoint | None, force: bool, callbacks: list | None) -> Setup:
    """The pre-flight (asrlab.preflight: scan, checks), then the model, optimizer, data and
    callbacks. `ckpt`: the checkpoint a resumed run continues from."""
    data = scan_data(cfg, train_path, val_path, resume=ckpt, skip_bad_lines=force,
                     keep_feats=feature_cache_on(cfg), device=d.device)
    model, notes = None, []
    if data.source is not None:  # built before the checks, which draw from the same RNG
        model, note = init_model(cfg, data.source, data.tokenizer)
        notes = [note] + data.notes
        for note in notes:
            log.info("%s", note)
    check_run(run_dir, cfg, d, data, train_path, val_path, force)
    if model is None:
        model = ckpt.model if ckpt else new_model(cfg, data.tokenizer.vocab_size)
    model.to(d.device)
    optimizer, state = start_optimizer(cfg, model, ckpt)
    started = time.time()
    states = encoder_states(cfg, model, data, d)
    train_ds, sampler, train_loader, val_loader = make_data(cfg, data, d, states)
    forward = FromStates(model) if states else model
    run = Run(run_dir, cfg, data.tokenizer, model, state, len(sampler), d, forward=forward,
              batch_rate=states[0].rate if states else 0.0)
    return Setup(run, wrap_ddp(forward, d), optimizer, data.stats, train_ds, sampler,
                 train_loader, val_loader, make_callbacks(cfg, run_dir, d, callbacks), notes,
                 started, make_averager(cfg, run_dir, model, optimizer, state, d))


def make_averager(cfg: Config, run_dir: Path, model, optimizer, state: TrainState,
                  d: distributed.Dist) -> EpochAverager | None:
    """train.average_best > 1: the best epochs' weights kept (a resumed run's read back)."""
    if cfg.train.average_best <= 1:
        return None
    averager = EpochAverager(run_dir, cfg.train.average_best, model, optimizer, write=d.is_main)
    for line in averager.resume(state.history):
        log.warning("resume: averaging without %s", line)
    return averager


def new_model(cfg: Config, vocab_size: int) -> torch.nn.Module:
    """A fresh model; a pretrained encoder's weights from its source (its sha256 checked
    against the one the config recorded)."""
    model = build_model(cfg, vocab_size)
    if cfg.model.name == "pretrained":
        source = resolve_encoder(cfg.model.pretrained.source)
        if cfg.model.pretrained.sha256 and source.sha256 != cfg.model.pretrained.sha256:
            raise TrainingRefused(
                f"--encoder {cfg.model.pretrained.source}: its weights changed since the config "
                f"was made (sha256 {source.sha256[:12]}..., the config says "
                f"{cfg.model.pretrained.sha256[:12]}...): drop model.pretrained.sha256 and "
                f"model.pretrained.arch from the config to take the new weights")
        load_encoder_weights(model, source)
        log.info("encoder %s (%s, sha256 %s): weights loaded", source.name, source.kind,
                 source.sha256[:12])
    return model


def encoder_states(cfg: Config, model: torch.nn.Module, data: DataScan, d: distributed.Dist
                   ) -> tuple[EncoderStates, EncoderStates] | None:
    """The frozen encoder's states of both splits, computed once (asrlab.encoder_cache), when
    the config caches them (model.pretrained.caches_states); None otherwise."""
    if cfg.model.name != "pretrained" or not cfg.model.pretrained.caches_states:
        return None
    pipeline, t = FeaturePipeline(cfg.features, data.stats), cfg.train
    namespace = states_namespace(model.encoder, pipeline, cfg.model.pretrained.sha256)
    out = []
    for scan, speeds in ((data.train, cfg.augment.speed_perturb), (data.val, (1.0,))):
        cache = FeatureCache(cfg.features, scan.used, t.feature_cache_mb, t.feature_cache_dir,
                             namespace=f"{namespace}-{scan.split}")
        states = EncoderStates(model.encoder, pipeline, scan.used, scan.waves, cache, d.device)
        report = states.fill(sorted(set(speeds)))
        log.info("encoder states, %s: %d utterance variants (%.0f s of audio) in %.1f s "
                 "(%.0f x real time), %.0f MB kept in memory", scan.split, report.variants,
                 report.audio_seconds, report.seconds,
                 report.audio_seconds / max(report.seconds, 1e-9), report.megabytes)
        out.append(states)
    return out[0], out[1]


def show_notes(notes: list[str], console) -> None:
    """--init-from: what was kept and what re-initialized, on the console."""
    for note in notes:
        if console is not None:
            console.print(f"fine-tuning: {note}", highlight=False, soft_wrap=True)
        else:
            print(f"fine-tuning: {note}", file=sys.stderr)


def check_run(run_dir: Path, cfg: Config, d: distributed.Dist, data: DataScan, train_path,
              val_path, force: bool) -> None:
    """The run's config and data records (rank 0), then the pre-flight's refusals."""
    tr, va = data.train, data.val
    if d.is_main:
        cfg.to_yaml(run_dir / "config.yaml")
        write_skipped(run_dir / "skipped.jsonl", tr.skipped + va.skipped)
        write_counts(run_dir / "data.json", [tr, va], cfg.features.sample_rate)
    require_usable(data, train_path, val_path, run_dir)
    precheck(run_dir, cfg, data, force, write=d.is_main)
    log.info("train: %d used, %d skipped; val: %d used, %d skipped; vocabulary %d symbols",
             len(tr.used), len(tr.skipped), len(va.used), len(va.skipped),
             data.tokenizer.vocab_size)


def start_optimizer(cfg: Config, model: torch.nn.Module, ckpt: Checkpoint | None
                    ) -> tuple[torch.optim.Optimizer, TrainState]:
    """A fresh optimizer and state, or a resumed run's (its RNG too)."""
    optimizer = make_optimizer(cfg, model)
    state = TrainState()
    if ckpt is not None and ckpt.train_state:
        optimizer.load_state_dict(ckpt.train_state["optimizer"])
        state = TrainState(**ckpt.train_state["state"])
        torch.set_rng_state(ckpt.train_state["torch_rng"])
    return optimizer, state


def wrap_ddp(model: torch.nn.Module, d: distributed.Dist) -> torch.nn.Module:
    if not d.enabled:
        return model
    ids = [d.device.index] if d.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def make_data(cfg: Config, data: DataScan, d: distributed.Dist,
              states: tuple[EncoderStates, EncoderStates] | None = None):
    """(training dataset, its batch sampler, training loader, validation loader); with a
    frozen encoder's `states` (train, val), their items are those states."""
    tr, va, tokenizer = data.train, data.val, data.tokenizer
    pipeline = FeaturePipeline(cfg.features, data.stats)
    noises = None  # augment.noise_prob > 0 without a noise_dir: generated white/pink noise
    if cfg.augment.noise_dir and cfg.augment.noise_prob > 0:
        noises = load_noises(cfg.augment.noise_dir, cfg.features.sample_rate)
        log.info("noise augmentation: %d files from %s", len(noises), cfg.augment.noise_dir)
    train_states, val_states = states or (None, None)
    train_ds = SpeechDataset(tr.used, pipeline, tokenizer, cfg.augment, cfg.train.seed,
                             waves=tr.waves, noises=noises,
                             feature_cache=None if states else feature_cache(cfg, tr),
                             states=train_states)
    val_ds = SpeechDataset(va.used, pipeline, tokenizer, None, waves=va.waves, states=val_states)
    sampler = BucketBatchSampler([u.duration for u in tr.used], cfg.train.batch_size,
                                 cfg.train.batch_seconds, True, cfg.train.sort_first_epoch,
                                 cfg.train.seed, d.world, d.rank)
    val_sampler = BucketBatchSampler([u.duration for u in va.used], None, 200.0, False, False,
                                     num_replicas=d.world, rank=d.rank)
    return (train_ds, sampler, make_loader(train_ds, sampler, cfg),
            make_loader(val_ds, val_sampler, cfg))


def make_callbacks(cfg: Config, run_dir: Path, d: distributed.Dist, callbacks: list | None
                   ) -> list[TrainingCallback]:
    """The user's, then the defaults (default_callbacks); EncoderFreeze first, ThreadFollower
    last when they apply."""
    cbs = [as_callback(cb) for cb in list(callbacks or []) + default_callbacks(cfg, run_dir,
                                                                                  d.is_main)]
    if cfg.train.freeze_encoder_epochs > 0:
        cbs.insert(0, EncoderFreeze(cfg.train.freeze_encoder_epochs))
    p = cfg.model.pretrained
    if cfg.model.name == "pretrained" and p.layers_trained and p.frozen_epochs > 0:
        cbs.insert(0, EncoderFreeze(p.frozen_epochs, lambda run: run.model.encoder.trained_blocks(),
                                    "the pretrained encoder's trained layers",
                                    "the layer weights and the downstream train"))
    if follows_load(cfg, d):
        cbs.append(ThreadFollower(torch.get_num_threads()))
    return cbs


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

