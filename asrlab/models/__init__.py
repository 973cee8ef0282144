"""Models: the registry of encoders by name (asrlab.models.registry) and the CTC model around them
(asrlab.models.ctc)."""

from asrlab.models.ctc import CTCModel, build_model
from asrlab.models.registry import MODELS, check_model_name

__all__ = ["MODELS", "CTCModel", "build_model", "check_model_name"]
