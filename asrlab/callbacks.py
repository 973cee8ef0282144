"""The training-callback base: every hook a no-op, so a callback overrides only what it needs.

    class Mine(TrainingCallback):
        def on_epoch_end(self, run, metrics, emissions):
            return []  # findings (asrlab.doctor.findings.Finding), if any

`asrlab.train` calls the hooks of `TrainingCallback` subclasses (TensorBoardCallback, the doctor's
TrainingMonitor) directly. Any other object (a user's duck-typed class with
some of the methods) is wrapped by `as_callback`, which forwards the methods it has.
"""

from __future__ import annotations

from typing import Any


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
