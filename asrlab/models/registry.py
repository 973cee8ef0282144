"""Model registry: name -> encoder factory `(FeatureConfig, ModelConfig) -> Encoder`
(asrlab.models.encoder).

The names are those of asrlab.config.MODEL_NAMES (what `Config.validate` accepts; config sits
below the models and does not import them); tests/models/test_registry.py checks they agree.
"""

from __future__ import annotations

from asrlab.config import ConfigError
from asrlab.models.conformer import conformer
from asrlab.models.crnn import crnn_sub2, crnn_sub4, seed_crnn
from asrlab.models.pretrained import pretrained_encoder

MODELS = {
    "crnn-sub4": crnn_sub4,
    "crnn-sub2": crnn_sub2,
    "seed-crnn": seed_crnn,
    "conformer": conformer,
    "pretrained": pretrained_encoder,
}


def check_model_name(name: str) -> None:
    if name not in MODELS:
        raise ConfigError(f"invalid configuration:\n  - model.name {name!r} is unknown: use one "
                          f"of {sorted(MODELS)}")
