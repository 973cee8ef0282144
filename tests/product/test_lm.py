"""Language model: the ARPA we estimate loads in KenLM and is a proper distribution."""

from __future__ import annotations

import json

import pytest

from asrlab.decode.lm import (BOS, EOS, UNK, LMError, build_lm, estimate, load_lm,
                              read_sentences)

kenlm = pytest.importorskip("kenlm", reason="pip install kenlm")

TEXT = ["the cat sat on the mat", "the cat ran", "a dog sat on the log", "the dog ran away",
        "a cat and a dog", "the mat is red", "the cat sat on the mat"] * 3 + ["one more line"]


def _next_word_mass(model, context: list[str], vocab: list[str], bos: bool) -> float:
    """Sum over the vocabulary of P(w | context) as KenLM computes it."""
    state = kenlm.State()
    (model.BeginSentenceWrite if bos else model.NullContextWrite)(state)
    for w in context:
        out = kenlm.State()
        model.BaseScore(state, w, out)
        state = out
    return sum(10 ** model.BaseScore(state, w, kenlm.State()) for w in vocab)


def test_build_writes_arpa_that_kenlm_loads_and_sums_to_one(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(TEXT) + "\n")
    report = build_lm([text], 3, tmp_path / "lm.arpa", binary=False)
    assert report.arpa == tmp_path / "lm.arpa" and report.arpa.is_file()
    assert report.ngrams[1] == len({w for t in TEXT for w in t.split()}) + 3  # + <s> </s> <unk>
    model = kenlm.Model(str(report.arpa))
    assert model.order == 3
    vocab = report.unigrams.read_text().split() + [EOS, UNK]
    for context, bos in [([], True), ([], False), (["the"], True), (["the", "cat"], False),
                         (["cat", "sat"], True), (["unseen"], False), (["a", "unseen"], True)]:
        assert _next_word_mass(model, context, vocab, bos) == pytest.approx(1.0, abs=1e-4), context
    # a seen sentence beats its reversal, and the LM knows its words
    assert model.score("the cat sat on the mat") > model.score("mat the on sat cat the") + 3
    assert "cat" in model and "zebra" not in model


def test_manifest_text_fields_are_used(tmp_path):
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": f"{i}.wav", "duration": 1.0,
                                            "text": t}) + "\n" for i, t in enumerate(TEXT)))
    assert [" ".join(s) for s in read_sentences(manifest)] == TEXT
    lm = load_lm(build_lm([manifest], 2, tmp_path / "m", binary=False).arpa)
    assert lm.order == 2 and "dog" in lm.unigrams and BOS not in lm.unigrams


def test_bad_manifest_line_is_named(tmp_path):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"text": "fine"}\n{"no_text": 1}\n')
    with pytest.raises(LMError, match=r"bad.jsonl:2"):
        list(read_sentences(manifest))


def test_order_and_empty_text_are_refused(tmp_path):
    with pytest.raises(LMError, match="order"):
        estimate([["a"]], 9)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(LMError, match="no sentences"):
        build_lm([empty], 3, tmp_path / "x")


def test_modified_kn_discounts_follow_counts_of_counts():
    """Enough data for real discounts: each D_k is in (0, k) and differs from the fallback."""
    sentences = [f"w{i % 17} w{i % 5} w{(i * 7) % 11}".split() for i in range(400)]
    model = estimate(sentences, 3)
    for n, d in model.discounts.items():
        assert all(0 < dk < k for dk, k in zip(d, (1, 2, 3))), (n, d)
    assert model.grams[1][(BOS,)][0] == -99.0  # <s> is never predicted


def test_lm_cli_build_and_score(tmp_path, capsys):
    from asrlab.cli import main

    text = tmp_path / "t.txt"
    text.write_text("\n".join(TEXT))
    assert main(["lm", "build", "--text", str(text), "--order", "3", "--out",
                 str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli.arpa").is_file()
    capsys.readouterr()
    assert main(["lm", "score", "--lm", str(tmp_path / "cli.arpa"), "--text", str(text)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 1 < result["perplexity"] < 20 and result["oov_rate"] == 0


def _build_binary_tool():
    import os
    import shutil

    return os.environ.get("KENLM_BUILD_BINARY") or shutil.which("build_binary")


@pytest.mark.skipif(not _build_binary_tool(), reason="KenLM's build_binary is not installed "
                    "(see docs/product.md: compile_query_only.sh); the ARPA path is tested above")
def test_binary_lm_scores_like_the_arpa_and_decodes(tmp_path):
    from asrlab.data.tokenizer import CharTokenizer
    from asrlab.decode.beam import BeamDecoder

    text = tmp_path / "t.txt"
    text.write_text("\n".join(TEXT))
    report = build_lm([text], 3, tmp_path / "lm")
    assert report.binary == tmp_path / "lm.bin" and report.binary.is_file()
    arpa, binary = kenlm.Model(str(report.arpa)), kenlm.Model(str(report.binary))
    for sentence in TEXT[:7] + ["a mat ran on the dog"]:
        assert binary.score(sentence) == pytest.approx(arpa.score(sentence), abs=1e-4)
    lm = load_lm(report.binary)  # word list from lm.unigrams.txt beside it
    assert "cat" in lm.unigrams
    BeamDecoder(CharTokenizer.train(TEXT), beam=4, lm=report.binary)
