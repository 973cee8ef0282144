"""Run-folder safety: one trainer per folder, no silent reuse, an epoch record that a crash
cannot leave half-written.

- `RunLock`: an exclusive `fcntl.flock` on RUN/.lock, with the holder's pid, host and start time
  written in it. A second trainer fails at once naming the holder. The kernel drops the lock
  when the process dies (even by kill -9), so a stale .lock file never blocks anyone.
- `check_reuse`: `train --out RUN` into a folder that holds a run (checkpoints, metrics or
  findings) refuses unless resuming or `overwrite` (then the old record is deleted).
- The epoch record is written in this order (asrlab.train): last.pt (atomic: temp file, fsync,
  rename, fsync of the folder; it carries the whole training state, history of every epoch's
  metrics included), then best.pt when the epoch was the best, then (averaging on) the epoch's
  kept weights in nbest/, then the metrics.jsonl line.
  A kill -9 before last.pt is renamed loses the epoch entirely (the folder is still the previous
  epoch's); a kill after it leaves everything needed to finish the record, which `repair` does
  on `--resume`: metrics.jsonl rewritten from last.pt's history, best.pt rebuilt from last.pt
  when that epoch was the best, findings from the lost part of an epoch dropped, stale .tmp
  files removed, and an average.pt of the run's last end removed (the resumed run averages
  again; asrlab.averaging mends nbest/ itself).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from contextlib import AbstractContextManager
from pathlib import Path

from asrlab.checkpoint import AVERAGE, NBEST_DIR

log = logging.getLogger("asrlab.train")


RECORD = ("last.pt", "best.pt", AVERAGE, "metrics.jsonl", "findings.jsonl")


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked; the message says why and what to do."""


class RunLock(AbstractContextManager):
    """Exclusive lock on a run folder for this process (see the module doc); a context manager
    (AbstractContextManager: `with` gives the lock itself) that releases it on exit."""

    def __init__(self, run_dir: Path):
        import fcntl

        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / ".lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = holder_of(self.path)
            os.close(self.fd)
            raise RunFolderError(
                f"{run_dir} is in use by another trainer ({holder}); wait for it to finish, "
                f"stop it, or train into another --out folder") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}).encode())
        os.fsync(self.fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = -1

    def __exit__(self, *exc) -> None:
        self.release()


def holder_of(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text() or "{}")
        return f"pid {info['pid']} on host {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown: the lock file is being written"


def holds_run(run_dir: Path) -> list[str]:
    """The files of an earlier run's record in `run_dir` (empty files do not count)."""
    return [n for n in RECORD if (run_dir / n).is_file() and (run_dir / n).stat().st_size > 0]


def check_reuse(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a fresh run over an existing one unless `overwrite` (which deletes the
    old record); a fresh run starts with empty per-epoch logs."""
    if resume:
        return
    found = holds_run(run_dir)
    if found and not overwrite:
        raise RunFolderError(
            f"{run_dir} already holds a run ({', '.join(found)}); continue it with "
            f"`asrlab train --resume {run_dir}`, start it over with --overwrite (deletes its "
            f"checkpoints, metrics and findings), or choose another --out folder")
    for name in RECORD + ("val_samples.jsonl", "doctor_trace.jsonl"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / NBEST_DIR, ignore_errors=True)  # epochs kept for averaging
    if found:  # --overwrite: the old run's TensorBoard events would mix with the new ones
        shutil.rmtree(run_dir / "tb", ignore_errors=True)
    remove_stale_tmp(run_dir)


def remove_stale_tmp(run_dir: Path) -> list[str]:
    """Temporary files a crash left half-written (the renamed files are always complete)."""
    stale = sorted(run_dir.glob("*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return [p.name for p in stale]


def no_checkpoint_message(run_dir: Path) -> str:
    return (f"{run_dir}: the run has no checkpoint yet (it stopped before the end of its first "
            f"epoch), so there is nothing to resume; start it again without --resume, with "
            f"--overwrite: asrlab train --train TRAIN --val VAL --out {run_dir} --overwrite")


def resume_checkpoint(run_dir: Path, device="cpu"):
    """last.pt of `run_dir`, after repairing the folder to agree with it."""
    from asrlab.checkpoint import load

    if not (run_dir / "last.pt").is_file():
        remove_stale_tmp(run_dir)
        raise RunFolderError(no_checkpoint_message(run_dir))
    ckpt = load(run_dir / "last.pt", device=device)
    for line in repair(run_dir, ckpt):
        log.warning("resume: %s", line)
    return ckpt


def write_text_atomically(path: Path, text: str) -> None:
    from asrlab.checkpoint import write_atomically

    write_atomically(path, lambda f: f.write(text.encode()), len(text.encode()))


def repair(run_dir: Path, ckpt) -> list[str]:
    """Make the run folder agree with last.pt (the record's first write); returns what it did."""
    done = [f"removed {name}, left half-written by a crash" for name in remove_stale_tmp(run_dir)]
    if (run_dir / AVERAGE).is_file():  # of the epochs so far: the run averages again at its end
        (run_dir / AVERAGE).unlink()
        done.append(f"removed {AVERAGE} (made when the run last ended); the resumed run "
                    f"averages its best epochs again when it ends")
    done += [f"removed {NBEST_DIR}/{name}, left half-written by a crash"
             for name in remove_stale_tmp(run_dir / NBEST_DIR)]
    state = (ckpt.train_state or {}).get("state") or {}
    history = state.get("history") or []
    last_epoch = int(ckpt.meta.get("epoch", len(history)))
    metrics = run_dir / "metrics.jsonl"
    want = "".join(json.dumps(h) + "\n" for h in history)
    have = metrics.read_text() if metrics.is_file() else ""
    if have != want:
        have_epochs = [json.loads(x).get("epoch") for x in have.splitlines() if x.strip()]
        write_text_atomically(metrics, want)
        done.append(f"metrics.jsonl rebuilt from last.pt (epochs {have_epochs} -> "
                    f"{[h.get('epoch') for h in history]})")
    best_epoch = int(state.get("best_epoch", 0))
    if best_epoch and best_epoch == last_epoch and best_meta_epoch(run_dir) != best_epoch:
        from asrlab.checkpoint import save_checkpoint

        save_checkpoint(run_dir / "best.pt", model=ckpt.model, config=ckpt.config,
                        tokenizer=ckpt.tokenizer, stats=ckpt.stats, meta=ckpt.meta)
        done.append(f"best.pt rebuilt from last.pt (epoch {best_epoch} was the best)")
    step = int(state.get("step", 0))
    for name in ("findings.jsonl", "doctor_trace.jsonl"):  # what the lost part of an epoch wrote
        path = run_dir / name
        if not path.is_file():
            continue
        lines = path.read_text().splitlines(keepends=True)
        keep = [y for y in (upto_step(x, step) for x in lines if x.strip()) if y is not None]
        if keep != lines:
            write_text_atomically(path, "".join(keep))
            done.append(f"dropped {len(lines) - len(keep)} line(s) of {name} written after the "
                        f"last checkpoint (step {step})")
    return done


def upto_step(line: str, step: int) -> str | None:
    """The line if it was written before update number `step` ran (last.pt's step: updates
    completed), else None; a line cut by the crash is dropped. Findings and validation rows
    carry the updates completed; the doctor's per-update rows (`"source": "train"`, and loss
    rows `"losses": [[update, loss], ...]`, which keep their earlier entries) carry the 0-based
    index of the update."""
    try:
        row = json.loads(line)
        at = int(row.get("step", 0))
        if at > step or (row.get("source") == "train" and at >= step):
            return None
        if isinstance(row.get("losses"), list):
            losses = [x for x in row["losses"] if int(x[0]) < step]
            if len(losses) != len(row["losses"]):
                return json.dumps({**row, "losses": losses}) + "\n" if losses else None
        return line if line.endswith("\n") else line + "\n"
    except (ValueError, AttributeError, TypeError, IndexError):
        return None


def best_meta_epoch(run_dir: Path) -> int | None:
    """The epoch best.pt was saved at; None without a readable best.pt."""
    import torch

    try:
        state = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False)
        return int(state["meta"]["epoch"])
    except Exception:  # missing, unreadable or without meta: rebuild it if we can
        return None


def append_line(path: Path, line: str) -> None:
    """Append one line and fsync it, so the line is on disk before the call returns."""
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def validation_manifest(run_dir: Path, meta: dict | None = None) -> Path | None:
    """The run's validation manifest, where it still exists: RUN/run.json's "val" (written by
    `asrlab train`), else a checkpoint meta's `val_manifest`; None when neither names a file."""
    candidates = []
    run_json = Path(run_dir) / "run.json"
    if run_json.is_file():
        try:
            candidates.append(json.loads(run_json.read_text()).get("val"))
        except (json.JSONDecodeError, AttributeError):
            pass
    candidates.append((meta or {}).get("val_manifest"))
    for value in candidates:
        if value and Path(value).is_file():
            return Path(value)
    return None
