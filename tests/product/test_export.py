"""ONNX export: the .onnx equals PyTorch (padded batches included); parity failures stop the export; the ONNX path never imports torch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch


ort = pytest.importorskip("onnxruntime")


def _val_features(rec, manifest):
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return [rec.pipeline(rec.load(manifest.parent / r["audio_filepath"])) for r in rows]


@pytest.mark.slow
def test_onnx_equals_pytorch_on_a_padded_batch(tiny_run, tiny_onnx, digit_corpus):
    from asrlab.inference import Recognizer, pad

    rec = Recognizer.from_path(tiny_run)
    feats = _val_features(rec, digit_corpus["val"])
    assert len({f.shape[0] for f in feats}) > 1, "need different lengths to test padding"
    x, n = pad(feats)
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    lp, olens = sess.run(None, {"feats": x.numpy(), "lengths": n.numpy()})
    with torch.inference_mode():
        ref, ref_len = rec.model(x, n)
        assert np.array_equal(olens, ref_len.numpy())
        assert np.abs(lp - ref.numpy()).max() <= 1e-4  # padded frames included
        for b, f in enumerate(feats):  # and each utterance alone
            alone, k = rec.model(*pad([f]))
            assert np.abs(lp[b, :int(k[0])] - alone[0].numpy()).max() <= 1e-4


@pytest.mark.slow
def test_onnx_metadata_makes_the_file_self_sufficient(tiny_run, tiny_onnx):
    from asrlab.checkpoint import load
    from asrlab.onnx_infer import OnnxRecognizer

    ckpt = load(tiny_run)
    rec = OnnxRecognizer(tiny_onnx)
    assert rec.tokenizer.symbols == ckpt.tokenizer.symbols
    assert rec.pipeline.cfg == ckpt.config.features
    assert np.array_equal(rec.pipeline.stats.mean, ckpt.stats.mean)
    assert rec.frame_seconds == pytest.approx(0.04)
    assert rec.meta["parity"]["ok"] and rec.meta["parity"]["max_abs_diff_batch"] <= 1e-4


@pytest.mark.slow
def test_onnx_and_pytorch_transcripts_are_identical(tiny_run, tiny_onnx, digit_corpus):
    from asrlab.model_loader import load_recognizer

    files = [digit_corpus["train"].parent / json.loads(line)["audio_filepath"]
             for m in ("train", "val") for line in digit_corpus[m].read_text().splitlines()]
    pt, ox = load_recognizer(tiny_run), load_recognizer(onnx=tiny_onnx)
    waves = [pt.load(f) for f in files]
    from asrlab.decode.greedy import greedy_decode

    texts = [[greedy_decode(lp, len(lp), r.tokenizer).text for lp in r.log_probs(waves)]
             for r in (pt, ox)]
    assert texts[0] == texts[1]
    assert any(texts[0]), "the overfit model should emit something"


@pytest.mark.slow
def test_parity_failure_exits_non_zero_with_numbers(tiny_run, digit_corpus, tmp_path,
                                                    monkeypatch, capsys):
    import asrlab.export as export
    from asrlab.cli import main

    real = export.exportable

    def broken(model):
        twin = real(model)
        with torch.no_grad():
            twin.head.bias[1] += 0.01  # a small, real divergence
        return twin

    monkeypatch.setattr(export, "exportable", broken)
    out = tmp_path / "m.onnx"
    rc = main(["export", "--model", str(tiny_run), "--out", str(out), "--data",
               str(digit_corpus["val"]), "--utterances", "3"])
    err = capsys.readouterr().err
    assert rc == 1 and "PARITY FAILED" in err and "max |diff| single" in err, err
    single = float(re.search(r"max \|diff\| single ([0-9.e+-]+)", err).group(1))
    assert 0.005 < single < 0.02, err  # the number reported is the divergence introduced
    assert not out.exists() and (tmp_path / "m.failed.onnx").exists()


@pytest.mark.slow
def test_export_uses_the_runs_val_manifest_or_names_the_flag(tiny_run, tmp_path):
    import shutil
    from pathlib import Path

    from asrlab.export import export_onnx

    result = export_onnx(tiny_run, tmp_path / "a.onnx", utterances=2)  # RUN/run.json's "val"
    assert result.data == Path(json.loads((tiny_run / "run.json").read_text())["val"])
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_run / "best.pt", bare / "best.pt")
    with pytest.raises(ValueError, match="--data"):
        export_onnx(bare, tmp_path / "b.onnx")


@pytest.mark.slow
def test_onnx_transcribe_never_imports_torch(tiny_onnx, digit_corpus):
    """`asrlab transcribe --onnx` in a fresh interpreter: torch must stay out of sys.modules."""
    wav = digit_corpus["val"].parent / json.loads(
        digit_corpus["val"].read_text().splitlines()[0])["audio_filepath"]
    code = ("import sys, json\n"
            "from asrlab.cli import main\n"
            f"rc = main(['transcribe', '--onnx', {str(tiny_onnx)!r}, '--json', {str(wav)!r}])\n"
            "assert rc == 0, rc\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "print('TORCH_MODULES', json.dumps(bad))\n")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": repo}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=repo, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    result = json.loads(lines[0])
    assert set(result) == {"file", "text", "words", "duration"}
    assert lines[-1] == "TORCH_MODULES []"
