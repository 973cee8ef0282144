"""Real corpus layouts through every verb, as a new user runs them:

    prepare -> check -> train (tiny) -> evaluate -> diagnose -> lm build -> tune-lm -> export
    -> transcribe --onnx -> serve

Each layout asserts: no error or warning finding on its clean data (check and diagnose judge
the text the model reads: LibriSpeech's UPPERCASE is not "out of vocabulary"), LM n-grams in
the model's alphabet, and the same transcript from the checkpoint, the ONNX model and the
server. Each tiny model trains for a few seconds on one thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import conftest as corpora

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 60
TINY = f"""model: {{hidden: 48, layers: 2, conv_channels: 8}}
train: {{tensorboard: false, early_stop_patience: 100, batch_size: 4, lr: 0.003,
         epochs: {EPOCHS}, threads: 1}}
augment: {{speed_perturb: [1.0], freq_masks: 0, time_masks: 0}}
"""


@dataclass
class Pipeline:
    """One layout taken through prepare, check and train."""
    root: Path
    train: Path  # manifests
    val: Path
    config: Path
    run: Path
    check: dict  # asrlab check --out


def cli(*argv) -> int:
    from asrlab.cli import main

    return main([str(a) for a in argv])


def prepare_check_train(root: Path, fmt: str, train_src: Path, val_src: Path,
                        *prepare_args) -> Pipeline:
    import torch

    torch.set_num_threads(1)
    config = root / "tiny.yaml"
    config.write_text(TINY)
    p = Pipeline(root, root / "train.jsonl", root / "val.jsonl", config, root / "run", {})
    for src, out in ((train_src, p.train), (val_src, p.val)):
        assert cli("prepare", fmt, src, "--out", out, *prepare_args) == 0
        assert out.with_name(out.stem + ".skipped.jsonl").read_text() == ""  # clean data
    assert cli("check", "--train", p.train, "--val", p.val, "--config", config,
               "--out", root / "check.json") == 0
    p.check = json.loads((root / "check.json").read_text())
    assert cli("train", "--train", p.train, "--val", p.val, "--config", config, "--out", p.run,
               "--no-progress") == 0
    return p


def not_info(findings: list[dict]) -> list[str]:
    return [f"{f['code']}: {f['message']}" for f in findings if f["severity"] != "info"]


def model_alphabet(run: Path) -> set[str]:
    from asrlab.inference import Recognizer

    tok = Recognizer.from_path(run).tokenizer
    return set("".join(tok.symbols[1:]))  # id 0 is the blank


def arpa_words(arpa: Path) -> set[str]:
    """Every word of the LM (an ARPA file's higher-order n-grams only use its unigrams)."""
    from asrlab.decode.lm import arpa_unigrams

    return arpa_unigrams(arpa) - {"<s>", "</s>", "<unk>"}


def serve_transcripts(onnx: Path, files: list[Path], log: Path) -> list[str]:
    """`asrlab serve --model model.onnx` in a subprocess; each file posted once."""
    import httpx

    from tests.product.conftest import free_port, wait_until_up

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "asrlab", "serve", "--model", str(onnx),
                                 "--host", "127.0.0.1", "--port", str(port), "--threads", "1",
                                 "--log-level", "warning"],
                                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    replies = []
    try:
        wait_until_up(url, proc, log)
        replies = [httpx.post(url + "/v1/transcribe", timeout=60,
                              files={"file": (path.name, path.read_bytes())}) for path in files]
    finally:
        proc.kill()  # nothing to shut down gracefully: the answers are in
        proc.wait()
    assert [r.status_code for r in replies] == [200] * len(files), [r.text for r in replies]
    return [r.json()["text"] for r in replies]


def transcripts(capsys, *argv) -> list[str]:
    capsys.readouterr()
    assert cli("transcribe", "--json", *argv) == 0
    return [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()]


def every_verb(p: Pipeline, capsys) -> dict:
    """evaluate -> diagnose -> lm build -> tune-lm -> export -> transcribe (checkpoint, ONNX)
    -> serve on a prepared and trained layout; returns what the layout tests look at."""
    from asrlab.data.manifest import load_manifest
    from asrlab.doctor.diagnose import diagnose

    assert not_info(p.check["findings"]) == []
    trained = [json.loads(line) for line in (p.run / "findings.jsonl").read_text().splitlines()]
    assert [f for f in trained if f["severity"] == "error"] == []

    assert cli("evaluate", "--model", p.run, "--data", p.val, "--out", p.root / "eval.json") == 0
    rows = [json.loads(line) for line in
            (p.root / "eval.utterances.jsonl").read_text().splitlines()]
    alphabet = model_alphabet(p.run)
    refs = [r["ref"] for r in rows]
    assert all(set(r) <= alphabet | {" "} for r in refs), refs  # normalized like training's

    diag = diagnose(p.run, p.val)
    assert not_info([f.to_dict() for f in diag.findings]) == []

    assert cli("lm", "build", "--text", p.train, "--model", p.run, "--out", p.root / "lm",
               "--no-binary") == 0
    words = arpa_words(p.root / "lm.arpa")
    assert words and set("".join(words)) <= alphabet, sorted(set("".join(words)) - alphabet)

    tuned = p.root / "tune.json"
    assert cli("tune-lm", "--model", p.run, "--data", p.val, "--lm", p.root / "lm.arpa",
               "--alphas", "0", "0.5", "1", "--betas", "0", "1", "2", "--beam", "16",
               "--out", tuned) == 0

    onnx = p.root / "model.onnx"
    assert cli("export", "--model", p.run, "--out", onnx, "--data", p.val) == 0
    files = [u.audio_filepath for u in load_manifest(p.val)]
    if any(u.offset for u in load_manifest(p.val)):  # Kaldi segments: cut them out first
        files = cut_segments(load_manifest(p.val), p.root / "segments")
    from_ckpt = transcripts(capsys, "--model", p.run, *files)
    from_onnx = transcripts(capsys, "--onnx", onnx, *files)
    from_server = serve_transcripts(onnx, files, p.root / "server.log")
    assert from_ckpt == from_onnx == from_server
    assert sum(bool(t) for t in from_ckpt) >= len(files) // 2  # the model reads something
    return {"refs": refs, "words": words, "tune": json.loads(tuned.read_text()),
            "transcripts": from_ckpt, "eval": json.loads((p.root / "eval.json").read_text())}


def cut_segments(utts, folder: Path) -> list[Path]:
    import soundfile as sf

    from asrlab.audio import load_audio

    folder.mkdir(exist_ok=True)
    out = []
    for u in utts:
        path = folder / f"{u.id}.wav"
        sf.write(path, load_audio(u.audio_filepath, corpora.SR, u.offset, u.span), corpora.SR)
        out.append(path)
    return out


# ---- the layouts ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def librispeech(spoken, tmp_path_factory) -> Pipeline:
    root = tmp_path_factory.mktemp("librispeech")
    ls = root / "LibriSpeech"
    corpora.write_librispeech(ls / "train-clean-5", spoken["train"])
    corpora.write_librispeech(ls / "dev-clean-2", spoken["val"])
    return prepare_check_train(root, "librispeech", ls / "train-clean-5", ls / "dev-clean-2")


def test_librispeech_layout_end_to_end(librispeech, capsys):
    raw = (librispeech.root / "LibriSpeech").rglob("*.trans.txt")
    assert any("DON'T" in t.read_text() for t in raw)  # the corpus is LibriSpeech-shaped
    seen = every_verb(librispeech, capsys)
    assert "don't" in seen["words"] and not any(w != w.lower() for w in seen["words"])
    assert "don't" in " ".join(seen["refs"])
    # every validation voice also trains: said as an info, with the way out
    seen_spk, = [f for f in librispeech.check["findings"] if f["code"] == "SEEN_SPEAKERS"]
    assert seen_spk["severity"] == "info" and "--speakers" in seen_spk["remedy"]


def test_tune_lm_on_librispeech_lowers_wer_with_a_word_lm(librispeech, tmp_path):
    """A half-trained model misspells words of a closed vocabulary; a word LM from the training
    transcripts (normalized as the model reads them) fixes them. With the raw UPPERCASE text
    (the bug of issue 14) no LM word would ever match, and every reference would count as
    wrong."""
    lm = tmp_path / "lm"
    assert cli("lm", "build", "--text", librispeech.train, "--model", librispeech.run, "--out",
               lm, "--no-binary") == 0
    out = tmp_path / "tune.json"
    assert cli("tune-lm", "--model", librispeech.run, "--data", librispeech.val, "--lm",
               lm.with_suffix(".arpa"), "--alphas", "0", "0.5", "1", "2", "--betas", "0", "1",
               "2", "--beam", "16", "--out", out) == 0
    r = json.loads(out.read_text())
    assert r["greedy_wer"] < 1.0  # references read as the model spells them
    assert r["lm_weight"] > 0 and r["wer"] < r["greedy_wer"], r


@pytest.fixture(scope="session")
def commonvoice(spoken, tmp_path_factory) -> Pipeline:
    root = tmp_path_factory.mktemp("commonvoice")
    cv = root / "cv" / "en"
    corpora.write_commonvoice(cv, "train", spoken["train"])
    corpora.write_commonvoice(cv, "dev", spoken["val"])
    return prepare_check_train(root, "commonvoice", cv / "train.tsv", cv / "dev.tsv")


def test_commonvoice_layout_end_to_end(commonvoice, capsys):
    from asrlab.data.manifest import load_manifest

    raw = [u.text for u in load_manifest(commonvoice.train)]
    assert any(ch in "".join(raw) for ch in ",.!?“") and any(c.isdigit() for c in "".join(raw))
    assert any(c.isupper() for c in "".join(raw)) and "é" in "".join(raw)
    clips = {p.suffix for p in (commonvoice.root / "cv" / "en" / "clips").iterdir()}
    assert clips == {"." + corpora.clip_format().lower()}
    seen = every_verb(commonvoice, capsys)
    letters = set("".join(seen["words"]))
    assert not letters & set(",.!?“”") and "é" in letters and "1" in letters  # kept by the rules


@pytest.fixture(scope="session")
def kaldi(spoken, tmp_path_factory) -> Pipeline:
    root = tmp_path_factory.mktemp("kaldi")
    corpora.write_kaldi(root / "data" / "train", spoken["train"])
    corpora.write_kaldi(root / "data" / "dev", spoken["val"])
    return prepare_check_train(root, "kaldi", root / "data" / "train", root / "data" / "dev")


def test_kaldi_layout_end_to_end(kaldi, capsys):
    from asrlab.data.manifest import load_manifest

    assert all("offset" in u.extra for u in load_manifest(kaldi.train))  # segments were used
    seen = every_verb(kaldi, capsys)
    assert "it's" in seen["words"]


# ---- check on train's path --------------------------------------------------------------

def finding_summary(findings: list[dict]) -> list[tuple]:
    """What `asrlab check` and train's pre-flight must agree on: each finding's code, severity,
    split, kind and count, and its message (which carries the counts and paths)."""
    return sorted((f["code"], f["severity"], str(f["evidence"].get("split")),
                   str(f["evidence"].get("kind")), f["evidence"].get("count", -1), f["message"])
                  for f in findings)


def preflight_findings(run: Path) -> list[dict]:
    return json.loads((run / "check.json").read_text())["findings"]


@pytest.mark.parametrize("layout", ["librispeech", "commonvoice", "kaldi"])
def test_check_gives_the_findings_of_trains_preflight(layout, request):
    p = request.getfixturevalue(layout)
    assert p.check["findings"], "the layouts have findings (SEEN_SPEAKERS) to compare"
    assert finding_summary(p.check["findings"]) == finding_summary(preflight_findings(p.run))


def test_check_with_set_and_init_from_gives_the_findings_of_trains_preflight(librispeech,
                                                                             tmp_path):
    """Fine-tuning the LibriSpeech model with a minimum duration that leaves out half of the
    training utterances: check resolves the source's model, features, vocabulary and CMVN and
    the --set like train does; train refuses on the error, after writing its pre-flight."""
    from asrlab.data.manifest import load_manifest

    p = librispeech
    durations = sorted(u.duration for u in load_manifest(p.train))
    flags = ["--init-from", p.run, "--set", f"train.min_duration={durations[len(durations) // 2]}",
             "--set", "augment.speed_perturb=[1.0,1.6]"]
    assert cli("check", "--train", p.train, "--val", p.val, "--out", tmp_path / "check.json",
               *flags) == 1
    checked = json.loads((tmp_path / "check.json").read_text())["findings"]
    assert cli("train", "--train", p.train, "--val", p.val, "--out", tmp_path / "run",
               "--no-progress", *flags) == 1  # refused: the errors below
    trained = preflight_findings(tmp_path / "run")
    assert finding_summary(checked) == finding_summary(trained)
    short, = [f for f in checked if f["code"] == "BAD_AUDIO" and f["severity"] == "error"]
    assert "train.min_duration" in next(iter(short["evidence"]["reasons"].values()))
    assert finding_summary(checked) != finding_summary(p.check["findings"])  # the flags count
