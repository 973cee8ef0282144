"""The sentence generator and the user text-file reader."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from asrlab.synth.sentences import (ALPHABET, generate_sentences, load_text_file, number_to_words,
                                   ordinal_words, read_text_file)
from asrlab.data.text import SENTENCE_TEXT


@pytest.fixture(scope="module")
def many() -> list[str]:
    return generate_sentences(20000, seed=0)


def test_same_seed_same_sentences_and_prefix_is_stable():
    assert generate_sentences(50, seed=7) == generate_sentences(50, seed=7)
    assert generate_sentences(20, seed=7) == generate_sentences(50, seed=7)[:20]
    assert generate_sentences(50, seed=7) != generate_sentences(50, seed=8)


def test_twenty_thousand_distinct_sentences(many):
    assert len(many) == len(set(many)) == 20000


def test_alphabet_and_length(many):
    for sentence in many:
        assert set(sentence) <= ALPHABET, sentence
        assert sentence == " ".join(sentence.split()), sentence  # no stray spaces
        assert 4 <= len(sentence.split()) <= 14, sentence
    assert any("'" in s for s in many)  # contractions and possessives do occur


def test_vocabulary_is_common_words_that_repeat(many):
    words = Counter(w for s in many for w in s.split())
    assert 600 <= len(words) <= 1300
    train = {w for s in generate_sentences(1111, seed=0) for w in s.split()}
    test = [w for s in generate_sentences(300, seed=1) for w in s.split()]
    unseen = sum(w not in train for w in test) / len(test)
    assert unseen < 0.06, f"{unseen:.1%} of test words never occur in 1111 training sentences"


def test_mixes_statements_questions_and_instructions(many):
    first = Counter(s.split()[0] for s in many[:2000])
    assert first["did"] + first["where"] + first["how"] + first["what"] > 50
    assert first["please"] + first["don't"] + first["let's"] + first["turn"] > 50


def test_bad_counts():
    assert generate_sentences(0, seed=0) == []
    with pytest.raises(ValueError):
        generate_sentences(-1, seed=0)


@pytest.mark.parametrize("n, words", [(0, "zero"), (13, "thirteen"), (40, "forty"),
                                      (105, "one hundred five"),
                                      (2024, "two thousand twenty four"),
                                      (1_000_001, "one million one")])
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_ordinals():
    assert [ordinal_words(n) for n in (1, 2, 3, 12, 20, 21)] == [
        "first", "second", "third", "twelfth", "twentieth", "twenty first"]


@pytest.mark.parametrize("raw, clean", [
    ("Hello, World!", "hello world"),
    ("I paid $3.50 at 7:30.", "i paid three dollars and fifty cents at seven thirty"),
    ("the 21st of May, 1,200 people", "the twenty first of may one thousand two hundred people"),
    ("Don\u2019t  stop\u2014it's   fine", "don't stop it's fine"),
    ("Caf\u00e9 na\u00efve 3.14", "cafe naive three point one four"),
    ("'quoted' dogs' rock'n'roll", "quoted dogs rock'n'roll"),
    ("mp3 & 50%", "mp three and fifty percent"),
    ("\u4f60\u597d ###", ""),
])
def test_normalize_text(raw, clean):
    assert SENTENCE_TEXT.normalize(raw) == clean


def test_load_text_file_lines_reports_every_drop(tmp_path, caplog):
    path = tmp_path / "mine.txt"
    path.write_text("Hello there, world!\nI have 2 cats. They sleep.\nOk.\n!!!\n"
                    "hello THERE world\n" + "word " * 25 + "\n\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        sentences = load_text_file(path)
    assert sentences == ["hello there world", "i have two cats", "they sleep"]
    report = read_text_file(path)
    assert report.mode == "lines"
    assert report.segments == 7
    assert dict(report.dropped) == {"shorter than 2 words": 1, "duplicate": 1,
                                    "empty after normalization (no letters or digits)": 1,
                                    "longer than 20 words": 1}
    assert "dropped 4" in caplog.text and "duplicate" in caplog.text


def test_load_text_file_prose(tmp_path):
    path = tmp_path / "prose.txt"
    path.write_text("It was a cold day in the city, and the clocks were\nstriking ten. The old "
                    "man walked home. He\nbought bread! Did he pay? Yes, he did.\n\n"
                    "A new paragraph. It has 2 sentences.\n", encoding="utf-8")
    assert load_text_file(path) == [
        "it was a cold day in the city and the clocks were striking ten",
        "the old man walked home", "he bought bread", "did he pay", "yes he did",
        "a new paragraph", "it has two sentences"]
    assert read_text_file(path, mode="lines").sentences[0] == \
        "it was a cold day in the city and the clocks were"


def test_load_text_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="text file not found"):
        load_text_file(tmp_path / "missing.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        load_text_file(latin)
    with pytest.raises(ValueError, match="mode"):
        read_text_file(latin, mode="words")
