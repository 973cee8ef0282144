"""The festival driver (Debian `festival` + festvox voices): kal_diphone, ked_diphone (diphone),
cmu_us_slt_arctic_hts (HMM). One `festival --batch` process says a batch of utterances: its
start-up costs more than a sentence."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from asrlab.synth.base import NONESPEAK_WPM, Speaker, SynthError

def festival_voices() -> list[str]:
    """Festival voices installed under /usr/share/festival/voices (e.g. kal_diphone)."""
    root = Path("/usr/share/festival/voices")
    return sorted(p.name for p in root.glob("*/*") if p.is_dir()) if root.is_dir() else []


def commands(text: str, speaker: Speaker, wav: Path) -> str:
    """Festival (Scheme) lines that say `text` with `speaker` into `wav`. Diphone voices take
    their F0 target from int_lr_params (after the voice is selected, which resets it)."""
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    stretch = NONESPEAK_WPM / speaker.rate
    lines = [f"(voice_{speaker.voice})", f"(Parameter.set 'Duration_Stretch {stretch:.3f})"]
    if speaker.voice.endswith("_hts"):  # HTS voices ignore Duration_Stretch; their engine's
        # speed ("-r") is its inverse (selecting the voice resets hts_engine_params)
        lines.append(f'(set! hts_engine_params (append hts_engine_params '
                     f'(list (list "-r" {1 / stretch:.3f}))))')
    if speaker.pitch is not None:
        lines.append(f"(set! int_lr_params '((target_f0_mean {speaker.pitch}) (target_f0_std "
                     f"{max(8, speaker.pitch // 8)}) (model_f0_mean 170) (model_f0_std 34)))")
    lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{wav}" \'riff)')
    return "\n".join(lines) + "\n"


def synthesize_batch(items: list[tuple[str, Speaker]]) -> list[tuple[np.ndarray, int] | str]:
    """Say every (text, speaker) with one festival process: (samples, rate) or an error each."""
    import soundfile as sf
    with tempfile.TemporaryDirectory(prefix="asrlab-festival-") as scratch:
        wavs = [Path(scratch) / f"{i}.wav" for i in range(len(items))]
        script = Path(scratch) / "say.scm"
        script.write_text("".join(commands(t, sp, w) for (t, sp), w in zip(items, wavs)),
                          encoding="utf-8")
        proc = subprocess.run(["festival", "--batch", str(script)], capture_output=True,
                              text=True, timeout=60 + 10 * len(items))
        out: list[tuple[np.ndarray, int] | str] = []
        for wav in wavs:
            if wav.is_file():
                samples, rate = sf.read(wav, dtype="int16", always_2d=True)
                out.append((samples.mean(axis=1).astype(np.int16), rate))
            else:
                out.append(f"festival failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-300:]}")
        return out


def synthesize(text: str, speaker: Speaker) -> tuple[np.ndarray, int]:
    result = synthesize_batch([(text, speaker)])[0]
    if isinstance(result, str):
        raise SynthError(result)
    return result
