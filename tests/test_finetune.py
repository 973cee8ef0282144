"""Fine-tuning: `asrlab train --init-from RUN` starts from a trained model's weights."""

import argparse
import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from asrlab import distributed
from asrlab.checkpoint import load
from asrlab.cli import main
from asrlab.commands.train import add_arguments, overrides_from_args
from asrlab.config import FINETUNE_TRAIN, Config
from asrlab.train import TrainingRefused, train
from asrlab.train_setup import build_setup

SMALL = Config().merged({
    "augment": {"speed_perturb": [1.0], "freq_masks": 0, "time_masks": 0},
    "model": {"hidden": 48, "layers": 1, "conv_channels": 8, "dropout": 0.1},
    "train": {"epochs": 1, "max_minutes": None, "batch_size": 4, "lr": 3e-3,
              "warmup_epochs": 0.5, "tensorboard": False, "monitor_every": 1000},
})


@pytest.fixture(scope="module")
def source(tiny_corpus, tmp_path_factory) -> Path:
    """A small model trained for one epoch on the tiny corpus."""
    run = tmp_path_factory.mktemp("finetune") / "source"
    train(tiny_corpus / "train.jsonl", tiny_corpus / "val.jsonl", run, SMALL,
          show_progress=False)
    return run


def finetune_cfg(source: Path, **train_keys) -> Config:
    return SMALL.merged({"train": {"init_from": str(source), **train_keys}})


def setup(cfg: Config, corpus: Path, run: Path, train_manifest: Path | None = None):
    run.mkdir(parents=True, exist_ok=True)
    return build_setup(run, cfg.validate(), distributed.init("cpu"),
                       train_manifest or corpus / "train.jsonl", corpus / "val.jsonl", None,
                       False, [])


def states_equal(a: dict, b: dict, prefix: str = "") -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    return bool(keys) and all(torch.equal(a[k], b[k]) for k in keys)


def test_same_vocabulary_starts_from_the_source_weights_and_statistics(source, tiny_corpus,
                                                                       tmp_path):
    src = load(source)
    s = setup(finetune_cfg(source), tiny_corpus, tmp_path / "ft")
    assert states_equal(s.run.model.state_dict(), src.model.state_dict())
    assert s.run.tokenizer.to_dict() == src.tokenizer.to_dict()
    assert (s.stats.mean == src.stats.mean).all() and (s.stats.std == src.stats.std).all()
    assert any("every weight" in n for n in s.notes)
    assert any("CMVN) kept" in n for n in s.notes)
    assert s.run.state.step == 0 and not s.optimizer.state  # fresh optimizer and schedule


def test_recompute_cmvn_estimates_statistics_on_the_new_training_set(source, tiny_corpus,
                                                                      tmp_path):
    src = load(source)
    train_m = relabelled(tiny_corpus, tmp_path, lambda t: t, keep=10)  # half the data
    s = setup(finetune_cfg(source, recompute_cmvn=True), tiny_corpus, tmp_path / "ft",
              train_m)
    assert not (s.stats.mean == src.stats.mean).all()
    assert any("recomputed" in n for n in s.notes)
    # and they are the statistics of exactly that training set (not the source's, not val's)
    from asrlab.audio import load_audio
    from asrlab.features import estimate_stats

    rows = [json.loads(line) for line in train_m.read_text().splitlines()]
    cfg = s.run.config.features
    want = estimate_stats((load_audio(r["audio_filepath"], cfg.sample_rate) for r in rows), cfg)
    np.testing.assert_allclose(s.stats.mean, want.mean, rtol=0, atol=1e-4)
    np.testing.assert_allclose(s.stats.std, want.std, rtol=1e-4, atol=1e-4)


def relabelled(corpus: Path, folder: Path, change, keep: int | None = None) -> Path:
    """The corpus's training manifest with transcripts changed (absolute audio paths)."""
    rows = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]
    rows = rows[:keep] if keep else rows
    for r in rows:
        r["audio_filepath"] = str((corpus / r["audio_filepath"]).resolve())
        r["text"] = change(r["text"])
    path = folder / "train_relabelled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_new_vocabulary_reinitializes_the_head_and_says_so(source, tiny_corpus, tmp_path,
                                                          capsys):
    src = load(source)
    missing = [c for c in string.ascii_lowercase if c not in src.tokenizer.symbols]
    assert missing, "the tiny corpus uses every letter: pick a symbol it lacks"
    train_m = relabelled(tiny_corpus, tmp_path, lambda t: f"{t} {missing[0]}")
    result = train(train_m, tiny_corpus / "val.jsonl", tmp_path / "ft", finetune_cfg(source),
                   show_progress=False)
    err = capsys.readouterr().err
    assert "output layer re-initialized because the vocabulary differs" in err
    assert f"new symbols {missing[0]!r}" in err
    assert "re-initialized" in (tmp_path / "ft" / "train.log").read_text()
    new = load(result.run_dir / "last.pt")
    assert new.tokenizer.vocab_size == src.tokenizer.vocab_size + 1
    assert new.model.head.weight.shape[0] == src.model.head.weight.shape[0] + 1
    # at the start, before the epoch: the encoder is the source's, the head is new
    s = setup(finetune_cfg(source), tiny_corpus, tmp_path / "ft2", train_m)
    assert states_equal(s.run.model.state_dict(), src.model.state_dict(), "encoder.")


def test_architecture_mismatch_is_a_clear_error(source, tiny_corpus, tmp_path):
    cfg = finetune_cfg(source).merged({"model": {"hidden": 64}, "features": {"n_mels": 40}})
    with pytest.raises(TrainingRefused) as e:
        setup(cfg, tiny_corpus, tmp_path / "ft")
    assert "model.crnn.hidden: source 48, this run 64" in str(e.value)
    assert "features.n_mels: source 80, this run 40" in str(e.value)
    assert "Drop the settings" in str(e.value)


def cli(tiny_corpus, out: Path, *extra: str) -> int:
    return main(["train", "--train", str(tiny_corpus / "train.jsonl"), "--val",
                 str(tiny_corpus / "val.jsonl"), "--out", str(out), "--no-progress", *extra])


def test_cli_mismatch_and_missing_source_end_with_a_message_not_a_traceback(
        source, tiny_corpus, tmp_path, capsys):
    assert cli(tiny_corpus, tmp_path / "a", "--init-from", str(source),
               "--set", "model.hidden=64") == 1
    err = capsys.readouterr().err
    assert "another architecture" in err and "model.crnn.hidden" in err
    assert "Traceback" not in err
    assert cli(tiny_corpus, tmp_path / "b", "--init-from", str(tmp_path / "nowhere")) == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and "nowhere" in err and "Traceback" not in err


def test_cli_takes_the_source_architecture_and_fine_tuning_defaults(source, tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    o = overrides_from_args(parser.parse_args(["--init-from", str(source)]))
    assert o["model"]["crnn"]["hidden"] == 48 and o["model"]["crnn"]["layers"] == 1
    assert o["features"] == SMALL.to_dict()["features"]
    assert {k: o["train"][k] for k in FINETUNE_TRAIN} == FINETUNE_TRAIN
    assert o["train"]["init_from"] == str(source)
    mine = overrides_from_args(parser.parse_args(
        ["--init-from", str(source), "--lr", "1e-3", "--set", "model.dropout=0.3",
         "--freeze-encoder-epochs", "2", "--recompute-cmvn"]))
    assert mine["train"]["lr"] == 1e-3 and mine["model"]["dropout"] == 0.3
    assert mine["train"]["warmup_epochs"] == FINETUNE_TRAIN["warmup_epochs"]
    assert mine["train"]["freeze_encoder_epochs"] == 2 and mine["train"]["recompute_cmvn"]
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  lr: 0.002\n")
    from_file = overrides_from_args(parser.parse_args(["--init-from", str(source), "--config",
                                                       str(config)]))
    assert "lr" not in from_file["train"]  # the --config file's value is not overridden
    assert "init_from" not in overrides_from_args(parser.parse_args([])).get("train", {})


def test_freeze_keeps_the_encoder_unchanged_for_n_epochs(source, tiny_corpus, tmp_path):
    src = load(source).model.state_dict()
    seen = []

    class Snapshot:
        def on_epoch_end(self, run, metrics, emissions):
            seen.append({k: v.clone() for k, v in run.model.state_dict().items()})

    cfg = finetune_cfg(source, freeze_encoder_epochs=1, epochs=2)
    train(tiny_corpus / "train.jsonl", tiny_corpus / "val.jsonl", tmp_path / "ft", cfg,
          callbacks=[Snapshot()], show_progress=False)
    assert len(seen) == 2
    assert states_equal(seen[0], src, "encoder.")  # weights and BatchNorm statistics
    assert not torch.equal(seen[0]["head.weight"], src["head.weight"])  # the head learned
    assert not states_equal(seen[1], src, "encoder.")  # unfrozen in epoch 2


def test_freeze_without_init_from_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="give --init-from RUN too"):
        SMALL.merged({"train": {"freeze_encoder_epochs": 2}}).validate()
