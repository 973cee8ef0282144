"""What a time-budgeted run tells the user after its first epoch (make demo relies on it)."""

from asrlab.config import Config
from asrlab.train import REFERENCE_UPDATES_TO_CER_010, budget_forecast, train
from tests.conftest import write_tone_manifest


def test_a_fast_machine_is_told_when_it_will_pass_the_reference():
    text = budget_forecast(600, 17, 98, 98)  # 98 updates in 17 s, 10 minutes
    assert "3,459 updates (35 epochs)" in text
    assert "minute 5 here" in text  # 1,650 updates at 5.76 updates/s


def test_a_slow_machine_is_told_the_budget_falls_short_and_what_would_do():
    text = budget_forecast(600, 60, 98, 98)
    assert "980 updates" in text and "fewer than" in text
    minutes = REFERENCE_UPDATES_TO_CER_010 / (98 / 60) / 60
    assert f"--max-minutes {int(minutes) + 1}" in text


def test_the_forecast_is_logged_after_the_first_epoch_of_a_budgeted_run(tmp_path):
    manifest = write_tone_manifest(tmp_path / "data", ["ab", "ba", "abba", "baab"])
    cfg = Config().merged({"model": {"hidden": 32, "conv_channels": 8},
                           "train": {"epochs": 2, "max_minutes": 30, "batch_size": 2,
                                     "tensorboard": False, "threads": 1}})
    train(manifest, manifest, tmp_path / "run", cfg, show_progress=False, force=True)
    lines = [l for l in (tmp_path / "run" / "train.log").read_text().splitlines()
             if "the 30-minute budget will reach" in l]
    assert len(lines) == 1  # once, after the first epoch
