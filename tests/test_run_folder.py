"""Run-folder safety: a kill -9 at each point of the epoch record then --resume gives a
consistent folder; the lock; no silent reuse of a run folder; a full disk."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asrlab.checkpoint import CheckpointWriteError, load, save_checkpoint
from asrlab.config import Config
from asrlab.metrics import epoch_rank
from asrlab.run_folder import RunFolderError, RunLock
from asrlab.train import train

REPO = Path(__file__).resolve().parents[1]
SMALL = Config().merged({
    "augment": {"speed_perturb": [1.0], "freq_masks": 0, "time_masks": 0},
    "model": {"hidden": 24, "layers": 1, "conv_channels": 8, "dropout": 0.0},
    "train": {"epochs": 2, "max_minutes": None, "batch_size": 4, "tensorboard": False,
              "early_stop_patience": 1000, "threads": 1},
})

# Runs `train` in a child that SIGKILLs itself at one point of the epoch record of one epoch.
CRASH = r"""
import json, os, signal, sys
import torch
import asrlab.train as T
from asrlab.config import Config

point, epoch, train_m, val_m, run, cfg = sys.argv[1:]
epoch = int(epoch)
def die():
    os.kill(os.getpid(), signal.SIGKILL)
CURRENT = {"epoch": 0}  # the epoch whose record is being written
save, write = T.save_checkpoint, T.write_epoch
def patched_save(path, **kw):
    CURRENT["epoch"] = kw["meta"]["epoch"]
    if CURRENT["epoch"] == epoch:
        if point == "before_last" and path.name == "last.pt":
            die()
        if point == "during_last" and path.name == "last.pt":
            def half(obj, f):
                f.write(b"x" * 4096); f.flush(); die()
            torch.save = half
    save(path, **kw)
    if CURRENT["epoch"] == epoch and path.name == {"after_last": "last.pt",
                                                   "after_best": "best.pt"}.get(point):
        die()
def patched_write(run_dir, m, rows):
    write(run_dir, m, rows)
    if m.epoch == epoch and point == "after_metrics":
        die()
T.save_checkpoint, T.write_epoch = patched_save, patched_write
T.train(train_m, val_m, run, Config.from_dict(json.loads(cfg)), show_progress=False,
        run_info={"train": train_m, "val": val_m})
print("finished without crashing")
"""


def metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def assert_consistent(run: Path, epochs: int) -> None:
    rows = metrics(run)
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    last = load(run / "last.pt")
    assert last.meta["epoch"] == epochs
    assert last.train_state["state"]["history"] == rows
    # the lowest val CER, ties to the lower val loss; the first of equals: improvement is strict
    best_row = min(rows, key=lambda r: epoch_rank(r["val_cer"], r["val_loss"]))
    best = load(run / "best.pt")
    assert best.meta["epoch"] == best_row["epoch"] == last.train_state["state"]["best_epoch"]
    assert not list(run.glob("*.tmp"))
    trace = [json.loads(x) for x in (run / "doctor_trace.jsonl").read_text().splitlines()]
    obs = [(r["step"], r["source"]) for r in trace if r["type"] == "obs"]
    assert len(obs) == len(set(obs)), "the lost epoch's observations were kept"
    losses = [s for r in trace if r["type"] == "loss" for s, _ in r["losses"]]
    assert len(losses) == len(set(losses))


def crash(point: str, epoch: int, corpus: Path, run: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CRASH, point, str(epoch),
                           str(corpus / "train.jsonl"), str(corpus / "val.jsonl"), str(run),
                           json.dumps(SMALL.to_dict())], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("point,epoch", [("during_last", 2), ("after_last", 1), ("after_best", 1),
                                         ("after_last", 2), ("after_metrics", 2)])
def test_kill_at_each_point_of_the_epoch_record_then_resume(tiny_corpus, tmp_path, point, epoch):
    run = tmp_path / "run"
    crash(point, epoch, tiny_corpus, run)
    saved = metrics(run)
    if point == "during_last":  # the epoch is lost whole: the folder is epoch 1's
        assert list(run.glob("*.tmp")) and [r["epoch"] for r in saved] == [1]
    if (point, epoch) == ("after_last", 1):  # what used to be left: no metrics, no best.pt
        assert saved == [] and not (run / "best.pt").exists()
    if point == "after_best":
        assert saved == [] and (run / "best.pt").exists()
    train(tiny_corpus / "train.jsonl", tiny_corpus / "val.jsonl", run, SMALL.merged(
        {"train": {"epochs": 3}}), resume=True, show_progress=False)
    assert_consistent(run, 3)


@pytest.mark.slow
def test_kill_before_the_first_checkpoint_then_resume_says_what_to_do(tiny_corpus, tmp_path,
                                                                       capsys):
    from asrlab.cli import main

    run = tmp_path / "run"
    crash("before_last", 1, tiny_corpus, run)
    assert (run / "run.json").is_file() and not (run / "last.pt").exists()
    assert main(["train", "--resume", str(run)]) != 0
    err = " ".join(capsys.readouterr().err.split())
    assert "no checkpoint yet" in err and "--overwrite" in err
    train(tiny_corpus / "train.jsonl", tiny_corpus / "val.jsonl", run, SMALL.merged(
        {"train": {"epochs": 1}}), overwrite=True, show_progress=False)
    assert_consistent(run, 1)


HOLD = r"""
import sys, time
from pathlib import Path
from asrlab.run_folder import RunLock
lock = RunLock(Path(sys.argv[1]))
print("locked", flush=True)
sys.stdin.read()  # hold until the test kills us
"""


def test_a_second_trainer_fails_at_once_naming_the_holder(tmp_path):
    import socket

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError) as e:  # before reading any data: the paths are bogus
            train(tmp_path / "no.jsonl", tmp_path / "no.jsonl", run, SMALL, show_progress=False)
        assert f"pid {holder.pid}" in str(e.value) and socket.gethostname() in str(e.value)
    finally:
        holder.kill()  # SIGKILL: the kernel drops its flock; the .lock file stays behind
        holder.wait()
    assert (run / ".lock").is_file()
    with RunLock(run):  # a stale lock file does not block
        pass


def test_a_folder_holding_a_run_is_not_reused_without_resume_or_overwrite(tiny_corpus,
                                                                         tmp_path, capsys):
    from asrlab.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (run / "findings.jsonl").write_text('{"code": "X"}\n')
    (run / "run.json").write_text('{"train": "old", "val": "old"}')
    args = ["train", "--train", str(tiny_corpus / "train.jsonl"), "--val",
            str(tiny_corpus / "val.jsonl"), "--out", str(run), "--epochs", "1", "--no-progress",
            "--set", "model.hidden=24", "--set", "model.layers=1", "--set",
            "train.tensorboard=false"]
    assert main(args) == 1
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (run / "metrics.jsonl").read_text() == '{"epoch": 1}\n'  # untouched
    assert (run / "findings.jsonl").read_text() == '{"code": "X"}\n'
    assert json.loads((run / "run.json").read_text())["train"] == "old"
    assert main(args + ["--overwrite"]) == 0
    assert [r["epoch"] for r in metrics(run)] == [1]
    assert json.loads((run / "run.json").read_text())["train"] != "old"


def test_empty_training_manifest_is_named(tmp_path, capsys):
    from asrlab.cli import main

    empty = tmp_path / "train.jsonl"
    empty.write_text("")
    assert main(["train", "--train", str(empty), "--val", str(empty), "--out",
                 str(tmp_path / "run"), "--no-progress"]) == 1
    err = "".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "".join(str(empty).split()) in err and "empty" in err


def _tiny_checkpoint_args():
    from asrlab.data.tokenizer import build_tokenizer
    from asrlab.features import FeatureStats
    from asrlab.models import build_model

    cfg = SMALL
    tok = build_tokenizer(cfg.tokenizer, ["a b c"], cfg.vocab_size)
    model = build_model(cfg, tok.vocab_size)
    stats = FeatureStats(torch.zeros(cfg.features.n_mels).numpy(),
                         torch.ones(cfg.features.n_mels).numpy(), 1)
    return dict(model=model, config=cfg, tokenizer=tok, stats=stats, meta={"epoch": 1})


def test_disk_full_names_the_path_and_space_and_leaves_no_tmp(tmp_path, monkeypatch):
    kw = _tiny_checkpoint_args()
    path = save_checkpoint(tmp_path / "last.pt", **kw)
    before = path.read_bytes()

    def full(obj, f):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointWriteError) as e:
        save_checkpoint(path, **kw)
    msg = str(e.value)
    assert str(path) in msg and "disk full" in msg and "MB" in msg and "--resume" in msg
    assert e.value.errno == errno.ENOSPC
    assert not list(tmp_path.glob("*.tmp")) and path.read_bytes() == before


@pytest.mark.slow
def test_disk_full_during_training_is_one_clear_line(tiny_corpus, tmp_path, monkeypatch, capsys):
    from asrlab.cli import main

    def full(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    run = tmp_path / "run"
    rc = main(["train", "--train", str(tiny_corpus / "train.jsonl"), "--val",
               str(tiny_corpus / "val.jsonl"), "--out", str(run), "--epochs", "1",
               "--no-progress", "--set", "model.hidden=24", "--set", "model.layers=1",
               "--set", "train.tensorboard=false"])
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 1 and "disk full" in err and "Traceback" not in err
    assert not list(run.glob("*.tmp"))
