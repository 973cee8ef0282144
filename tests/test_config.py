import pytest

from asrlab.config import Config, ConfigError, PRESETS, preset


def test_yaml_round_trip(tmp_path):
    cfg = preset("seed-report")
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    assert Config.from_yaml(path) == cfg


def test_presets_validate_and_differ_where_the_report_says():
    for cfg in PRESETS.values():
        cfg.validate()
    assert PRESETS["seed-report"].model.init == "xavier"
    assert PRESETS["seed-report"].model.init_gain == 0.1
    assert PRESETS["seed-crnn"].model.init is None
    assert PRESETS["seed-crnn"].train.batch_size == 8
    assert PRESETS["seed-crnn"].train.optimizer == "adam"


def test_duration_bounds_must_be_ordered():
    with pytest.raises(ConfigError, match="min_duration .* below train.max_duration"):
        Config().merged({"train": {"min_duration": 5, "max_duration": 2}}).validate()
    Config().merged({"train": {"min_duration": 5, "max_duration": None}}).validate()


def test_validator_lists_every_problem_with_a_fix():
    cfg = Config().merged({"model": {"name": "nope", "dropout": 1.5},
                           "train": {"schedule": "linear"}})
    with pytest.raises(ConfigError) as e:
        cfg.validate()
    msg = str(e.value)
    assert "nope" in msg and "crnn-sub4" in msg
    assert "dropout" in msg and "schedule" in msg


def test_vtlp_range_is_checked_and_says_how_to_turn_it_off():
    assert Config().augment.vtlp == (1.0, 1.0)  # off by default
    Config().merged({"augment": {"vtlp": [0.9, 1.1]}}).validate()
    for bad in ([1.1, 0.9], [0.2, 1.0]):
        with pytest.raises(ConfigError, match=r"augment.vtlp.*\[1.0, 1.0\] for off"):
            Config().merged({"augment": {"vtlp": bad}}).validate()


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(ConfigError, match="lrr"):
        Config.from_dict({"train": {"lrr": 1}})


def test_numbers_written_as_yaml_strings_are_converted_or_named():
    cfg = Config().merged({"train": {"lr": "3e-3", "batch_size": "8", "max_minutes": None}})
    assert cfg.train.lr == 3e-3 and cfg.train.batch_size == 8 and cfg.train.max_minutes is None
    with pytest.raises(ConfigError, match="train.lr"):
        Config().merged({"train": {"lr": "fast"}})
    with pytest.raises(ConfigError, match="model.crnn.hidden"):
        Config().merged({"model": {"hidden": [1, 2]}})


def test_pad_end_is_for_whispers_log_mel_and_bounded():
    whisper = {"kind": "whisper", "sample_rate": 16000, "n_fft": 400, "win_ms": 25.0,
               "hop_ms": 10.0}
    Config().merged({"features": {**whisper, "pad_end_s": 0.4}}).validate()
    with pytest.raises(ConfigError, match="features.pad_end_s .*set it to 0"):
        Config().merged({"features": {"pad_end_s": 0.4}}).validate()  # asrlab's log-mel
    with pytest.raises(ConfigError, match="features.pad_end_s -0.1: use seconds .* 0 and 2"):
        Config().merged({"features": {**whisper, "pad_end_s": -0.1}}).validate()
