"""TensorBoard logging as a training callback: per-step loss and lr, per-epoch metrics,
and the doctor's findings as text."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter  # ImportError when tensorboard is missing

from asrlab.callbacks import TrainingCallback


class TensorBoardCallback(TrainingCallback):
    def __init__(self, log_dir: Path, every: int = 10):
        self.log_dir, self.every = Path(log_dir), every
        self.writer: SummaryWriter | None = None
        self.written = 0  # findings already sent

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
        self.write_findings(run, m.step)
        self.writer.flush()
        return []

    def write_findings(self, run, step: int) -> None:
        """The doctor's findings so far (the monitor runs before this callback), as text."""
        for f in run.findings[self.written:]:
            self.writer.add_text(f"doctor/{f.code}", f"**{f.severity}**: {f.message}\n\n"
                                 f"fix: {f.remedy}", step)
        self.written = len(run.findings)

    def on_train_end(self, run) -> None:
        self.write_findings(run, run.state.step)
        self.writer.close()
