"""Training monitor (to be completed by the doctor work)."""

from __future__ import annotations


class TrainingMonitor:
    def on_epoch_end(self, run, metrics, emissions):
        return []
