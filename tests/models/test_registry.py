import pytest

from asrlab.config import MODEL_NAMES, Config, ModelConfig
from asrlab.models import MODELS, build_model


def test_config_names_and_the_registry_agree():
    """Config.validate accepts exactly the names asrlab.models can build."""
    assert set(MODEL_NAMES) == set(MODELS)
    for name in set(MODEL_NAMES) - {"pretrained"}:
        Config().merged({"model": {"name": name}}).validate()
    # a pretrained encoder needs its source named (--encoder), and says so
    with pytest.raises(ValueError, match="--encoder"):
        Config().merged({"model": {"name": "pretrained"}}).validate()


def test_unknown_model_is_refused_by_build_model_too():
    with pytest.raises(ValueError, match="crnn-sub4"):
        build_model(Config(model=ModelConfig(name="nope")), 10)
