"""The flite driver (Debian `flite`): voices slt, awb, rms, kal16, kal (kal is 8 kHz audio); one
process per utterance."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from asrlab.synth.base import NONESPEAK_WPM, Speaker, SynthError

FLITE_VOICES = ("slt", "awb", "rms", "kal16", "kal")


def flite_voices() -> list[str]:
    """The FLITE_VOICES that `flite -lv` lists (all of them if it cannot be asked)."""
    try:
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return list(FLITE_VOICES)
    found = [v for v in FLITE_VOICES if v in listed.split()]
    return found or list(FLITE_VOICES)


def _run_program(cmd: list[str], text: str | None, wav: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf
    proc = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not wav.is_file():
        raise SynthError(f"{cmd[0]} failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}")
    samples, rate = sf.read(wav, dtype="int16", always_2d=True)
    wav.unlink()
    return samples.mean(axis=1).astype(np.int16), rate


def synthesize(text: str, speaker: Speaker, tmp: Path) -> tuple[np.ndarray, int]:
    wav = tmp / "flite.wav"
    cmd = ["flite", "-voice", speaker.voice, "--setf",
           f"duration_stretch={NONESPEAK_WPM / speaker.rate:.3f}"]
    if speaker.pitch is not None:
        cmd += ["--setf", f"int_f0_target_mean={speaker.pitch}"]
    return _run_program(cmd + ["-t", text, "-o", str(wav)], None, wav)
