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
from dataclasses import asdict, dataclass
from typing import Iterable

# Shared with the sentence generator (same spelling in synthetic and real corpora).
from asrlab.data.numbers import number_to_words, ordinal_words

PUNCTUATION = ("remove", "keep", "space")
NUMBERS = ("keep", "spell", "read")
ACCENTS = ("keep", "strip")

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
       "read" reads text aloud as the sentence reader does (`SENTENCE_TEXT`): money, clock
       times, ordinals and decimals ("$3.50" -> "three dollars and fifty cents", "7:30" ->
       "seven thirty"), a few abbreviations and symbols ("dr." -> "doctor", "&" -> "and");
       "keep" leaves digits as they are.
    3. accents="strip": accents come off letters ("café" -> "cafe"); "keep" keeps them.
    4. lowercase.
    5. punctuation="remove": Unicode punctuation and symbols are dropped, except an apostrophe
       inside a word ("don't"); hyphens, dashes, slashes and underscores become spaces.
       "space": punctuation, symbols and characters outside `allowed` all become spaces, and
       an apostrophe survives only between letters.
    6. allowed (a string of characters, e.g. "abcdefghijklmnopqrstuvwxyz'"): any other
       non-space character is dropped. None allows everything.
    7. whitespace collapsed to single spaces, ends stripped.
    """
    lowercase: bool = True
    punctuation: str = "remove"  # remove | keep | space
    numbers: str = "keep"  # keep | spell | read
    allowed: str | None = None
    accents: str = "keep"  # keep | strip

    def __post_init__(self):
        if self.punctuation not in PUNCTUATION:
            raise ValueError(f"punctuation={self.punctuation!r}: use one of {PUNCTUATION}")
        if self.numbers not in NUMBERS:
            raise ValueError(f"numbers={self.numbers!r}: use one of {NUMBERS}")
        if self.accents not in ACCENTS:
            raise ValueError(f"accents={self.accents!r}: use one of {ACCENTS}")
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
        unknown = sorted(set(d) - {"lowercase", "punctuation", "numbers", "allowed", "accents"})
        if unknown:
            raise ValueError(f"text normalizer: unknown key(s) {unknown}")
        return cls(**d)

    # ---- steps --------------------------------------------------------------------------
    def _normalize(self, text: str, removed: Counter | None) -> str:
        s = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
        if self.numbers == "spell":
            s = spell_numbers(s)
        elif self.numbers == "read":
            s = read_aloud(s.lower() if self.lowercase else s)
        if self.accents == "strip":
            s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
        if self.lowercase:
            s = s.lower()
        if self.punctuation == "space":
            s = _space_out(s, None if self.allowed is None else set(self.allowed), removed)
        else:
            if self.punctuation == "remove":
                s = _strip_punctuation(s, removed)
            if self.allowed is not None:
                s = _keep_only(s, set(self.allowed) | {" "}, removed)
        return " ".join(s.split())


#: The sentence reader's rules (asrlab.synth.sentences: synthetic corpora and `asrlab synth --text`):
#: any text onto lowercase a-z, space and apostrophe, numbers, money and times read aloud.
SENTENCE_TEXT = TextNormalizer(punctuation="space", numbers="read", accents="strip",
                               allowed="abcdefghijklmnopqrstuvwxyz'")

def spell_numbers(text: str) -> str:
    """Replace every integer or decimal number in `text` by English words."""
    return _NUMBER.sub(lambda m: f" {_spell_match(m)} ", text)


def _spell_match(m: re.Match) -> str:
    sign, whole, frac, ordinal = m.group(1), m.group(2).replace(",", ""), m.group(3), m.group(4)
    if ordinal and len(whole) <= _MAX_SPELLED_DIGITS:
        return ("minus " if sign else "") + ordinal_words(int(whole))
    words = _spell_int(whole)  # "007" and long ids digit by digit
    if frac:
        words += " point " + _digit_by_digit(frac)
    return ("minus " if sign else "") + words


def _digit_by_digit(digits: str) -> str:
    return " ".join(number_to_words(int(d)) for d in digits)


# ---- numbers="read": the sentence reader's rules ------------------------------------------

_ABBREVIATIONS = {"mr.": "mister", "mrs.": "missus", "dr.": "doctor", "e.g.": "for example",
                  "i.e.": "that is", "etc.": "et cetera", "vs.": "versus", "approx.": "about"}
_SYMBOLS = {"&": " and ", "%": " percent ", "@": " at ", "+": " plus ", "=": " equals "}


def read_aloud(s: str) -> str:
    """Abbreviations, money, clock times, ordinals, decimals, other numbers and a few symbols
    as words (lowercase input: the abbreviations are matched in lowercase)."""
    for abbreviation, expansion in _ABBREVIATIONS.items():
        s = s.replace(abbreviation, f" {expansion} ")
    s = re.sub(r"\$\s?(\d[\d,]*)(?:\.(\d\d))?\b", _money, s)
    s = re.sub(r"\b(\d{1,2}):(\d\d)\b", _clock, s)
    s = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", lambda m: f" {ordinal_words(int(m.group(1)))} "
               if len(m.group(1)) < 16 else m.group(0), s)
    s = re.sub(r"(\d+)\.(\d+)", lambda m: f" {_spell_int(m.group(1))} point "
               f"{_digit_by_digit(m.group(2))} ", s)
    s = re.sub(r"\d{1,3}(?:,\d{3})+(?!\d)", lambda m: f" {_spell_int(m.group(0))} ", s)
    s = re.sub(r"\d+", lambda m: f" {_spell_int(m.group(0))} ", s)
    for symbol, word in _SYMBOLS.items():
        s = s.replace(symbol, word)
    return s


def _spell_int(digits: str) -> str:
    digits = digits.replace(",", "")
    if len(digits) > _MAX_SPELLED_DIGITS or (len(digits) > 1 and digits.startswith("0")):
        return _digit_by_digit(digits)  # phone numbers, codes, "007"
    return number_to_words(int(digits))


def _money(m: re.Match) -> str:
    words = _spell_int(m.group(1)) + (" dollar" if m.group(1) == "1" else " dollars")
    cents = m.group(2)
    if cents and int(cents):
        words += " and " + number_to_words(int(cents)) + (" cent" if cents == "01" else " cents")
    return f" {words} "


def _clock(m: re.Match) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes == 0:
        return f" {number_to_words(hours)} o'clock "
    mins = number_to_words(minutes) if minutes >= 10 else "oh " + number_to_words(minutes)
    return f" {number_to_words(hours)} {mins} "


# ---- punctuation ----------------------------------------------------------------------------

def _space_out(s: str, allowed: set[str] | None, removed: Counter | None) -> str:
    """punctuation="space": punctuation, symbols and characters outside `allowed` become
    spaces; then an apostrophe survives only between two letters."""
    out = []
    for ch in s:
        if ch.isspace() or ch == "'" or ((allowed is None or ch in allowed)
                                         and not _is_punctuation(ch)):
            out.append(ch)
        else:
            out.append(" ")
            _count(removed, ch)
    for i, ch in enumerate(out):
        if ch == "'" and not (0 < i < len(out) - 1 and out[i - 1].isalpha()
                              and out[i + 1].isalpha()):
            out[i] = " "
            _count(removed, ch)
    return "".join(out)


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
