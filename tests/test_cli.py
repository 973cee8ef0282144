"""The command line, end to end: train -> evaluate -> transcribe, and clear errors."""

import json
import subprocess
import sys

import pytest


def asrlab(*args, ok=True):
    done = subprocess.run([sys.executable, "-m", "asrlab", *map(str, args)], capture_output=True,
                          text=True, timeout=600)
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_help_lists_every_verb():
    from asrlab.cli import VERBS

    out = asrlab("--help").stdout
    assert {"synth", "train", "evaluate", "transcribe", "check", "diagnose"} <= set(VERBS)
    for verb in VERBS:
        assert verb in out


def test_every_verb_has_help(capsys):
    from asrlab.cli import VERBS, build_parser

    for verb in VERBS:
        with pytest.raises(SystemExit) as e:
            build_parser([verb]).parse_args([verb, "--help"])
        assert e.value.code == 0, verb
        out = capsys.readouterr().out
        assert out.startswith(f"usage: asrlab {verb}") and VERBS[verb][1] in out, verb


def test_bad_manifest_names_file_and_line(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"audio_filepath": "a.wav", "duration": 1, "text": "x"}\n{"oops": 1}\n')
    done = asrlab("train", "--train", m, "--val", m, "--out", tmp_path / "run", ok=False)
    assert done.returncode != 0
    assert "m.jsonl:2" in done.stderr and "missing key" in done.stderr


def test_missing_arguments_say_what_is_missing(tmp_path):
    done = asrlab("train", "--out", tmp_path / "run", ok=False)
    assert done.returncode == 2 and "--train" in done.stderr and "--val" in done.stderr


@pytest.mark.slow
def test_train_evaluate_transcribe(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    asrlab("train", "--train", tiny_corpus / "train.jsonl", "--val", tiny_corpus / "val.jsonl",
           "--out", run, "--epochs", "2", "--threads", "1", "--no-progress")
    for name in ("best.pt", "last.pt", "metrics.jsonl", "config.yaml", "check.json",
                 "skipped.jsonl", "train.log"):
        assert (run / name).exists(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    report = tmp_path / "report.json"
    asrlab("evaluate", "--model", run, "--data", tiny_corpus / "test.jsonl", "--out", report)
    r = json.loads(report.read_text())
    assert r["n"] == 4 and 0 <= r["cer"] and 0 <= r["empty"] <= 4
    rows = report.with_suffix(".utterances.jsonl").read_text().splitlines()
    assert len(rows) == 4 and {"ref", "hyp", "char_errors"} <= set(json.loads(rows[0]))
    wavs = sorted((tiny_corpus / "wavs" / "test").glob("*.wav"))[:2]
    lines = asrlab("transcribe", "--model", run / "best.pt", *wavs).stdout.splitlines()
    assert [l.split("\t")[0] for l in lines] == [str(w) for w in wavs]
    js = [json.loads(l) for l in asrlab("transcribe", "--model", run, "--json", *wavs).stdout.splitlines()]
    assert all({"text", "duration"} <= set(j) and j["duration"] > 0 for j in js)
    # resume for one more epoch through the CLI
    asrlab("train", "--resume", run, "--epochs", "3", "--threads", "1", "--no-progress")
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_transcribe_unreadable_file_is_named(tiny_corpus, tmp_path):
    bogus = tmp_path / "not_audio.wav"
    bogus.write_text("hello")
    run = tmp_path / "run"
    asrlab("train", "--train", tiny_corpus / "train.jsonl", "--val", tiny_corpus / "val.jsonl",
           "--out", run, "--epochs", "1", "--threads", "1", "--no-progress")
    done = asrlab("transcribe", "--model", run, bogus, ok=False)
    assert done.returncode == 1 and "not_audio.wav" in done.stderr


def test_train_flags_become_config_overrides():
    from asrlab.cli import build_parser
    from asrlab.commands.train import overrides_from_args

    args = build_parser(["train"]).parse_args(
        ["train", "--max-minutes", "0", "--lr", "1e-4", "--set", "augment.freq_masks=0",
         "--set", "augment.speed_perturb=[1.0]"])
    o = overrides_from_args(args)
    assert o["train"] == {"max_minutes": None, "lr": 1e-4}  # 0 = no time limit
    assert o["augment"] == {"freq_masks": 0, "speed_perturb": [1.0]}


def test_partial_config_file_keeps_the_preset(tmp_path):
    from asrlab.cli import build_parser
    from asrlab.commands.train import resolve

    c = tmp_path / "c.yaml"
    c.write_text("train:\n  lr: 0.0001\n")
    args = build_parser(["train"]).parse_args(
        ["train", "--train", "t", "--val", "v", "--out", "o", "--preset", "seed-crnn",
         "--config", str(c)])
    cfg = resolve(args)[0]
    assert cfg.model.name == "seed-crnn" and cfg.train.lr == 1e-4 and cfg.train.batch_size == 8
