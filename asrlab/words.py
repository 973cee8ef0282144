"""Word timestamps and confidences from a CTC alignment.

A word's frame span [start, end) comes from the decoder:
  - greedy: the best path; a word runs from its first token's first frame to its last token's
    last frame (the frames where the path stays on that token);
  - beam: pyctcdecode's per-word spans from the winning beam (`BeamHypothesis.word_frames`).
Times are frames x `frame_seconds` (feature hop x encoder subsampling), clipped to the audio.

Confidence = mean over the word's frames of the frame's highest posterior (exp of max log-prob).
It is cheap and needs no extra model; a value near 1 means the network was sure of every frame
of the word (whichever symbol it chose), low values flag frames where it hesitated. It is not
calibrated as a probability of the word being right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from asrlab.data.tokenizer import Tokenizer
from asrlab.decode.greedy import best_path


@dataclass(frozen=True)
class WordSpan:
    word: str
    start: int  # first frame
    end: int  # one past the last frame


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds
    end: float
    confidence: float

    def to_dict(self) -> dict:
        return asdict(self)


def greedy_spans(tokens: list[int], frames: list[int], path: np.ndarray, tokenizer: Tokenizer
                 ) -> list[WordSpan]:
    """Word spans from a greedy hypothesis: tokens with their start frames, split into words at
    space symbols (character vocabularies) or at pieces starting with ▁ (BPE)."""
    strings = tokenizer.pieces
    spans: list[WordSpan] = []
    chars: list[str] = []
    start = end = -1

    def flush():
        if chars:
            word = "".join(chars).strip()
            if word:
                spans.append(WordSpan(word, start, end))
        chars.clear()

    for k, (tok, t0) in enumerate(zip(tokens, frames)):
        s = strings[tok]
        t1 = t0 + 1
        limit = frames[k + 1] if k + 1 < len(frames) else len(path)
        while t1 < limit and path[t1] == tok:  # the token's run on the best path
            t1 += 1
        if s == " ":
            flush()
            continue
        if s.startswith("▁"):
            flush()
            s = s[1:]
        if not chars:
            start = t0
        chars.append(s)
        end = t1
    flush()
    return spans


def word_spans(hyp, log_probs: np.ndarray, tokenizer: Tokenizer, blank_penalty: float = 0.0
               ) -> list[WordSpan]:
    """Spans for any Hypothesis: a beam hypothesis carries them, a greedy one is re-derived."""
    beam_frames = getattr(hyp, "word_frames", None)
    if beam_frames is not None:
        return [WordSpan(w, int(s), int(e)) for w, s, e in beam_frames]
    path = best_path(log_probs, tokenizer.blank, blank_penalty)
    return greedy_spans(list(hyp.tokens), list(hyp.frames), path, tokenizer)


def timed_words(spans: list[WordSpan], log_probs: np.ndarray, frame_seconds: float,
                duration: float) -> list[Word]:
    """Spans -> Words in seconds, with confidences; times clipped to [0, duration]."""
    lp = np.asarray(log_probs, dtype=np.float32)
    frame_conf = np.exp(lp.max(axis=1)) if len(lp) else np.zeros(0, np.float32)
    words = []
    for sp in spans:
        s = max(0, min(sp.start, len(lp)))
        e = max(s + 1, min(sp.end, len(lp)))
        conf = float(frame_conf[s:e].mean()) if e <= len(lp) and e > s else 0.0
        t0 = round(min(s * frame_seconds, duration), 3)
        t1 = round(min(e * frame_seconds, duration), 3)
        words.append(Word(sp.word, t0, max(t0, t1), round(conf, 4)))
    return words


def words_for(hyp, log_probs: np.ndarray, tokenizer: Tokenizer, frame_seconds: float, duration: float,
              blank_penalty: float = 0.0) -> list[Word]:
    return timed_words(word_spans(hyp, log_probs, tokenizer, blank_penalty), log_probs,
                       frame_seconds, duration)
