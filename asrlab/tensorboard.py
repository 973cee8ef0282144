"""TensorBoard logging as a training callback: per-step loss and lr, per-epoch metrics,
and the doctor's findings as text."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter  # ImportError when tensorboard is missing


class TensorBoardCallback:
    def __init__(self, log_dir: Path, every: int = 10):
        self.log_dir, self.every = Path(log_dir), every
        self.writer: SummaryWriter | None = None

    def on_train_start(self, run) -> None:
        self.writer = SummaryWriter(str(self.log_dir))

    def on_step(self, run, step, log_probs, lengths, losses, batch) -> None:
        if step % self.every == 0:
            finite = losses[losses.isfinite()]
            if finite.numel():
                self.writer.add_scalar("train/loss_step", float(finite.mean()), step)

    def on_epoch_end(self, run, m, emissions):
        for k, v in asdict(m).items():
            if k not in ("epoch", "step"):
                self.writer.add_scalar(f"epoch/{k}", v, m.step)
        self.writer.flush()
        return []

    def on_train_end(self, run) -> None:
        if run.findings:
            self.writer.add_text("doctor/findings", "\n\n".join(
                f"**{f.code}** ({f.severity}): {f.message}" for f in run.findings))
        self.writer.close()
