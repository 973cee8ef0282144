"""TextNormalizer: each rule, the removed-character counts, and the dict round trip."""

import dataclasses

import pytest

from asrlab.data.manifest import Utterance, normalize_utterances
from asrlab.data.text import TextNormalizer, spell_numbers


def test_defaults_lowercase_and_remove_punctuation_but_keep_word_apostrophes():
    n = TextNormalizer()
    assert n.normalize("  Hello, World!  It's \u201cfine\u201d... ") == "hello world it's fine"
    assert n.normalize("'quoted' rock'n'roll") == "quoted rock'n'roll"
    assert n.normalize("O\u2019Brien") == "o'brien"  # typographic apostrophe folded


def test_joiners_become_spaces_not_glue():
    assert TextNormalizer().normalize("well-known a/b snake_case \u2014 dash") == \
        "well known a b snake case dash"


def test_keep_options_leave_text_alone_except_whitespace():
    n = TextNormalizer(lowercase=False, punctuation="keep", numbers="keep")
    assert n.normalize("Hi,   there! 42\n") == "Hi, there! 42"


@pytest.mark.parametrize("text, spoken", [
    ("0", "zero"), ("7", "seven"), ("13", "thirteen"), ("21", "twenty one"),
    ("100", "one hundred"), ("105", "one hundred five"), ("1,024", "one thousand twenty four"),
    ("2024", "two thousand twenty four"), ("1000000", "one million"),
    ("-3", "minus three"), ("3.25", "three point two five"), ("21st", "twenty first"),
    ("007", "zero zero seven"),
])
def test_spell_numbers(text, spoken):
    assert TextNormalizer(numbers="spell").normalize(text) == spoken


def test_numbers_inside_words_and_ranges():
    n = TextNormalizer(numbers="spell")
    assert n.normalize("pages 10-12, at 5.") == "pages ten twelve at five"
    assert spell_numbers("mp3") == "mp3"  # part of a word: left alone
    assert TextNormalizer(numbers="keep").normalize("room 101") == "room 101"


def test_allowed_alphabet_drops_and_counts_the_rest():
    n = TextNormalizer(allowed="abcdefghijklmnopqrstuvwxyz'")
    texts, removed = n.normalize_counted(["Caf\u00e9 #1!", "na\u00efve 2 go"])
    assert texts == ["caf", "nave go"]
    assert removed == {"\u00e9": 1, "#": 1, "1": 1, "!": 1, "\u00ef": 1, "2": 1}


def test_counts_cover_punctuation_removal():
    _, removed = TextNormalizer().normalize_counted(["a, b, c.", "d-e"])
    assert removed == {",": 2, ".": 1, "-": 1}


def test_round_trip_and_frozen():
    n = TextNormalizer(lowercase=False, punctuation="keep", numbers="spell", allowed="abc ")
    assert TextNormalizer.from_dict(n.to_dict()) == n
    assert TextNormalizer.from_dict(None) == TextNormalizer()
    with pytest.raises(dataclasses.FrozenInstanceError):
        n.lowercase = True  # type: ignore[misc]


def test_bad_options_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match="remove"):
        TextNormalizer(punctuation="strip")
    with pytest.raises(ValueError, match="spell"):
        TextNormalizer(numbers="words")
    with pytest.raises(ValueError, match="unknown key"):
        TextNormalizer.from_dict({"lower": True})


def test_idempotent():
    n = TextNormalizer(numbers="spell")
    once = n.normalize("It's 3:45 -- Dr. Smith's 2nd visit (costing $12.50)!")
    assert n.normalize(once) == once


def test_normalize_utterances_keeps_everything_but_the_text(tmp_path):
    utts = [Utterance("a", tmp_path / "a.wav", 1.0, "Hello, World!", {"speaker": "s"}, "m:1"),
            Utterance("b", tmp_path / "b.wav", 2.0, "?!", {}, "m:2")]
    out, removed = normalize_utterances(utts, TextNormalizer())
    assert [u.text for u in out] == ["hello world", ""]  # empty: the scan skips it, with reason
    assert out[0].extra == {"speaker": "s"} and out[0].source == "m:1" and out[1].duration == 2.0
    assert removed == {",": 1, "!": 2, "?": 1}
    assert utts[0].text == "Hello, World!"  # inputs untouched


def test_read_transcripts_normalizes_and_keeps_the_manifest_text(tmp_path):
    from asrlab.data.manifest import read_transcripts

    m = tmp_path / "m.jsonl"
    m.write_text('{"audio_filepath": "a.wav", "duration": 1, "text": "DON\'T STOP, NOW!"}\n'
                 '{"audio_filepath": "b.wav", "duration": 1, "text": "..."}\n'
                 'not json\n')
    read = read_transcripts(m, TextNormalizer(), strict=False)
    a, b = read.utterances
    assert (a.text, a.raw_text, a.original_text) == ("don't stop now", "DON'T STOP, NOW!",
                                                     "DON'T STOP, NOW!")
    assert read.emptied() == [b] and b.original_text == "..."
    assert [p.line for p in read.problems] == [3] and read.removed == {",": 1, "!": 1, ".": 3}
    again, _ = normalize_utterances(read.utterances, TextNormalizer())
    assert again[0].raw_text == "DON'T STOP, NOW!"  # normalizing twice keeps the original


def test_lm_build_writes_the_model_alphabet_by_default(tmp_path):
    """Without --model, `asrlab lm build` uses the default config's text rules: LibriSpeech's
    UPPERCASE becomes the lowercase words a default model spells."""
    from asrlab.cli import main
    from asrlab.decode.lm import arpa_unigrams

    text = tmp_path / "upper.txt"
    text.write_text("HE SAID, DON'T GO.\nDON'T SAY IT!\n")
    assert main(["lm", "build", "--text", str(text), "--out", str(tmp_path / "lm"),
                 "--no-binary"]) == 0
    words = arpa_unigrams(tmp_path / "lm.arpa") - {"<s>", "</s>", "<unk>"}
    assert words == {"he", "said", "don't", "go", "say", "it"}


def test_sentence_rules_are_a_text_normalizer():
    """The sentence reader's rules (asrlab.synth.sentences) are a TextNormalizer like any other:
    saved and restored, each new option doing its own step."""
    from asrlab.data.text import SENTENCE_TEXT

    assert TextNormalizer.from_dict(SENTENCE_TEXT.to_dict()) == SENTENCE_TEXT
    assert SENTENCE_TEXT.normalize("Dr. Ng: $2.05 & 7:05, 'naïve'") == \
        "doctor ng two dollars and five cents and seven oh five naive"
    assert TextNormalizer(accents="strip").normalize("Café") == "cafe"
    assert TextNormalizer().normalize("Café") == "café"
    assert TextNormalizer(punctuation="space").normalize("a,b 'c'") == "a b c"
    assert TextNormalizer(punctuation="remove").normalize("a,b 'c'") == "ab c"
    with pytest.raises(ValueError, match="accents"):
        TextNormalizer(accents="drop")
