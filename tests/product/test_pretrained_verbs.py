"""Every verb on a model trained on a pretrained encoder (a tiny random Whisper the tests make,
with 0.2 s of silence appended to every input: features.pad_end_s, capped at the 30 s window):
the checkpoint is self-contained (the encoder's folder is deleted after training), and evaluate,
transcribe (word times, audio longer than one 30 s window), export (parity, then transcription
with torch blocked), serve, diagnose, tune-lm, --init-from and DDP all work on it. Mechanics,
not accuracy: the model is trained for a few epochs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import tiny_whisper
from tests.product.conftest import REPO, free_port, wait_until_up
from tests.product.test_torch_free import BLOCK_TORCH

pytestmark = pytest.mark.slow

TRAIN_FLAGS = ["--threads", "1", "--no-progress", "--force", "--max-minutes", "0",
               "--set", "train.tensorboard=false", "--set", "model.pretrained.hidden=16",
               "--set", "model.pretrained.proj=16", "--set", "model.pretrained.layers=1"]


def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "asrlab", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=900)


@pytest.fixture(scope="module")
def pretrained_run(tiny_corpus, tmp_path_factory):
    """(run folder, corpus): trained with --encoder on a folder that is gone afterwards."""
    root = tmp_path_factory.mktemp("pretrained_verbs")
    source = tiny_whisper(root / "whisper")
    run = root / "run"
    done = cli("train", "--train", tiny_corpus / "train.jsonl", "--val",
               tiny_corpus / "val.jsonl", "--out", run, "--encoder", source, "--epochs", "3",
               "--set", "features.pad_end_s=0.2", *TRAIN_FLAGS)
    assert done.returncode == 0, done.stderr[-3000:]
    # the recipe averages the best epochs (average.pt when it validates no worse than best.pt;
    # this run's three epochs improve on each other, so not here): the line naming the run's
    # model names what the verbs below will load
    from asrlab.checkpoint import resolve_checkpoint

    assert "average of epochs 1, 2, 3: val CER" in (run / "train.log").read_text()
    said = "".join(done.stderr.split())  # the console wraps long lines
    assert f"checkpoint{resolve_checkpoint(run)}metrics" in said
    shutil.rmtree(source)  # the checkpoint must not need it
    return run, tiny_corpus


def long_file(corpus, path, seconds: float = 41.0):
    """Test utterances joined with pauses until `seconds`: longer than one 30 s window."""
    rows = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]
    parts, total = [], 0
    while total < seconds * 16000:
        for r in rows:
            wave, sr = sf.read(corpus / r["audio_filepath"], dtype="float32")
            assert sr == 16000
            parts += [wave, np.zeros(4000, np.float32)]
            total += len(wave) + 4000
    sf.write(path, np.concatenate(parts)[:int(seconds * 16000)], 16000)
    return path


def test_evaluate_and_transcribe_agree_with_word_times_and_long_audio(pretrained_run, tmp_path):
    run, corpus = pretrained_run
    out = tmp_path / "eval.json"
    done = cli("evaluate", "--model", run, "--data", corpus / "test.jsonl", "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["n"] == 4 and report["skipped"] == 0 and 0 <= report["cer"]
    rows = [json.loads(line) for line in (corpus / "test.jsonl").read_text().splitlines()]
    files = [corpus / r["audio_filepath"] for r in rows] + [long_file(corpus, tmp_path / "l.wav")]
    done = cli("transcribe", "--model", run, "--json", *files)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == 5
    per_utt = {json.loads(line)["id"]: json.loads(line)["hyp"] for line in
               (tmp_path / "eval.utterances.jsonl").read_text().splitlines()}
    assert [r["text"] for r in results[:4]] == [per_utt[r["id"]] for r in rows]
    longest = results[4]
    assert longest["duration"] == pytest.approx(41.0, abs=0.01)
    for w in longest["words"]:
        assert 0 <= w["start"] <= w["end"] <= longest["duration"]


def test_the_silence_appended_gives_frames_where_the_config_says(pretrained_run):
    """features.pad_end_s travels in the checkpoint; the recognizer's output frames are the ones
    asrlab.frames counts (the doctor and the corpus builder use it), 10 more than unpadded."""
    from asrlab.frames import output_frames
    from asrlab.inference import Recognizer

    run, _ = pretrained_run
    rec = Recognizer.from_path(run)
    config = rec.ckpt.config
    assert config.features.pad_end_s == 0.2
    unpadded = replace(config, features=replace(config.features, pad_end_s=0.0))
    waves = [np.full(n, 0.01, np.float32) for n in (8000, 16000, 479_000)]
    for wave, lp in zip(waves, rec.log_probs(waves)):
        assert len(lp) == output_frames(config, len(wave))
    assert output_frames(config, 16000) == output_frames(unpadded, 16000) + 10  # 50 frames/s
    assert output_frames(config, 479_000) == output_frames(unpadded, 480_000)  # the window


def test_export_keeps_parity_and_transcribes_without_torch(pretrained_run, tmp_path):
    run, corpus = pretrained_run
    onnx = tmp_path / "model.onnx"
    done = cli("export", "--model", run, "--out", onnx, "--data", corpus / "val.jsonl")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["parity"]["ok"]
    wav = corpus / json.loads((corpus / "test.jsonl").read_text().splitlines()[0])[
        "audio_filepath"]
    pt = cli("transcribe", "--model", run, wav)
    code = BLOCK_TORCH + (
        "import sys\nfrom asrlab.cli import main\n"
        f"rc = main(['transcribe', '--onnx', {str(onnx)!r}, {str(wav)!r}])\n"
        "assert 'torch' not in sys.modules\nsys.exit(rc)\n")
    ox = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                        env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert ox.returncode == 0, ox.stderr[-2000:]
    assert ox.stdout == pt.stdout


def test_serve_answers_with_the_pretrained_model(pretrained_run, tmp_path):
    import httpx

    run, corpus = pretrained_run
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "asrlab", "serve", "--model", str(run),
                                 "--host", "127.0.0.1", "--port", str(port), "--threads", "1",
                                 "--log-level", "warning"], stdout=f, stderr=subprocess.STDOUT,
                                env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, log)
        row = json.loads((corpus / "test.jsonl").read_text().splitlines()[0])
        r = httpx.post(url + "/v1/transcribe", timeout=60, files={
            "file": ("a.wav", (corpus / row["audio_filepath"]).read_bytes())})
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"text", "words", "duration"}
    finally:
        proc.terminate()
        proc.wait(10)


def test_diagnose_and_tune_lm(pretrained_run, tmp_path):
    from asrlab.decode.lm import build_lm

    run, corpus = pretrained_run
    done = cli("diagnose", run, "--data", corpus / "val.jsonl")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "diagnosis.md").is_file() and (run / "diagnosis.html").is_file()
    lm = build_lm([corpus / "train.jsonl"], 3, tmp_path / "lm").arpa
    done = cli("tune-lm", "--model", run, "--data", corpus / "val.jsonl", "--lm", lm,
               "--alphas", "0.3", "0.6", "--betas", "0", "1", "--out", tmp_path / "tune.json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(json.loads((tmp_path / "tune.json").read_text())["grid"]) == 4


def test_init_from_and_ddp_take_the_encoder_from_the_checkpoint(pretrained_run, tmp_path):
    from asrlab.checkpoint import load

    run, corpus = pretrained_run
    done = cli("train", "--train", corpus / "train.jsonl", "--val", corpus / "val.jsonl",
               "--out", tmp_path / "ft", "--init-from", run, "--epochs", "1", *TRAIN_FLAGS)
    assert done.returncode == 0, done.stderr[-2000:]
    source, tuned = load(run), load(tmp_path / "ft")
    assert tuned.config.model.pretrained.sha256 == source.config.model.pretrained.sha256
    for key, value in source.model.state_dict().items():
        if key.startswith("encoder.backbone."):  # frozen: the source's encoder, unchanged
            assert np.array_equal(value.numpy(), tuned.model.state_dict()[key].numpy()), key
    # two gloo processes from the same checkpoint: the frozen states cached on each rank
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2"]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(launcher + [
        "-m", "asrlab", "train", "--train", str(corpus / "train.jsonl"), "--val",
        str(corpus / "val.jsonl"), "--out", str(tmp_path / "ddp"), "--init-from", str(run),
        "--epochs", "1", *TRAIN_FLAGS], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "ddp" / "last.pt").is_file()
