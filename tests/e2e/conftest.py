"""End-to-end fixtures: one small spoken corpus (espeak-ng voices through asrlab's own synth
helpers), written in three real corpus layouts by the tests themselves:

- LibriSpeech: SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac + SPEAKER-CHAPTER.trans.txt, UPPERCASE
  transcripts with apostrophes ("DON'T");
- Common Voice: a TSV (path, sentence, client_id) with MP3 clips in clips/ (WAV when this
  libsndfile cannot write MP3), transcripts with punctuation, digits, mixed case and accents;
- Kaldi: wav.scp + text + utt2spk + segments (two utterances per recording).

Sentences are 2-4 words from a closed vocabulary, so a word LM built from the training
transcripts helps a half-trained acoustic model (the tune-lm test).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16000
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
         "don't", "it's")
N_TRAIN, N_VAL, N_SPEAKERS = 40, 10, 4


@dataclass(frozen=True)
class Spoken:
    """One utterance: its words (lowercase, as the model should read them), voice, audio."""
    id: str
    words: tuple[str, ...]
    speaker: int
    wave: np.ndarray

    @property
    def text(self) -> str:
        return " ".join(self.words)


def sentences(n: int, rng: random.Random, taken: set) -> list[tuple[str, ...]]:
    out = []
    while len(out) < n:
        words = tuple(rng.choice(WORDS) for _ in range(rng.randint(2, 4)))
        if words not in taken:
            taken.add(words)
            out.append(words)
    return out


@pytest.fixture(scope="session")
def spoken() -> dict[str, list[Spoken]]:
    """{"train": [...], "val": [...]}: distinct sentences, every voice in both splits."""
    synth = pytest.importorskip("asrlab.synth")
    try:
        voices = synth.make_speakers(N_SPEAKERS, seed=3)
    except synth.EngineUnavailable as e:
        pytest.skip(f"espeak-ng is not available: {e}")
    rng, taken = random.Random(14), set()
    out = {}
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        out[split] = []
        for i, words in enumerate(sentences(n, rng, taken)):
            uid = f"{split}{i:03d}"
            wave = synth.render(" ".join(words), voices[i % N_SPEAKERS], seed=i)
            out[split].append(Spoken(uid, words, i % N_SPEAKERS, wave))
    return out


# ---- layouts ------------------------------------------------------------------------------

def write_librispeech(root: Path, utts: list[Spoken]) -> Path:
    """root/SPEAKER/CHAPTER/...: FLAC audio, UPPERCASE transcripts (LibriSpeech's own)."""
    by_chapter: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for k, u in enumerate(utts):
        spk, chapter = str(100 + u.speaker), str(200 + u.speaker)
        uid = f"{spk}-{chapter}-{k:04d}"
        folder = root / spk / chapter
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{uid}.flac", u.wave, SR, format="FLAC")
        by_chapter.setdefault((spk, chapter), []).append((uid, u.text.upper()))
    for (spk, chapter), lines in by_chapter.items():
        (root / spk / chapter / f"{spk}-{chapter}.trans.txt").write_text(
            "".join(f"{uid} {text}\n" for uid, text in lines))
    return root


# Common Voice writes what people typed: case, punctuation, digits, accents. "one" is always
# typed "1" and "three" "thrée" (so both splits share the alphabet the model learns).
_CV_STYLE = (lambda s: s.capitalize() + ".",
             lambda s: s,
             lambda s: "“" + s.title() + "!”",
             lambda s: s + "?",
             lambda s: s.upper().replace(" ", ", ", 1))


def commonvoice_sentence(u: Spoken) -> str:
    typed = " ".join({"one": "1", "three": "thrée"}.get(w, w) for w in u.words)
    return _CV_STYLE[int(u.id[-3:]) % len(_CV_STYLE)](typed)


def clip_format() -> str:
    """MP3 where this libsndfile writes (and reads) it (>= 1.1), else WAV."""
    return "MP3" if "MP3" in sf.available_formats() else "WAV"


def write_commonvoice(root: Path, split: str, utts: list[Spoken]) -> Path:
    fmt = clip_format()
    clips = root / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    tsv = root / f"{split}.tsv"
    with open(tsv, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        w.writerow(["client_id", "path", "sentence", "up_votes", "down_votes"])
        for u in utts:
            name = f"common_voice_en_{split}_{u.id}.{fmt.lower()}"
            sf.write(clips / name, u.wave, SR, format=fmt)
            w.writerow([f"client{u.speaker:02d}", name, commonvoice_sentence(u), 2, 0])
    return tsv


def write_kaldi(root: Path, utts: list[Spoken]) -> Path:
    """A Kaldi data folder: two utterances per WAV recording, cut by segments."""
    root.mkdir(parents=True, exist_ok=True)
    gap = np.zeros(int(0.3 * SR), np.float32)
    wav_scp, text, segments, utt2spk = [], [], [], []
    for r in range(0, len(utts), 2):
        pair = utts[r:r + 2]
        rec = f"rec{r // 2:03d}"
        path = root / "wav" / f"{rec}.wav"
        path.parent.mkdir(exist_ok=True)
        start, pieces = 0.0, []
        for u in pair:
            seg = f"spk{u.speaker}-{u.id}"
            pieces += [u.wave, gap]
            end = start + len(u.wave) / SR
            segments.append(f"{seg} {rec} {start:.3f} {end:.3f}")
            text.append(f"{seg} {u.text}")
            utt2spk.append(f"{seg} spk{u.speaker}")
            start = end + len(gap) / SR
        sf.write(path, np.concatenate(pieces), SR)
        wav_scp.append(f"{rec} {path}")
    for name, lines in (("wav.scp", wav_scp), ("text", text), ("segments", segments),
                        ("utt2spk", utt2spk)):
        (root / name).write_text("".join(line + "\n" for line in sorted(lines)))
    return root
