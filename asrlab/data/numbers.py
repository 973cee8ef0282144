"""Numbers in words: 2024 -> "two thousand twenty four", 21 -> "twenty first".

A leaf module (no asrlab imports) so that transcript normalization (asrlab.data.text), and with it
the torch-free ONNX path, does not import the sentence grammar (asrlab.synth.sentences).
"""

from __future__ import annotations

__all__ = ["number_to_words", "ordinal_words"]

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                      "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def number_to_words(n: int) -> str:
    """Spell a whole number in words: 2024 -> 'two thousand twenty four'."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (" " + _ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + (" " + number_to_words(rest) if rest else "")
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            tail = " " + number_to_words(rest) if rest else ""
            return f"{number_to_words(high)} {name}{tail}"
    raise AssertionError("unreachable")


def ordinal_words(n: int) -> str:
    """Spell an ordinal: 21 -> 'twenty first'."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)
