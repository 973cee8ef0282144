"""Export a trained model to ONNX, with everything inference needs inside the .onnx file.

    result = export_onnx("runs/default", "model.onnx", data="data/val.jsonl")

Graph: `log_probs, out_lengths = model(feats (B, T, F) float32, lengths (B,) int64)`, batch and
time dynamic, opset 17, TorchScript exporter (`dynamo=False`). Why not the dynamo exporter (the
default since torch 2.9): on this model it took 80 s instead of 2 s and fixed the output's time
axis in the graph's shape info; the TorchScript exporter maps each nn.LSTM straight to ONNX's LSTM
op with clean dynamic axes. Its deprecation warning is silenced here; revisit if it is removed.

The BiLSTM (`asrlab.models.crnn.BiLSTM`) needs no swap: it never packs sequences, it runs the
backward direction over each utterance reversed within its own length (a gather), so a padded
ONNX batch equals PyTorch frame for frame, padding included.

The feature pipeline stays in Python (NumPy); the vocabulary, feature config, CMVN statistics and
frame duration go into the ONNX metadata (key `asrlab`, JSON), so the .onnx alone suffices.

Parity is checked on real utterances (--data, else the run's validation manifest named in
RUN/run.json) before the file is kept: max |log-prob difference| against
PyTorch, on each utterance alone and on one padded batch (padded frames too), must be <= 1e-4;
otherwise `ParityError` (the command exits non-zero with the numbers).
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asrlab.checkpoint import Checkpoint, load
from asrlab.inference import Recognizer, pad
from asrlab.recognizer import METADATA_KEY

OPSET = 17
METADATA_FORMAT = 1
PARITY_TOL = 1e-4


class ParityError(RuntimeError):
    """ONNX output differs from PyTorch beyond the tolerance; the message has the numbers."""


def exportable(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode, ready for the exporter."""
    return copy.deepcopy(model).eval()


# ---- metadata --------------------------------------------------------------------------------

def export_metadata(ckpt: Checkpoint, frame_seconds: float, parity: dict | None = None) -> dict:
    return {
        "format": METADATA_FORMAT,
        "tokenizer": ckpt.tokenizer.to_dict(),
        "features": ckpt.config.to_dict()["features"],
        "feature_stats": ckpt.stats.to_dict(),
        "frame_seconds": frame_seconds,
        "model": ckpt.config.to_dict()["model"],
        "text": ckpt.config.text.to_dict(),  # transcript rules: OnnxRecognizer.text_normalizer
        "checkpoint": str(ckpt.path),
        "checkpoint_meta": ckpt.meta,
        "parity": parity or {},
    }


def write_metadata(path: Path, metadata: dict) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(proto, str(path))


# ---- parity ----------------------------------------------------------------------------------

@dataclass
class Parity:
    utterances: int
    max_abs_diff_single: float  # each utterance alone vs PyTorch alone
    max_abs_diff_batch: float  # one padded ONNX batch vs PyTorch's padded batch, padding included
    max_abs_diff_batch_vs_single: float  # real frames of the ONNX batch vs PyTorch alone
    lengths_equal: bool
    tolerance: float = PARITY_TOL

    @property
    def ok(self) -> bool:
        worst = max(self.max_abs_diff_single, self.max_abs_diff_batch,
                    self.max_abs_diff_batch_vs_single)
        return self.lengths_equal and worst <= self.tolerance

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def check_parity(model: nn.Module, session, feats: list[np.ndarray]) -> Parity:
    """Compare an onnxruntime session with the PyTorch model on real features."""
    single = batch = cross = 0.0
    lengths_equal = True
    refs = []
    with torch.inference_mode():
        for f in feats:
            x, n = pad([f])
            ref, ref_len = model(x, n)
            out, out_len = session.run(None, {"feats": x.numpy(), "lengths": n.numpy()})
            lengths_equal &= bool(np.array_equal(out_len, ref_len.numpy()))
            single = max(single, float(np.abs(out - ref.numpy()).max()))
            refs.append(ref[0].numpy())
        x, n = pad(feats)
        ref_b, ref_len_b = model(x, n)
        out_b, out_len_b = session.run(None, {"feats": x.numpy(), "lengths": n.numpy()})
    lengths_equal &= bool(np.array_equal(out_len_b, ref_len_b.numpy()))
    batch = float(np.abs(out_b - ref_b.numpy()).max())
    for b, ref in enumerate(refs):
        cross = max(cross, float(np.abs(out_b[b, :len(ref)] - ref).max()))
    return Parity(len(feats), single, batch, cross, lengths_equal)


def parity_features(rec: Recognizer, data: Path, n: int) -> list[np.ndarray]:
    """Features of up to n utterances of a manifest, spread over its length range (short and
    long ones, so the padded batch pads a lot)."""
    from asrlab.audio import AudioError
    from asrlab.data.manifest import load_manifest

    utts = sorted(load_manifest(data), key=lambda u: u.duration)
    if not utts:
        raise ValueError(f"{data}: no utterances to check parity on")
    picks = sorted({round(i * (len(utts) - 1) / max(1, n - 1)) for i in range(n)})
    feats = []
    for i in picks:
        try:
            feats.append(rec.pipeline(rec.load(utts[i].audio_filepath)))
        except AudioError as e:
            raise ValueError(f"{data}: utterance {utts[i].id} ({utts[i].source}): {e}") from None
    return feats


def default_data(ckpt: Checkpoint) -> Path | None:
    """The run's validation manifest (asrlab.run_folder.validation_manifest)."""
    from asrlab.run_folder import validation_manifest

    return validation_manifest(ckpt.path.parent, ckpt.meta)


# ---- export ----------------------------------------------------------------------------------

@dataclass
class ExportResult:
    path: Path
    parity: Parity
    data: Path
    bytes: int

    def summary(self) -> dict:
        return {"onnx": str(self.path), "bytes": self.bytes, "data": str(self.data),
                "parity": self.parity.to_dict()}


def export_onnx(model_path: str | Path, out: str | Path, data: str | Path | None = None,
                utterances: int = 8, tolerance: float = PARITY_TOL) -> ExportResult:
    """Export, check parity, embed metadata. On a parity failure the .onnx is kept beside as
    OUT.failed.onnx for inspection and ParityError is raised."""
    import onnxruntime as ort

    ckpt = load(model_path)
    rec = Recognizer(ckpt)
    data = Path(data) if data else default_data(ckpt)
    if data is None:
        raise ValueError(f"{model_path}: the run does not name an existing validation manifest "
                         f"(RUN/run.json); pass --data VAL.jsonl (real utterances to check "
                         f"parity on)")
    feats = parity_features(rec, data, utterances)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    model = exportable(ckpt.model)
    x, n = pad(feats[:2])
    with warnings.catch_warnings():  # the legacy exporter's deprecation and tracer notes
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        torch.onnx.export(model, (x, n), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=["feats", "lengths"],
                          output_names=["log_probs", "out_lengths"],
                          dynamic_axes={"feats": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                                        "log_probs": {0: "batch", 1: "frames"},
                                        "out_lengths": {0: "batch"}})
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    parity = check_parity(ckpt.model, session, feats)
    parity.tolerance = tolerance
    write_metadata(tmp, export_metadata(ckpt, rec.frame_seconds, parity.to_dict()))
    if not parity.ok:
        failed = out.with_name(out.stem + ".failed.onnx")
        os.replace(tmp, failed)
        raise ParityError(
            f"ONNX output differs from PyTorch on {parity.utterances} utterances of {data}: "
            f"max |diff| single {parity.max_abs_diff_single:.3g}, padded batch "
            f"{parity.max_abs_diff_batch:.3g}, batch vs single "
            f"{parity.max_abs_diff_batch_vs_single:.3g} (tolerance {tolerance:g}); lengths equal: "
            f"{parity.lengths_equal}. Kept for inspection: {failed}")
    os.replace(tmp, out)
    return ExportResult(out, parity, data, out.stat().st_size)
