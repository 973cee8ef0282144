"""Transcript normalization: one explicit, saved rule set from raw corpus text to model text.

A model only ever sees normalized text, so the rules are part of the model: `TextNormalizer` is
a frozen dataclass that round-trips through `to_dict`/`from_dict` (and can sit in the config,
hence in every checkpoint). Training text, validation references and evaluation references all
go through the same `normalize`, which is what makes a CER comparable across corpora.

Nothing is removed silently: `normalize_counted` returns how often each character was dropped,
so "the corpus had 4,812 commas and 3 'é' that the alphabet rejects" is one call away.

    >>> TextNormalizer(numbers="spell").normalize("Call me at 10, O'Brien!")
    "call me at ten o'brien"
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Iterable, Sequence, TypeVar

# Shared with the sentence generator (same spelling in synthetic and real corpora).
from asrlab.data.numbers import number_to_words, ordinal_words

PUNCTUATION = ("remove", "keep")
NUMBERS = ("keep", "spell")

# Characters that join words: replaced by a space (not deleted) so "well-known" stays two words.
_JOINERS = set("-\u2010\u2011\u2012\u2013\u2014\u2015/_")
# Typographic apostrophes folded to "'" before anything else.
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_NUMBER = re.compile(r"(?<![\w.])(-?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+)|(st|nd|rd|th))?(?!\w)")
_MAX_SPELLED_DIGITS = 15  # longer digit runs (ids, phone numbers) are read digit by digit


@dataclass(frozen=True)
class TextNormalizer:
    """Rules from raw transcript to model text, applied in this order:

    1. Unicode NFKC (full-width forms, ligatures) and typographic apostrophes -> "'".
    2. numbers="spell": integers, decimals and ordinals to English words ("-3.5" -> "minus
       three point five", "1,024" -> "one thousand twenty four", "21st" -> "twenty first");
       "keep" leaves digits as they are.
    3. lowercase.
    4. punctuation="remove": Unicode punctuation and symbols are dropped, except an apostrophe
       inside a word ("don't"); hyphens, dashes, slashes and underscores become spaces.
    5. allowed (a string of characters, e.g. "abcdefghijklmnopqrstuvwxyz'"): any other
       non-space character is dropped. None allows everything.
    6. whitespace collapsed to single spaces, ends stripped.
    """
    lowercase: bool = True
    punctuation: str = "remove"  # remove | keep
    numbers: str = "keep"  # keep | spell
    allowed: str | None = None

    def __post_init__(self):
        if self.punctuation not in PUNCTUATION:
            raise ValueError(f"punctuation={self.punctuation!r}: use one of {PUNCTUATION}")
        if self.numbers not in NUMBERS:
            raise ValueError(f"numbers={self.numbers!r}: use one of {NUMBERS}")
        if self.allowed is not None and not isinstance(self.allowed, str):
            raise ValueError("allowed must be a string of characters (or None for all)")

    # ---- public API ---------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        return self._normalize(text, None)

    def normalize_counted(self, texts: Iterable[str]) -> tuple[list[str], dict[str, int]]:
        """Normalize every text; also return {character: times removed} over all of them."""
        removed: Counter = Counter()
        out = [self._normalize(t, removed) for t in texts]
        return out, dict(removed.most_common())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "TextNormalizer":
        d = dict(d or {})
        unknown = sorted(set(d) - {"lowercase", "punctuation", "numbers", "allowed"})
        if unknown:
            raise ValueError(f"text normalizer: unknown key(s) {unknown}")
        return cls(**d)

    # ---- steps --------------------------------------------------------------------------
    def _normalize(self, text: str, removed: Counter | None) -> str:
        s = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
        if self.numbers == "spell":
            s = spell_numbers(s)
        if self.lowercase:
            s = s.lower()
        if self.punctuation == "remove":
            s = _strip_punctuation(s, removed)
        if self.allowed is not None:
            s = _keep_only(s, set(self.allowed) | {" "}, removed)
        return " ".join(s.split())


U = TypeVar("U")


def normalize_utterances(utts: Sequence[U], normalizer: TextNormalizer
                         ) -> tuple[list[U], dict[str, int]]:
    """Utterances (any dataclass with `text`, e.g. manifest.Utterance) with normalized text,
    in the same order, and {character: times removed}. A dataclass with a `raw_text` field
    keeps the text it had before (the first normalization's input: applying this twice does
    not lose the manifest's text)."""
    texts, removed = normalizer.normalize_counted([u.text for u in utts])
    out = []
    for u, t in zip(utts, texts):
        keep_raw = "raw_text" in {f.name for f in fields(u)} and u.raw_text is None
        out.append(replace(u, text=t, raw_text=u.text) if keep_raw else replace(u, text=t))
    return out, removed


@dataclass
class Transcripts:
    """A manifest as a model sees it: utterances whose `text` is normalized (the manifest's
    own text in `raw_text`), the manifest's bad lines, and {character: times removed}."""
    utterances: list = field(default_factory=list)  # manifest.Utterance
    problems: list = field(default_factory=list)  # manifest.Skipped (bad lines)
    removed: dict[str, int] = field(default_factory=dict)

    def emptied(self) -> list:
        """Utterances with a transcript that normalizes to nothing (e.g. "..." or "?!")."""
        return [u for u in self.utterances if not u.text and (u.raw_text or "").strip()]


def read_transcripts(path: str | Path, normalizer: TextNormalizer,
                     strict: bool = True) -> Transcripts:
    """THE way asrlab reads transcripts: a manifest's utterances with the model's text rules
    applied. Every verb that reads transcripts (check, train, evaluate, diagnose, tune-lm)
    calls this with the normalizer of the model it works for: the
    checkpoint's (`Recognizer.text_normalizer`, from the ONNX metadata for an .onnx) when there
    is a model, the config's otherwise. `asrlab lm build` applies the same normalizer to its
    text (`asrlab.decode.lm.read_sentences`).

    strict=True raises manifest.ManifestError naming every bad line; strict=False returns them
    in `problems` for the caller to skip and list."""
    from asrlab.data.manifest import read_manifest

    utts, problems = read_manifest(path, strict=strict)
    utts, removed = normalize_utterances(utts, normalizer)
    return Transcripts(utts, problems, removed)


def spell_numbers(text: str) -> str:
    """Replace every integer or decimal number in `text` by English words."""
    return _NUMBER.sub(lambda m: f" {_spell_match(m)} ", text)


def _spell_match(m: re.Match) -> str:
    sign, whole, frac, ordinal = m.group(1), m.group(2).replace(",", ""), m.group(3), m.group(4)
    if ordinal and len(whole) <= _MAX_SPELLED_DIGITS:
        return ("minus " if sign else "") + ordinal_words(int(whole))
    if len(whole) > _MAX_SPELLED_DIGITS or (len(whole) > 1 and whole.startswith("0")):
        words = _digit_by_digit(whole)  # "007", long ids
    else:
        words = number_to_words(int(whole))
    if frac:
        words += " point " + _digit_by_digit(frac)
    return ("minus " if sign else "") + words


def _digit_by_digit(digits: str) -> str:
    return " ".join(number_to_words(int(d)) for d in digits)


def _is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"  # P*: punctuation, S*: symbols


def _strip_punctuation(s: str, removed: Counter | None) -> str:
    out = []
    for i, ch in enumerate(s):
        if ch in _JOINERS:
            out.append(" ")
            _count(removed, ch)
        elif ch == "'" and 0 < i < len(s) - 1 and s[i - 1].isalnum() and s[i + 1].isalnum():
            out.append(ch)  # inside a word: don't, o'clock
        elif _is_punctuation(ch):
            _count(removed, ch)
        else:
            out.append(ch)
    return "".join(out)


def _keep_only(s: str, allowed: set[str], removed: Counter | None) -> str:
    out = []
    for ch in s:
        if ch in allowed or ch.isspace():
            out.append(ch)
        else:
            _count(removed, ch)
    return "".join(out)


def _count(removed: Counter | None, ch: str) -> None:
    if removed is not None:
        removed[ch] += 1
