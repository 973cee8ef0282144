"""Word timestamps and confidences, from greedy paths and from beam spans."""

from __future__ import annotations

import numpy as np
import pytest

from asrlab.data.tokenizer import CharTokenizer
from asrlab.decode import GreedyDecoder
from asrlab.decode.greedy import greedy_decode
from asrlab.words import WordSpan, greedy_spans, timed_words, words_for

TOK = CharTokenizer.train(["ab cd"])


def path_log_probs(path: list[str], p: float = 0.9) -> np.ndarray:
    """(T, V) log-probs whose best path is `path` ("" = blank), with max posterior p."""
    V = TOK.vocab_size
    rows = np.full((len(path), V), (1 - p) / (V - 1), np.float32)
    for t, sym in enumerate(path):
        rows[t, 0 if sym == "" else TOK.index[sym]] = p
    return np.log(rows)


def test_greedy_spans_follow_the_best_path():
    #        0    1    2   3    4    5    6   7    8    9
    path = ["", "a", "a", "b", "", " ", "", "c", "d", "d"]
    lp = path_log_probs(path)
    hyp = greedy_decode(lp, len(lp), TOK)
    assert hyp.text == "ab cd" and hyp.frames == [1, 3, 5, 7, 8]
    spans = greedy_spans(hyp.tokens, hyp.frames, lp.argmax(1), TOK)
    assert spans == [WordSpan("ab", 1, 4), WordSpan("cd", 7, 10)]


def test_times_are_seconds_ordered_and_within_duration():
    path = ["", "a", "b", "", " ", "c", "", "d", ""]
    lp = path_log_probs(path, p=0.8)
    hyp = GreedyDecoder(TOK).decode(lp)
    duration = 0.35  # shorter than 9 frames x 40 ms: the end is clipped
    words = words_for(hyp, lp, TOK, frame_seconds=0.04, duration=duration)
    assert [w.word for w in words] == ["ab", "cd"]
    assert words[0].start == pytest.approx(0.04) and words[0].end == pytest.approx(0.12)
    assert words[1].start == pytest.approx(0.20) and words[1].end == pytest.approx(0.32)
    for a, b in zip(words, words[1:]):
        assert a.end <= b.start
    assert all(0 <= w.start <= w.end <= duration for w in words)
    assert all(w.confidence == pytest.approx(0.8, abs=1e-3) for w in words)


def test_confidence_drops_where_the_model_hesitates():
    lp = path_log_probs(["a", "b", "", " ", "c", "d"], p=0.95)
    lp[4:6] = path_log_probs(["c", "d"], p=0.4)
    words = words_for(GreedyDecoder(TOK).decode(lp), lp, TOK, 0.04, 1.0)
    assert words[0].confidence > 0.9 > 0.5 > words[1].confidence


def test_blank_penalty_is_applied_to_the_path_too():
    probs = np.zeros((4, TOK.vocab_size), np.float32)
    probs[:, 0], probs[:, TOK.index["a"]] = 0.55, 0.45  # blank narrowly ahead of "a" everywhere
    lp = np.log(probs + 1e-6)
    hyp = GreedyDecoder(TOK, blank_penalty=1.0).decode(lp)
    assert hyp.text == "a"
    (word,) = words_for(hyp, lp, TOK, 0.04, 1.0, blank_penalty=1.0)
    assert (word.start, word.end) == (0.0, pytest.approx(0.16))  # all 4 frames, not 1


def test_beam_spans_are_used_as_given():
    from asrlab.decode.beam import BeamHypothesis

    hyp = BeamHypothesis("ab cd", [], [], 0.0, (("ab", 2, 5), ("cd", 6, 30)))
    lp = path_log_probs([""] * 10)
    words = words_for(hyp, lp, TOK, 0.04, 0.4)
    assert [(w.word, w.start, w.end) for w in words] == [("ab", 0.08, 0.2), ("cd", 0.24, 0.4)]
    assert timed_words([], lp, 0.04, 0.4) == []


@pytest.mark.slow
@pytest.mark.parametrize("decoder_args", [{}, {"beam": 8}, {"beam": 8, "lm": True}])
def test_transcriber_gives_ordered_words_within_duration(tiny_run, digit_corpus, digit_lm,
                                                         decoder_args):
    import json

    from asrlab.decode import DecoderOptions
    from asrlab.transcribe import Transcriber

    options = DecoderOptions(beam=decoder_args.get("beam"),
                             lm=str(digit_lm) if decoder_args.get("lm") else None)
    tr = Transcriber.load(tiny_run, options)
    line = json.loads(digit_corpus["train"].read_text().splitlines()[0])
    result = tr.transcribe_file(digit_corpus["train"].parent / line["audio_filepath"])
    assert set(result) == {"text", "words", "duration"}
    assert result["duration"] == pytest.approx(line["duration"], abs=1e-3)
    assert result["words"], f"the overfit model should emit something, got {result}"
    assert " ".join(w["word"] for w in result["words"]) == result["text"]
    starts = [w["start"] for w in result["words"]]
    assert starts == sorted(starts)
    for w in result["words"]:
        assert 0 <= w["start"] <= w["end"] <= result["duration"]
        assert 0 < w["confidence"] <= 1
