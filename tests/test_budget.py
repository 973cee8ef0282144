"""What a time-budgeted run tells the user after its first epoch (make demo relies on it)."""

import math

from asrlab.config import Config
from asrlab.budget import SCRATCH_REFERENCE, budget_forecast
from asrlab.train import train
from tests.conftest import write_tone_manifest


def test_a_fast_machine_is_told_when_it_will_pass_the_reference():
    text = budget_forecast(600, 20, 270, 270)  # 270 updates in 20 s, 10 minutes
    assert "8,100 updates (30 epochs)" in text
    assert "minute 6 here" in text  # 4,860 updates at 13.5 updates/s


def test_a_slow_machine_is_told_the_budget_falls_short_and_what_would_do():
    text = budget_forecast(600, 60, 270, 270)
    assert "2,700 updates" in text and "fewer than" in text
    minutes = SCRATCH_REFERENCE.updates / (270 / 60) / 60
    assert f"--max-minutes {math.ceil(minutes)}" in text  # 18


def test_the_forecast_is_logged_after_the_first_epoch_of_a_budgeted_run(tmp_path):
    manifest = write_tone_manifest(tmp_path / "data", ["ab", "ba", "abba", "baab"])
    cfg = Config().merged({"model": {"hidden": 32, "conv_channels": 8},
                           "train": {"epochs": 2, "max_minutes": 30, "batch_size": 2,
                                     "tensorboard": False, "threads": 1}})
    train(manifest, manifest, tmp_path / "run", cfg, show_progress=False, force=True)
    lines = [l for l in (tmp_path / "run" / "train.log").read_text().splitlines()
             if "the 30-minute budget will reach" in l]
    assert len(lines) == 1  # once, after the first epoch


def test_a_pretrained_run_counts_its_encoding_and_uses_its_own_reference():
    from asrlab.budget import PRETRAINED_REFERENCE

    text = budget_forecast(600, 30, 267, 267, before_s=120, reference=PRETRAINED_REFERENCE)
    assert "after 120 s computing the encoder's states" in text
    # 450 s left at 8.9 updates/s: 267 + 4,005 updates; the reference at 120 s + its updates / 8.9
    assert "4,272 updates" in text
    minute = (120 + PRETRAINED_REFERENCE.updates / (267 / 30)) / 60
    assert f"minute {minute:.0f} here" in text and "val CER 0.05" in text
