"""Training with the doctor on, and `asrlab diagnose` after it, on real (small) runs.

The collapse run is the original failure in miniature: the seed-report recipe (xavier init
with gain 0.1, Adam 1e-3 warmed up over hundreds of updates) on a tiny CRNN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asrlab.config import preset
from asrlab.doctor.diagnose import diagnose
from asrlab.doctor.findings import read_findings
from asrlab.doctor.monitor import read_trace
from asrlab.doctor.report import write_reports
from asrlab.train import TrainingRefused, train

from . import zoo

TINY = {"model": {"name": "crnn-sub4", "conv_channels": 8, "hidden": 32, "layers": 1},
        "augment": {"speed_perturb": [1.0], "freq_masks": 0, "time_masks": 0},
        "train": {"tensorboard": False, "threads": 1, "max_minutes": None}}


def tiny(base="default", **train_over):
    cfg = preset(base).merged({"model": TINY["model"], "augment": TINY["augment"]})
    return cfg.merged({"train": {**TINY["train"], **train_over}})


@pytest.fixture(scope="module")
def weak_run(corpus, tmp_path_factory) -> Path:
    """336 updates of the seed-report recipe on a tiny model: stays all-blank."""
    run = tmp_path_factory.mktemp("weak") / "run"
    cfg = tiny("seed-report", batch_size=2, epochs=28, warmup_epochs=58, monitor_every=10)
    cfg = cfg.merged({"model": {"init": "xavier", "init_gain": 0.1, "conv_channels": 4},
                      "features": {"n_mels": 40}})  # smaller: the test stays ~30 s
    val = zoo.write(run.parent / "val3.jsonl", zoo.rows(corpus / "val.jsonl")[:3])
    train(corpus / "train.jsonl", val, run, cfg, show_progress=False)
    (run / "run.json").write_text(json.dumps({"train": str(corpus / "train.jsonl"), "val": str(val)}))
    return run


@pytest.mark.slow
def test_collapse_is_flagged_during_training_and_ranked_first_after(weak_run):
    during = read_findings(weak_run / "findings.jsonl")
    collapse = [f for f in during if f.code == "BLANK_COLLAPSE"]
    assert collapse, [str(f) for f in during]
    assert collapse[0].evidence["updates"] <= 336 and "gain 0.1" in collapse[0].message
    assert during[0].code == "UNDERTRAINED" and during[0].severity == "info"  # blank phase first

    diag = diagnose(weak_run)  # data: the run's val manifest (run.json)
    top = diag.findings[0]
    assert top.code == "BLANK_COLLAPSE" and top.severity == "error"
    assert top.evidence["likely_causes"][0].startswith("initialization")
    assert all(u.all_blank and u.hyp == "" for u in diag.utterances)
    assert diag.stats["emissions"]["blank_ratio"] == 1.0

    paths = write_reports(diag)
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") >= 6  # loss, CER, blank, 3 posteriorgrams
    assert "BLANK_COLLAPSE" in page and "init-gain 1.0" in page
    saved = json.loads(paths["json"].read_text())
    assert saved["findings"][0]["code"] == "BLANK_COLLAPSE" and "emissions" in saved["stats"]
    assert "BLANK_COLLAPSE" in paths["md"].read_text()


@pytest.mark.slow
def test_diagnose_command_and_feature_mismatch_on_new_data(weak_run, corpus, tmp_path):
    from asrlab.cli import main

    loud = zoo.gain(corpus / "val.jsonl", tmp_path, 30.0)  # +30 dB: far from training stats
    assert main(["diagnose", str(weak_run), "--data", str(loud), "--out", str(tmp_path / "d"),
                 "--samples", "3"]) == 0
    saved = json.loads((tmp_path / "d" / "diagnosis.json").read_text())
    fm = [f for f in saved["findings"] if f["code"] == "FEATURE_MISMATCH"]
    assert fm and fm[0]["evidence"]["level_db"] > 20
    assert main(["diagnose", str(weak_run), "--out", str(tmp_path / "e"), "--fail-on-error"]) == 1


def test_monitor_in_train_names_infeasible_utterance_before_and_during(corpus, tmp_path):
    train_m = zoo.long_text(corpus / "train.jsonl", tmp_path / "data", i=2)
    run = tmp_path / "run"
    train(train_m, corpus / "val.jsonl", run, tiny(batch_size=4, epochs=2, monitor_every=2),
          show_progress=False)
    before = read_findings(run / "check.json")
    f, = [f for f in before if f.code == "INFEASIBLE_LENGTH"]
    assert f.evidence["ids"] == ["train_00002"]
    during = read_findings(run / "findings.jsonl")
    nf = [f for f in during if f.code == "NONFINITE_LOSS"]
    assert len(nf) == 1 and nf[0].evidence["ids"] == ["train_00002"]  # once, not every epoch
    assert nf[0].evidence["causes"]["train_00002"].startswith("infeasible")
    obs, losses = read_trace(run)
    assert {o.source for o in obs} == {"train", "val"} and len(losses) == 12


def test_train_refuses_on_check_errors_unless_forced(corpus, tmp_path):
    val = zoo.all_8k(corpus / "val.jsonl", tmp_path / "v8")
    with pytest.raises(TrainingRefused, match="SAMPLE_RATE_MISMATCH"):
        train(corpus / "train.jsonl", val, tmp_path / "run", tiny(epochs=1), show_progress=False)
    saved = json.loads((tmp_path / "run" / "check.json").read_text())["findings"]
    assert saved[0]["severity"] == "error" and saved[0]["code"] == "SAMPLE_RATE_MISMATCH"
