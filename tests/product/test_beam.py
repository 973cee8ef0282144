"""Beam search: the LM changes the decision the acoustics leave open; flags pick the decoder."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from asrlab.commands.decoding import add_decoder_arguments, decoder_options
from asrlab.data.tokenizer import CharTokenizer
from asrlab.decode import GreedyDecoder, make_decoder

pytest.importorskip("kenlm", reason="pip install kenlm")
pytest.importorskip("pyctcdecode")

from asrlab.decode.beam import BeamDecoder, BeamHypothesis, decoder_labels  # noqa: E402
from asrlab.decode.lm import build_lm  # noqa: E402

TOKENIZER = CharTokenizer.train(["the cat sat", "the bat ran"])


def emissions(segments: list[dict[str, float]], frames_each: int = 1, floor: float = 1e-4
              ) -> np.ndarray:
    """(T, V) log-probs: each segment is {symbol: prob} held for `frames_each` frames, then one
    blank frame. Symbols not named share `floor`."""
    rows = []
    for seg in segments:
        for _ in range(frames_each):
            p = np.full(TOKENIZER.vocab_size, floor)
            for sym, prob in seg.items():
                p[0 if sym == "" else TOKENIZER.index[sym]] = prob
            rows.append(p / p.sum())
        blank = np.full(TOKENIZER.vocab_size, floor)
        blank[0] = 1.0
        rows.append(blank / blank.sum())
    return np.log(np.array(rows, np.float32))


def spell(text: str, ambiguous: dict[int, dict[str, float]] | None = None) -> list[dict]:
    segs = [{ch: 1.0} for ch in text]
    for pos, dist in (ambiguous or {}).items():
        segs[pos] = dist
    return segs


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory):
    text = tmp_path_factory.mktemp("lm") / "text.txt"
    text.write_text("the cat sat\n" * 20 + "the bat ran\n")
    return build_lm([text], 3, text.with_name("lm"), binary=False).arpa


def test_labels_map_blank_and_keep_space():
    labels, is_bpe = decoder_labels(TOKENIZER)
    assert labels[0] == "" and " " in labels and not is_bpe
    assert labels[1:] == TOKENIZER.symbols[1:]


def test_lm_prefers_the_likely_word(lm_path):
    # "the ?at sat": acoustics lean to "b" (0.55 vs 0.45); the LM has seen "the cat sat" 20 times
    lp = emissions(spell("the cat sat", {4: {"b": 0.55, "c": 0.45}}))
    assert GreedyDecoder(TOKENIZER).decode(lp).text == "the bat sat"
    assert BeamDecoder(TOKENIZER, beam=16).decode(lp).text == "the bat sat"  # no LM: acoustics
    hyp = BeamDecoder(TOKENIZER, beam=16, lm=lm_path, lm_weight=1.0, word_score=1.0).decode(lp)
    assert isinstance(hyp, BeamHypothesis)
    assert hyp.text == "the cat sat"
    assert [w for w, _, _ in hyp.word_frames] == ["the", "cat", "sat"]
    starts = [s for _, s, _ in hyp.word_frames]
    assert starts == sorted(starts) and all(s < e <= len(lp) for _, s, e in hyp.word_frames)


def test_lm_weight_zero_leaves_acoustics_in_charge(lm_path):
    lp = emissions(spell("the cat sat", {4: {"b": 0.7, "c": 0.3}}))
    dec = BeamDecoder(TOKENIZER, beam=16, lm=lm_path, lm_weight=0.0, word_score=0.0)
    assert dec.decode(lp).text == "the bat sat"
    dec.set_weights(2.0, 0.0)
    assert dec.decode(lp).text == "the cat sat"


def test_beam_without_lm_matches_greedy_on_clear_input():
    lp = emissions(spell("the bat ran"))
    greedy = GreedyDecoder(TOKENIZER).decode(lp).text
    assert BeamDecoder(TOKENIZER, beam=4).decode(lp).text == greedy == "the bat ran"


def _args(*argv):
    p = argparse.ArgumentParser()
    add_decoder_arguments(p)
    return decoder_options(p.parse_args(list(argv)))


def test_flags_pick_the_decoder(lm_path):
    assert isinstance(make_decoder(_args(), TOKENIZER), GreedyDecoder)
    assert isinstance(make_decoder(_args("--beam", "1"), TOKENIZER), GreedyDecoder)
    beam = make_decoder(_args("--beam", "8"), TOKENIZER)
    assert isinstance(beam, BeamDecoder) and beam.beam == 8 and beam.lm_path is None
    with_lm = make_decoder(_args("--lm", str(lm_path), "--lm-weight", "0.7", "--word-score", "2"),
                           TOKENIZER)
    assert with_lm.beam == 32 and (with_lm.lm_weight, with_lm.word_score) == (0.7, 2.0)
    with pytest.raises(ValueError, match="--lm"):
        make_decoder(_args("--lm-weight", "1"), TOKENIZER)


def test_missing_lm_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="lm build"):
        BeamDecoder(TOKENIZER, lm=tmp_path / "nope.arpa")


def test_blank_penalty_applies_to_beam():
    # one frame, blank 0.6 vs "a" 0.4: dropped unless blank is penalized (ln 0.6 - 1 < ln 0.4)
    rows = np.log(np.array([[0.6] + [0.4 if s == "a" else 0.0 for s in TOKENIZER.symbols[1:]]],
                           np.float32) + 1e-6)
    assert BeamDecoder(TOKENIZER, beam=4).decode(rows).text == ""
    assert BeamDecoder(TOKENIZER, beam=4, blank_penalty=1.0).decode(rows).text == "a"


def test_bpe_vocabulary_decodes_words_with_spans(lm_path):
    pytest.importorskip("sentencepiece")
    from asrlab.data.tokenizer import BpeTokenizer
    from asrlab.words import words_for

    tok = BpeTokenizer.train(["the cat sat", "the bat ran", "a cat ran"] * 20, vocab_size=24)
    labels, is_bpe = decoder_labels(tok)
    assert is_bpe and labels[0] == "" and any(lab.startswith("▁") for lab in labels)
    ids = tok.encode("the cat sat")
    lp = np.full((2 * len(ids), tok.vocab_size), np.log(1e-4), np.float32)
    for k, i in enumerate(ids):  # each piece, then a blank frame
        lp[2 * k, i] = 0.0
        lp[2 * k + 1, 0] = 0.0
    for decoder in (GreedyDecoder(tok), BeamDecoder(tok, beam=8),
                    BeamDecoder(tok, beam=8, lm=lm_path)):
        hyp = decoder.decode(lp)
        assert hyp.text == "the cat sat", type(decoder)
        words = words_for(hyp, lp, tok, 0.04, 10.0)
        assert [w.word for w in words] == ["the", "cat", "sat"]
        assert [w.start for w in words] == sorted(w.start for w in words)
