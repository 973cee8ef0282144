"""The fault zoo: copies of a small real corpus with one fault injected each.

Each helper takes a manifest (JSON Lines, paths relative to it) and writes a new manifest
(and the WAVs it changes) into `out`, so a test sees real speech with exactly one problem.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from asrlab.audio import resample


def rows(manifest: Path) -> list[dict]:
    base = manifest.parent
    out = []
    for line in manifest.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            r["audio_filepath"] = str((base / r["audio_filepath"]).resolve())
            out.append(r)
    return out


def write(path: Path, rs: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rs))
    return path


def read_wave(r: dict) -> tuple[np.ndarray, int]:
    wave, sr = sf.read(r["audio_filepath"], dtype="float32")
    return wave, sr


def replace_wave(r: dict, out: Path, wave: np.ndarray, sr: int, subtype: str = "PCM_16") -> dict:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{r['id']}.wav"
    sf.write(path, wave, sr, subtype=subtype)
    return {**r, "audio_filepath": str(path), "duration": len(wave) / sr}


def empty_transcript(manifest: Path, out: Path, i: int = 0) -> Path:
    rs = rows(manifest)
    rs[i] = {**rs[i], "text": ""}
    return write(out / manifest.name, rs)


def nan_wav(manifest: Path, out: Path, i: int = 0) -> Path:
    rs = rows(manifest)
    wave, sr = read_wave(rs[i])
    wave[len(wave) // 3: len(wave) // 3 + 50] = np.nan
    rs[i] = replace_wave(rs[i], out, wave, sr, subtype="FLOAT")  # PCM cannot hold NaN
    return write(out / manifest.name, rs)


def unreadable_wav(manifest: Path, out: Path, i: int = 0) -> Path:
    rs = rows(manifest)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{rs[i]['id']}.wav"
    path.write_bytes(b"RIFF....WAVEfmt this is not audio")
    rs[i] = {**rs[i], "audio_filepath": str(path)}
    return write(out / manifest.name, rs)


def empty_wav(manifest: Path, out: Path, i: int = 0) -> Path:
    rs = rows(manifest)
    _, sr = read_wave(rs[i])
    rs[i] = {**replace_wave(rs[i], out, np.zeros(0, np.float32), sr), "duration": rs[i]["duration"]}
    return write(out / manifest.name, rs)


def silent_wav(manifest: Path, out: Path, i: int = 0) -> Path:
    rs = rows(manifest)
    wave, sr = read_wave(rs[i])
    rs[i] = replace_wave(rs[i], out, np.zeros_like(wave), sr)
    return write(out / manifest.name, rs)


def clipped_wav(manifest: Path, out: Path, i: int = 0, gain: float = 8.0) -> Path:
    rs = rows(manifest)
    wave, sr = read_wave(rs[i])
    rs[i] = replace_wave(rs[i], out, np.clip(wave * gain / np.abs(wave).max(), -1, 1), sr)
    return write(out / manifest.name, rs)


def rate_8k(manifest: Path, out: Path, i: int = 0) -> Path:
    rs = rows(manifest)
    wave, sr = read_wave(rs[i])
    rs[i] = replace_wave(rs[i], out, resample(wave, sr, 8000), 8000)
    return write(out / manifest.name, rs)


def all_8k(manifest: Path, out: Path) -> Path:
    rs = rows(manifest)
    new = []
    for r in rs:
        wave, sr = read_wave(r)
        new.append(replace_wave(r, out, resample(wave, sr, 8000), 8000))
    return write(out / manifest.name, new)


def gain(manifest: Path, out: Path, factor: float, ids: list[int] | None = None) -> Path:
    """Scale the audio (all of it, or the rows `ids`); float WAVs so nothing clips or
    quantizes away."""
    rs = rows(manifest)
    for i in (range(len(rs)) if ids is None else ids):
        wave, sr = read_wave(rs[i])
        rs[i] = replace_wave(rs[i], out, wave * factor, sr, subtype="FLOAT")
    return write(out / manifest.name, rs)


def oov_text(manifest: Path, out: Path, i: int = 0, suffix: str = " 42 ÉTÉ!") -> Path:
    rs = rows(manifest)
    rs[i] = {**rs[i], "text": rs[i]["text"] + suffix}
    return write(out / manifest.name, rs)


def long_text(manifest: Path, out: Path, i: int = 0, times: int = 6) -> Path:
    """A transcript far longer than its audio can carry (wrong pairing)."""
    rs = rows(manifest)
    rs[i] = {**rs[i], "text": " ".join([rs[i]["text"]] * times)}
    return write(out / manifest.name, rs)


def wrong_duration(manifest: Path, out: Path, i: int = 0) -> Path:
    rs = rows(manifest)
    rs[i] = {**rs[i], "duration": rs[i]["duration"] * 3 + 1.0}
    return write(out / manifest.name, rs)


def bad_line(manifest: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / manifest.name
    write(path, rows(manifest))
    with open(path, "a") as f:
        f.write('{"audio_filepath": "x.wav", "text": "no duration"}\n')
    return path


def copy_corpus(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
