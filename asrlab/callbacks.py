"""The training-callback base: every hook a no-op, so a callback overrides only what it needs.

    class Mine(TrainingCallback):
        def on_epoch_end(self, run, metrics, emissions):
            return []  # findings (asrlab.doctor.findings.Finding), if any

`asrlab.train` calls the hooks of `TrainingCallback` subclasses (TensorBoardCallback, the doctor's
TrainingMonitor) directly. Any other object (a user's duck-typed class with
some of the methods) is wrapped by `as_callback`, which forwards the methods it has.

The trainer's own callbacks live here too: `ThreadFollower` (threads follow the machine's load)
and `EncoderFreeze` (fine-tuning: only the output layer learns for the first N epochs).
"""

from __future__ import annotations

from typing import Any

import torch

from asrlab.runtime import ThreadGovernor


class TrainingCallback:
    def on_train_start(self, run) -> None:
        """Once, before the first step (the run folder and model exist)."""

    def on_step(self, run, step: int, log_probs, lengths, losses, batch) -> None:
        """After each forward pass: (B, T', V) log-probs, (B,) output lengths, (B,) losses."""

    def on_epoch_end(self, run, metrics, emissions) -> list | None:
        """After validation; returns findings (or None)."""
        return None

    def on_train_end(self, run) -> None:
        """Once, after the last epoch."""


_HOOKS = ("on_train_start", "on_step", "on_epoch_end", "on_train_end")


class _Forwarding(TrainingCallback):
    """A duck-typed callback's methods, the missing ones no-ops."""

    def __init__(self, target: Any):
        self.target = target
        for name in _HOOKS:
            method = getattr(target, name, None)
            if method is not None:
                setattr(self, name, method)


def as_callback(cb: Any) -> TrainingCallback:
    if isinstance(cb, TrainingCallback):
        return cb
    if all(hasattr(cb, name) for name in _HOOKS):  # a duck-typed class with every hook
        return cb
    return _Forwarding(cb)


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


def follows_load(cfg, d) -> bool:
    """Whether training attaches a ThreadFollower: no `train.threads` given, one CPU process."""
    return cfg.train.threads is None and d.device.type == "cpu" and d.world == 1


class EncoderFreeze(TrainingCallback):
    """Callback: for the first N epochs some modules do not learn: by default the whole encoder
    (`--freeze-encoder-epochs`: only the output layer learns); a pretrained encoder's trained
    blocks wait `model.pretrained.frozen_epochs` (`modules` picks them from the run). Their
    weights have requires_grad off (AdamW skips them, weight decay included) and they run in
    eval mode (dropout off, BatchNorm statistics not updated), so they stay exactly as loaded.
    Afterwards the weights that were learning before learn again (a pretrained encoder's
    frozen part stays frozen)."""

    def __init__(self, epochs: int, modules=None, what: str = "encoder",
                 rest: str = "only the output layer trains"):
        self.epochs, self.hooks, self.thawed = epochs, [], []
        self.modules = modules or (lambda run: [run.model.encoder])
        self.what, self.rest = what, rest

    def on_train_start(self, run) -> None:
        if run.state.epoch < self.epochs:
            modules = self.modules(run)
            self.thawed = [p for m in modules for p in m.parameters() if p.requires_grad]
            for p in self.thawed:
                p.requires_grad_(False)
            self.hooks = [sub.register_forward_pre_hook(self._eval)
                          for m in modules for sub in m.modules()]
            run.log.info("%s frozen for the first %d epoch(s): %s", self.what, self.epochs,
                         self.rest)

    @staticmethod
    def _eval(module, _inputs) -> None:  # returns None: the inputs pass unchanged
        module.eval()

    def on_epoch_end(self, run, metrics, emissions) -> list:
        if self.hooks and run.state.epoch >= self.epochs:
            for p in self.thawed:
                p.requires_grad_(True)
            for hook in self.hooks:
                hook.remove()
            self.hooks = []
            run.log.info("epoch %d: %s unfrozen", run.state.epoch, self.what)
        return []
