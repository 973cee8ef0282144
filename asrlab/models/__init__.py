"""Model registry: name -> encoder factory `(n_mels, ModelConfig) -> encoder`."""

from asrlab.models.crnn import crnn_sub2, crnn_sub4, seed_crnn


def _conformer(n_mels, cfg):
    from asrlab.models.conformer import conformer

    return conformer(n_mels, cfg)


MODELS = {
    "crnn-sub4": crnn_sub4,
    "crnn-sub2": crnn_sub2,
    "seed-crnn": seed_crnn,
    "conformer": _conformer,
}

from asrlab.models.ctc import CTCModel, build_model  # noqa: E402

__all__ = ["MODELS", "CTCModel", "build_model"]
