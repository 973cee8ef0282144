"""A model path -> the recognizer that runs it: the one place every verb turns `--model` into a
`asrlab.recognizer.BaseRecognizer` (transcribe, evaluate, tune-lm, serve, lm).

    load_recognizer("runs/default")   # run folder or checkpoint: asrlab.inference.Recognizer
    load_recognizer("model.onnx")     # exported model: asrlab.onnx_infer.OnnxRecognizer

Torch-free for an .onnx model: asrlab.inference (and so torch) is imported only when a
checkpoint is loaded. This cannot live in asrlab.recognizer, which both recognizers import for
their base class: importing them back from there would be an import cycle.
"""

from __future__ import annotations

from pathlib import Path

from asrlab.recognizer import BaseRecognizer


def load_recognizer(model: str | Path | None = None, onnx: str | Path | None = None,
                    threads: int | None = None) -> BaseRecognizer:
    """A Recognizer (PyTorch) or OnnxRecognizer; a `model` path ending in .onnx means ONNX.
    `threads`: CPU threads for the acoustic model (torch / onnxruntime intra-op)."""
    if onnx is None and model is not None and str(model).endswith(".onnx"):
        onnx = model
    if onnx is not None:
        from asrlab.onnx_infer import OnnxRecognizer

        return OnnxRecognizer(onnx, threads=threads)
    if model is None:
        raise ValueError("give --model RUN (a run folder or checkpoint) or --onnx model.onnx")
    from asrlab.inference import Recognizer  # torch: only for a checkpoint

    if threads:
        import torch

        torch.set_num_threads(threads)
    return Recognizer.from_path(model)
