"""Shared fixtures: small corpora the tests make themselves."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import asrlab  # noqa: F401  first: sets the thread environment before NumPy and torch load

import numpy as np
import pytest
import soundfile as sf
import torch

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
DIGITS = "zero one two three four five six seven eight nine".split()


@pytest.fixture(autouse=True)
def _one_thread():
    """Two cores are shared by the test process and whatever else runs: keep torch to one."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """20 train / 4 val / 4 test synthesized English utterances (espeak-ng)."""
    from asrlab.synth import synthesize_corpus

    out = tmp_path_factory.mktemp("tiny_corpus")
    synthesize_corpus(out, n_train=20, n_val=4, n_test=4, seed=3, jobs=1, progress=False)
    return out


def tiny_whisper(folder: Path, layers: int = 2, seed: int = 0) -> Path:
    """A tiny randomly initialized transformers Whisper saved to `folder`: 2 layers of width 16
    and 1,500 positions (30 s of audio, as the real ones), for runs on a pretrained encoder."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.WhisperConfig(
        vocab_size=64, num_mel_bins=80, encoder_layers=layers, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, d_model=16, encoder_ffn_dim=64,
        decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=16, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, begin_suppress_tokens=None,
        suppress_tokens=None)
    transformers.WhisperForConditionalGeneration(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def whisper_folder(tmp_path_factory) -> Path:
    return tiny_whisper(tmp_path_factory.mktemp("tiny_whisper"))


def write_tone_manifest(folder: Path, texts: list[str], sr: int = 16000) -> Path:
    """A manifest of short noise+tone WAVs (content irrelevant) for shape-level tests."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i, text in enumerate(texts):
        n = int(sr * (0.5 + 0.1 * len(text)))
        t = np.arange(n) / sr
        wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) + 0.01 * rng.standard_normal(n)
        path = folder / f"u{i}.wav"
        sf.write(path, wave.astype(np.float32), sr)
        rows.append({"audio_filepath": path.name, "duration": n / sr, "text": text, "id": f"u{i}"})
    manifest = folder / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


@contextlib.contextmanager
def busy_neighbour():
    """A busy process that is not ours: started through a parent that exits at once, so it is
    not this process's child (asrlab.runtime counts live children as this process's own work)."""
    launcher = subprocess.run(
        [sys.executable, "-c", "import subprocess, sys; print(subprocess.Popen("
         "[sys.executable, '-c', 'while True: pass'], start_new_session=True, "
         "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"],
        capture_output=True, text=True, check=True)
    pid = int(launcher.stdout)
    try:
        yield pid
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def others_during(seconds: float, spin: bool = False) -> float:
    """Cores other processes kept busy over the next `seconds` (asrlab.runtime's measure), this
    process sleeping (or spinning, to show its own work is not counted)."""
    import time

    from asrlab.runtime import others_busy_cores, read_cpu_times

    before, t0 = read_cpu_times(), time.monotonic()
    while time.monotonic() < t0 + seconds:
        if not spin:
            time.sleep(0.05)
    return others_busy_cores(before, read_cpu_times(), time.monotonic() - t0)
