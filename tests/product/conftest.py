"""Product-test fixtures: one tiny trained model per session, its ONNX export, an LM, a server.

The model is trained on 20 utterances of two or three FSDD digits each (8 kHz recordings from
/work/shared/data/fsdd), 2-layer BiLSTM, a few epochs on one thread: it overfits or barely
learns, which is fine: these tests check mechanics (shapes, parity, timings, HTTP), not accuracy.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

FSDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd" / "recordings"
if not FSDD.is_dir():
    FSDD = Path("/work/shared/data/fsdd/recordings")
DIGITS = "zero one two three four five six seven eight nine".split()
REPO = Path(__file__).resolve().parents[2]


def fsdd_files() -> list[Path]:
    files = sorted(FSDD.glob("*.wav"))
    if len(files) < 60:
        pytest.skip(f"FSDD recordings not found in {FSDD}")
    return files


def write_digit_corpus(out: Path, n: dict[str, int], seed: int = 0) -> dict[str, Path]:
    """Utterances of 2-3 FSDD digits (one speaker each) with 0.15 s pauses; 8 kHz WAVs."""
    rng = np.random.default_rng(seed)
    files = fsdd_files()
    out.mkdir(parents=True, exist_ok=True)
    manifests = {}
    k = 0
    for split, count in n.items():
        rows = []
        for i in range(count):
            parts = [files[(k + j * 7) % len(files)] for j in range(2 + i % 2)]
            k += 13
            pause = np.zeros(1200, np.float32)
            wave = np.concatenate([np.concatenate([pause, sf.read(p, dtype="float32")[0]])
                                   for p in parts] + [pause])
            wave = wave * float(rng.uniform(0.8, 1.0))
            path = out / f"{split}_{i:03d}.wav"
            sf.write(path, wave, 8000)
            text = " ".join(DIGITS[int(p.name.split("_")[0])] for p in parts)
            rows.append({"audio_filepath": path.name, "duration": len(wave) / 8000,
                         "text": text, "id": path.stem})
        manifests[split] = out / f"{split}.jsonl"
        manifests[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifests


@pytest.fixture(scope="session")
def digit_corpus(tmp_path_factory) -> dict[str, Path]:
    return write_digit_corpus(tmp_path_factory.mktemp("digits"), {"train": 20, "val": 6})


@pytest.fixture(scope="session")
def tiny_run(digit_corpus, tmp_path_factory) -> Path:
    """A trained run folder."""
    import torch

    from asrlab.cli import main

    run = tmp_path_factory.mktemp("run") / "tiny"
    torch.set_num_threads(1)
    # validated on its own training set and without augmentation: the point is to overfit
    # quickly so that the model emits characters (CER 0 on it for seeds 0-3; ~10 s on one thread).
    # --max-minutes 0: the schedule follows the epochs, not the wall clock (under a time budget
    # the learning rate is a function of elapsed time, and the model differed from run to run)
    rc = main(["train", "--train", str(digit_corpus["train"]), "--val", str(digit_corpus["train"]),
               "--out", str(run), "--epochs", "100", "--max-minutes", "0", "--threads", "1",
               "--no-progress", "--force",
               "--batch-size", "4", "--lr", "3e-3",
               "--set", "model.hidden=48", "--set", "model.layers=2",
               "--set", "model.conv_channels=8", "--set", "train.tensorboard=false",
               "--set", "train.early_stop_patience=100", "--set", "augment.speed_perturb=[1.0]",
               "--set", "augment.freq_masks=0", "--set", "augment.time_masks=0"])
    assert rc == 0 and (run / "best.pt").is_file(), "training the tiny test model failed"
    return run


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, digit_corpus, tmp_path_factory) -> Path:
    from asrlab.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(tiny_run, out, data=digit_corpus["val"], utterances=6)
    return out


@pytest.fixture(scope="session")
def digit_lm(digit_corpus, tmp_path_factory) -> Path:
    from asrlab.decode.lm import build_lm

    return build_lm([digit_corpus["train"]], 3, tmp_path_factory.mktemp("lm") / "digits").arpa


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log


@pytest.fixture(scope="session")
def server(tiny_onnx, digit_lm, tmp_path_factory):
    """The real server (`asrlab serve`, uvicorn) in a subprocess on a free loopback port, serving
    the ONNX model with beam search + LM; limits small enough to test: 1 MB, 10 s, 8 uploads in
    flight, 2 s to send a body."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "asrlab", "serve", "--model", str(tiny_onnx), "--host",
             "127.0.0.1", "--port", str(port), "--max-mb", "1", "--max-seconds", "10",
             "--max-uploads", "8", "--body-timeout", "2",
             "--beam", "8", "--lm", str(digit_lm), "--threads", "1", "--log-level", "warning"],
            stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, log)
        yield Server(proc, url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server did not answer within {timeout} s:\n{log.read_text()}")
