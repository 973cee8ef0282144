"""BpeTokenizer: the CharTokenizer interface, checkpoint round trip, and a real 1-epoch run."""

import json

import pytest

from asrlab.data.tokenizer import BpeTokenizer, build_tokenizer, tokenizer_from_dict
from tests.conftest import FSDD

TEXTS = ["the cat sat on the mat", "a dog ate the bone", "don't stop the music",
         "seven eight nine ten", "the quick brown fox jumps over the lazy dog"] * 4


@pytest.fixture(scope="module")
def tok() -> BpeTokenizer:
    return BpeTokenizer.train(TEXTS, 64)


def test_interface_matches_char_tokenizer(tok):
    assert tok.kind == "bpe" and tok.blank == 0
    assert 30 < tok.vocab_size <= 64  # blank counted; a small corpus may give fewer pieces
    for text in TEXTS[:5]:
        ids = tok.encode(text)
        assert ids and min(ids) >= 1 and max(ids) < tok.vocab_size
        assert tok.decode(ids) == text
    assert len(tok.encode("the cat")) < len("the cat")  # merges happened: fewer tokens than chars


def test_decode_ignores_blanks(tok):
    ids = tok.encode("the dog")
    assert tok.decode([0] + ids[:1] + [0, 0] + ids[1:] + [0]) == "the dog"


def test_oov_names_characters_no_piece_covers(tok):
    assert tok.oov("the cat") == set()
    assert tok.oov("the Zebra! caf\u00e9") == {"Z", "!", "\u00e9"}  # the text is a pangram
    with pytest.raises(KeyError, match="Z"):
        tok.encode("Zebra")


def test_round_trip_through_tokenizer_from_dict(tok):
    d = json.loads(json.dumps(tok.to_dict()))  # what a checkpoint stores: plain JSON types
    again = tokenizer_from_dict(d)
    assert isinstance(again, BpeTokenizer) and again.vocab_size == tok.vocab_size
    assert again.pieces == tok.pieces
    for text in TEXTS[:5]:
        assert again.encode(text) == tok.encode(text)


def test_build_tokenizer_bpe_and_too_small_vocab():
    assert build_tokenizer("bpe", TEXTS, 48).kind == "bpe"
    with pytest.raises(ValueError, match="at least"):
        BpeTokenizer.train(TEXTS, 10)
    with pytest.raises(ValueError, match="no training text"):
        BpeTokenizer.train(["", "  "], 64)


@pytest.mark.slow
@pytest.mark.skipif(not FSDD.is_dir(), reason="FSDD recordings not available")
def test_one_epoch_train_with_bpe_64(tmp_path):
    from asrlab.checkpoint import load
    from asrlab.cli import main
    from asrlab.data.prepare import prepare

    prepare("fsdd", FSDD, tmp_path / "all.jsonl")
    rows = [json.loads(l) for l in (tmp_path / "all.jsonl").read_text().splitlines()]
    george = [r for r in rows if r["speaker"] == "george"]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in george[::12]))
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in george[5::50]))
    run = tmp_path / "run"
    rc = main(["train", "--train", str(tmp_path / "train.jsonl"), "--val",
               str(tmp_path / "val.jsonl"), "--out", str(run), "--epochs", "1", "--threads", "1",
               "--no-progress", "--tokenizer", "bpe", "--vocab-size", "64",
               "--set", "model.hidden=32", "--set", "model.layers=1",
               "--set", "model.conv_channels=8", "--set", "train.tensorboard=false"])
    assert rc == 0
    ckpt = load(run)
    assert ckpt.tokenizer.kind == "bpe" and ckpt.tokenizer.vocab_size <= 64
    assert ckpt.model.head.out_features == ckpt.tokenizer.vocab_size
    assert ckpt.tokenizer.decode(ckpt.tokenizer.encode("seven")) == "seven"
    assert len(json.loads((run / "metrics.jsonl").read_text().splitlines()[0])) > 0
