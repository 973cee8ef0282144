"""The training progress display: a rich progress bar with loss, CER and blank ratio, and the
doctor's notes printed above it. Falls back to plain log lines when not on a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class TrainProgress:
    def __init__(self, epochs: int, steps_per_epoch: int, bar: bool = True, console=None,
                 quiet: bool = False):
        self.epochs, self.steps = epochs, steps_per_epoch
        self.console = console or Console(stderr=True)
        self.enabled = not quiet  # epoch lines and doctor notes
        self.live = bar and self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.3f}"),
            TextColumn("lr {task.fields[lr]:.2e}"), TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(), console=self.console, disable=not self.live)
        self.task = None
        self.last = ""

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def start_epoch(self, epoch: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("train", total=self.steps, epoch=epoch,
                                           epochs=self.epochs, loss=0.0, lr=0.0, last=self.last)

    def advance(self, loss: float, lr: float) -> None:
        self.progress.update(self.task, advance=1, loss=loss, lr=lr)

    def note(self, text: str, source: str = "doctor") -> None:
        if self.enabled:
            self.console.print(f"[yellow]{source}:[/yellow] {text}", soft_wrap=True)

    def end_epoch(self, m) -> None:
        self.last = f"val CER {m.val_cer:.3f} blank {m.blank_ratio:.2f}"
        if self.enabled:
            self.console.print(
                f"epoch {m.epoch:3d}  step {m.step:6d}  train_loss {m.train_loss:.3f}  "
                f"val_loss {m.val_loss:.3f}  val_CER {m.val_cer:.4f}  val_WER {m.val_wer:.4f}  "
                f"blank {m.blank_ratio:.3f}  empty {m.empty_hyps}  lr {m.lr:.2e}  "
                f"{m.elapsed_s:.0f}s  {m.audio_seconds_per_s:.0f} audio-s/s",
                highlight=False, soft_wrap=True)
