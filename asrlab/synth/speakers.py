"""Speakers: voices of the engines with fixed settings (voice, variant, rate, pitch), drawn from
the seed."""

from __future__ import annotations

import random
from typing import Iterator, Sequence

from asrlab.synth.base import Speaker
from asrlab.synth.engines import check_engine, engine_voices
from asrlab.synth.piper import PIPER_SHIFT_RANGE

RATE_RANGE = (110, 170)  # words per minute: espeak runs fast; this gives ~15 chars/s, like read speech
PITCH_RANGE = (30, 75)  # espeak pitch, 0-100 (50 = the voice's normal pitch)
F0_RANGE = (0.8, 1.25)  # flite/festival speakers: mean F0 as a factor of the voice's own
# Mean F0 (Hz) of each flite/festival voice as shipped, measured; speakers scale it by F0_RANGE.
# Festival's HTS voice takes no F0 target (pitch is then None).
VOICE_F0 = {"slt": 170, "awb": 110, "rms": 100, "kal16": 105, "kal": 105,
            "kal_diphone": 105, "ked_diphone": 105}


def make_speakers(n: int, seed: int, engines: Sequence[str] = ("espeak",)) -> list[Speaker]:
    """n distinct speakers, dealt round-robin over engines, deterministic for (n, seed, engines).

    Voice/variant pairs are spread evenly (every espeak language voice gets its share) and
    only repeat once every pair has been used; rate and pitch are drawn uniformly.
    """
    if n < 1:
        raise ValueError(f"need at least one speaker, got {n}")
    for engine in engines:
        check_engine(engine)
    # keyed "synth-2": the draw is unchanged since then, so espeak-only corpora keep their
    # speakers (the doctor's tests rely on that corpus's training dynamics)
    rng = random.Random(f"asrlab-speakers/synth-2/{seed}")
    pools = {e: _voice_cycle(engine_voices(e), rng) for e in engines}
    speakers: list[Speaker] = []
    seen: set[str] = set()
    for _ in range(100 * n):
        if len(speakers) == n:
            return speakers
        engine = engines[len(speakers) % len(engines)]
        voice, variant = next(pools[engine])
        if engine == "espeak":
            pitch = rng.randint(*PITCH_RANGE)
        elif engine == "piper":
            pitch = round(100 * rng.uniform(*PIPER_SHIFT_RANGE))
        else:
            pitch = round(VOICE_F0[voice] * rng.uniform(*F0_RANGE)) if voice in VOICE_F0 else None
        speaker = Speaker(engine, voice, variant, rng.randint(*RATE_RANGE), pitch)
        if speaker.id not in seen:
            seen.add(speaker.id)
            speakers.append(speaker)
    if len(speakers) < n:
        raise ValueError(f"cannot make {n} distinct speakers from engines {', '.join(engines)}; "
                         f"ask for fewer")
    return speakers


def _voice_cycle(pairs: list[tuple[str, str]], rng: random.Random) -> Iterator[tuple[str, str]]:
    """Endless shuffled passes over (voice, variant) pairs, interleaving the voices."""
    while True:
        by_voice: dict[str, list[tuple[str, str]]] = {}
        for pair in rng.sample(pairs, len(pairs)):
            by_voice.setdefault(pair[0], []).append(pair)
        columns = list(by_voice.values())
        for i in range(max(len(c) for c in columns)):
            yield from (c[i] for c in columns if i < len(c))
