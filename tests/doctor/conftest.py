"""Fixtures for the doctor's tests: a small synthesized corpus, FSDD features, a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asrlab.config import Config, FeatureConfig, preset

FSDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd" / "recordings"
WORDS = "zero one two three four five six seven eight nine".split()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """24 train / 10 val synthesized English utterances (espeak-ng), 16 kHz."""
    from asrlab.synth import synthesize_corpus

    out = tmp_path_factory.mktemp("doctor_corpus")
    synthesize_corpus(out, n_train=24, n_val=10, n_test=1, seed=11, jobs=1, progress=False)
    return out


@pytest.fixture(scope="session")
def check_config() -> Config:
    """The original recipe's features and model (no time subsampling, no augmentation)."""
    return preset("seed-crnn")


@pytest.fixture(scope="session")
def fsdd_data():
    """Real spoken digits (one speaker, 120 files): normalized 8 kHz log-mel features and
    transcripts, with a character tokenizer."""
    from asrlab.audio import load_audio
    from asrlab.data.tokenizer import CharTokenizer
    from asrlab.features import FeaturePipeline, estimate_stats

    if not FSDD.is_dir():
        pytest.skip(f"FSDD recordings not found at {FSDD}")
    files = sorted(FSDD.glob("*_jackson_*.wav"))[:120]
    cfg = FeatureConfig(sample_rate=8000, n_fft=256, fmax=3800, n_mels=40)
    waves = [load_audio(f, 8000) for f in files]
    pipe = FeaturePipeline(cfg, estimate_stats(waves, cfg))
    feats = [torch.from_numpy(pipe(w)) for w in waves]
    texts = [WORDS[int(f.name[0])] for f in files]
    return {"ids": [f.stem for f in files], "feats": feats, "texts": texts,
            "tokenizer": CharTokenizer.train(texts), "n_mels": cfg.n_mels}


def tiny_model(n_mels: int, vocab: int, init: str | None = None, gain: float = 1.0, seed: int = 0):
    from asrlab.models import build_model

    torch.manual_seed(seed)
    cfg = Config.from_dict({"model": {"name": "crnn-sub4", "conv_channels": 8, "hidden": 48,
                                      "layers": 1, "dropout": 0.0, "init": init,
                                      "init_gain": gain}, "features": {"n_mels": n_mels}})
    return build_model(cfg, vocab)


def make_batch(data, idx, zero_input: bool = False):
    """Padded features (B, T, F), lengths, concatenated targets, target lengths, ids."""
    feats = [data["feats"][i] for i in idx]
    T = max(f.shape[0] for f in feats)
    x = torch.zeros(len(idx), T, data["n_mels"])
    for b, f in enumerate(feats):
        x[b, :f.shape[0]] = f
    tok = data["tokenizer"]
    tg = [torch.tensor(tok.encode(data["texts"][i])) for i in idx]
    return (x, torch.tensor([f.shape[0] for f in feats]), torch.cat(tg),
            torch.tensor([len(t) for t in tg]), [data["ids"][i] for i in idx])
