"""`asrlab transcribe --onnx`, `evaluate` and `tune-lm` with an .onnx model and torch made
unimportable: the ONNX path needs onnxruntime only, and it does not load the sentence grammar
(asrlab.synth.sentences) either."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.product.conftest import REPO

BLOCK_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test (import of {name})")
        return None

sys.meta_path.insert(0, NoTorch())
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def test_the_blocker_blocks_torch():
    proc = run_python(BLOCK_TORCH + "import torch\n")
    assert proc.returncode != 0 and "torch is blocked" in proc.stderr


@pytest.mark.slow
def test_onnx_transcribe_runs_with_torch_blocked(tiny_onnx, digit_corpus):
    row = json.loads(digit_corpus["val"].read_text().splitlines()[0])
    wav = digit_corpus["val"].parent / row["audio_filepath"]
    code = BLOCK_TORCH + (
        "import json\n"
        "from asrlab.cli import main\n"
        f"rc = main(['transcribe', '--onnx', {str(tiny_onnx)!r}, '--json', {str(wav)!r}])\n"
        "assert rc == 0, rc\n"
        "print('SENTENCES', json.dumps('asrlab.synth.sentences' in sys.modules))\n")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    result = json.loads(lines[0])
    assert set(result) == {"file", "text", "words", "duration"}
    assert result["duration"] == pytest.approx(row["duration"], abs=1e-3)
    assert lines[-1] == "SENTENCES false"


@pytest.mark.slow
def test_onnx_evaluate_and_tune_lm_run_with_torch_blocked(tiny_onnx, digit_corpus, digit_lm,
                                                          tmp_path):
    out, tuned = tmp_path / "eval.json", tmp_path / "tune.json"
    data = str(digit_corpus["val"])
    code = BLOCK_TORCH + (
        "from asrlab.cli import main\n"
        f"rc = main(['evaluate', '--model', {str(tiny_onnx)!r}, '--data', {data!r}, "
        f"'--out', {str(out)!r}])\n"
        "assert rc == 0, rc\n"
        f"rc = main(['tune-lm', '--model', {str(tiny_onnx)!r}, '--data', {data!r}, "
        f"'--lm', {str(digit_lm)!r}, '--alphas', '0.5', '--betas', '1', '--beam', '4', "
        f"'--out', {str(tuned)!r}])\n"
        "assert rc == 0, rc\n"
        "print('TORCH', 'torch' in sys.modules)\n")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == "TORCH False"
    report = json.loads(out.read_text())
    assert report["n"] == 6 and report["skipped_items"] == [] and 0 <= report["cer"] <= 1
    assert len(out.with_suffix(".utterances.jsonl").read_text().splitlines()) == 6
    assert json.loads(tuned.read_text())["utterances"] == 6
