"""Models: the registry of encoders by name (asrlab.models.registry) and the CTC model around them
(asrlab.models.ctc).

The names below load on first use (PEP 562), so that the torch-free modules of this package
(asrlab.models.ct2, read by asrlab.pretrained) import without torch."""

import importlib

_EXPORTS = {"CTCModel": "asrlab.models.ctc", "build_model": "asrlab.models.ctc",
            "MODELS": "asrlab.models.registry", "check_model_name": "asrlab.models.registry"}

__all__ = ["MODELS", "CTCModel", "build_model", "check_model_name"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'asrlab.models' has no attribute {name!r}")
