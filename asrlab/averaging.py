"""Weight averaging of a run's best epochs: RUN/average.pt, the mean of the weights of the
`train.average_best` best epochs (ranked like best.pt: asrlab.metrics.epoch_rank). ESPnet's
`--keep_nbest_models` with its `valid.acc.ave` checkpoint and icefall's `--avg` do the same;
an average of neighbouring minima generalizes better than any one of them (FSDD speakers never
heard: docs/benchmarks.md).

Only the tensors that learn are kept (the optimizer's parameters and the buffers, BatchNorm's
statistics): a frozen pretrained encoder's weights are the same in every epoch. The kept
epochs live in memory on every rank (DDP keeps the ranks' weights equal, so each averages its
own copy) and, written by the main rank, in RUN/nbest/epoch_NNNN.pt, which a resumed run reads
back. At the end of training the average is validated like an epoch; average.pt is written
when its validation CER is not worse than best.pt's (the run folder then resolves to it:
asrlab.checkpoint.resolve_checkpoint), and otherwise best.pt stays the run's model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from asrlab.checkpoint import AVERAGE, NBEST_DIR, save_checkpoint, state_bytes, write_atomically
from asrlab.metrics import epoch_rank


@dataclass(frozen=True)
class AverageResult:
    """What the end of training did with the average of the best epochs."""
    epochs: tuple[int, ...]  # the averaged epochs, in order
    val_loss: float
    val_cer: float
    val_wer: float
    best_cer: float  # the best epoch's validation CER

    @property
    def kept(self) -> bool:
        """Written as average.pt: its validation CER is not worse than the best epoch's."""
        return self.val_cer <= self.best_cer

    def summary(self) -> str:
        what = (f"average of epochs {', '.join(map(str, self.epochs))}: val CER "
                f"{self.val_cer:.4f} (best epoch {self.best_cer:.4f})")
        return (f"{what}; the run's model is {AVERAGE}" if self.kept
                else f"{what}: worse, so best.pt stays the run's model")


def learned_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """State-dict names of the tensors that can change in training: the optimizer's parameters
    (trained blocks frozen for a warmup included) and every floating-point buffer."""
    learning = {id(p) for g in optimizer.param_groups for p in g["params"]}
    names = [n for n, p in model.named_parameters() if id(p) in learning]
    names += [n for n, b in model.named_buffers() if b.is_floating_point()]
    return names


def best_epochs(history: list[dict], n: int) -> list[int]:
    """The `n` best epochs of a run's history (val CER, ties to the lower val loss), best first."""
    ranked = sorted(history, key=lambda h: (*epoch_rank(h["val_cer"], h["val_loss"]), h["epoch"]))
    return [int(h["epoch"]) for h in ranked[:n]]


class EpochAverager:
    """Keeps the weights of the `n` best epochs so far; `average()` is their mean."""

    def __init__(self, run_dir: Path, n: int, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, write: bool):
        self.dir, self.n, self.model, self.write = Path(run_dir) / NBEST_DIR, n, model, write
        self.names = learned_names(model, optimizer)
        self.kept: dict[int, dict[str, torch.Tensor]] = {}

    def path(self, epoch: int) -> Path:
        return self.dir / f"epoch_{epoch:04d}.pt"

    def snapshot(self) -> dict[str, torch.Tensor]:
        state = self.model.state_dict()
        return {k: state[k].detach().to("cpu", copy=True) for k in self.names}

    def resume(self, history: list[dict]) -> list[str]:
        """A resumed run's kept epochs from RUN/nbest; the last epoch's, when a crash came
        before its file, from the model (which holds last.pt's weights when a run resumes).
        Returns what is missing, for the log; a fresh run (no history) reads nothing."""
        missing, best = [], best_epochs(history, self.n)
        if self.write:  # a crash between keeping an epoch and dropping the one it replaced
            for stale in set(self.dir.glob("epoch_*.pt")) - {self.path(e) for e in best}:
                stale.unlink(missing_ok=True)
        for epoch in best:
            problem = f"epoch {epoch} (no {self.path(epoch).name})"
            if self.path(epoch).is_file():
                try:
                    self.kept[epoch] = torch.load(self.path(epoch), map_location="cpu")
                    continue
                except Exception as e:  # noqa: BLE001  an unreadable file counts as missing
                    problem = f"epoch {epoch} ({self.path(epoch).name} unreadable: {e})"
            if epoch == history[-1]["epoch"]:
                self.kept[epoch] = self.snapshot()
                self._save(epoch)
            else:
                missing.append(problem)
        return missing

    def after_epoch(self, history: list[dict]) -> None:
        """Called once the epoch (history[-1]) is recorded: keep it if it ranks in the best n,
        drop (memory and file) the epochs that no longer do."""
        best = best_epochs(history, self.n)
        epoch = int(history[-1]["epoch"])
        if epoch in best:
            self.kept[epoch] = self.snapshot()
            self._save(epoch)
        for old in [e for e in self.kept if e not in best]:
            del self.kept[old]
            if self.write:
                self.path(old).unlink(missing_ok=True)

    def _save(self, epoch: int) -> None:
        if not self.write:
            return
        self.dir.mkdir(exist_ok=True)
        state = self.kept[epoch]
        write_atomically(self.path(epoch), lambda f: torch.save(state, f), state_bytes(state))

    def average(self) -> dict[str, torch.Tensor] | None:
        """The mean of the kept epochs' tensors (float32 sums); None with fewer than two."""
        if len(self.kept) < 2:
            return None
        states = list(self.kept.values())
        return {k: (sum(s[k].float() for s in states) / len(states)).to(states[0][k].dtype)
                for k in self.names}

    def epochs(self) -> tuple[int, ...]:
        return tuple(sorted(self.kept))

    def finish(self, run, stats, validate: Callable[[], tuple[float, float, float]]
               ) -> AverageResult | None:
        """Validate the mean of the kept epochs (`validate()` -> val loss, CER, WER of the model
        as it is); (main rank) write it as average.pt when its val CER is not worse than the best
        epoch's (an older average.pt never reaches here: a fresh run's folder is cleared and a
        resumed run's repaired first, asrlab.run_folder). `run`: asrlab.train_setup.Run. The
        model is left with the weights it ended training with. None with fewer than two kept
        epochs."""
        weights = self.average()
        if weights is None:
            return None
        ended_with = self.snapshot()
        self.model.load_state_dict(weights, strict=False)  # the learned tensors only
        val_loss, cer, wer = validate()
        state = run.state
        result = AverageResult(self.epochs(), val_loss, cer, wer, state.best_cer)
        if self.write and result.kept:
            meta = {"epoch": state.epoch, "step": state.step, "val_cer": cer, "val_wer": wer,
                    "val_loss": val_loss, "averaged_epochs": list(result.epochs)}
            save_checkpoint(run.dir / AVERAGE, model=self.model, config=run.config,
                            tokenizer=run.tokenizer, stats=stats, meta=meta)
        self.model.load_state_dict(ended_with, strict=False)
        return result
