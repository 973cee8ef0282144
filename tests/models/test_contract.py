"""The encoder contract: every encoder declares its time axis (asrlab.frames) and the frame
counts, rates and outputs of the existing models are what they were before it."""

import numpy as np
import pytest
import torch

from asrlab import frames
from asrlab.checkpoint import load, save_checkpoint
from asrlab.config import Config
from asrlab.data.tokenizer import build_tokenizer
from asrlab.features import FeatureStats, LogMel
from asrlab.models import build_model
from asrlab.models.encoder import Encoder

SCRATCH = ["crnn-sub4", "crnn-sub2", "seed-crnn", "conformer"]
# A config as earlier versions wrote it: the flat model keys, no features.kind.
LEGACY = {"conv_channels": 4, "hidden": 16, "layers": 1, "d_model": 32, "heads": 2}


def legacy_config(name: str) -> Config:
    return Config.from_dict({"model": {"name": name, **LEGACY}, "features": {"n_mels": 20}})


@pytest.mark.parametrize("name", SCRATCH)
def test_declared_stages_give_the_frames_the_model_makes(name):
    cfg = legacy_config(name)
    model = build_model(cfg, 7).eval()
    assert isinstance(model.encoder, Encoder)
    lengths = torch.arange(1, 260)
    with torch.no_grad():
        _, out = model(torch.randn(len(lengths), 259, 20), lengths)
    assert torch.equal(out, model.output_lengths(lengths))
    assert out.tolist() == [frames.stage_lengths(int(n), frames.time_stages(cfg)) for n in lengths]
    # and from samples, without torch, as the doctor and the corpus builder count them
    logmel = LogMel(cfg.features)
    samples = np.array([1, 399, 400, 401, 560, 16000, 48123])
    feat = torch.tensor([logmel(np.zeros(s, np.float32)).shape[0] for s in samples])
    assert frames.output_frames(cfg, samples).tolist() == model.output_lengths(feat).tolist()


@pytest.mark.parametrize("name,seconds", [("crnn-sub4", 0.04), ("crnn-sub2", 0.02),
                                          ("seed-crnn", 0.01), ("conformer", 0.04)])
def test_frame_rates(name, seconds):
    assert frames.frame_seconds(legacy_config(name)) == pytest.approx(seconds)


# Made by the code before the encoder contract (c807c56) with the same seeds: output lengths,
# the sum of the real frames' log-probs, and the first frame of the first utterance.
BEFORE = {
    "crnn-sub4": ([15, 8], -313.7550964355469, [-2.03307, -2.00532, -1.89876, -1.99669, -1.99529, -1.75676, -1.96373]),
    "crnn-sub2": ([29, 16], -613.9054565429688, [-2.03201, -2.00741, -1.90226, -1.99539, -2.00032, -1.75039, -1.96324]),
    "seed-crnn": ([57, 31], -1202.1160888671875, [-1.91321, -1.95853, -2.00625, -1.80089, -2.07137, -1.81771, -2.09336]),
    "conformer": ([15, 8], -331.0721740722656, [-1.9403, -1.8879, -1.8793, -1.90428, -1.92633, -1.54298, -3.12589]),
}


def reference_output(model):
    x = torch.randn(2, 57, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        lp, lens = model.eval()(x, torch.tensor([57, 31]))
    return lp, lens


@pytest.mark.parametrize("name", SCRATCH)
def test_existing_models_compute_what_they_computed_before(name):
    torch.manual_seed(0)  # same seed, same parameter order: the same weights as before
    lp, lens = reference_output(build_model(legacy_config(name), 7))
    want_lens, want_sum, want_first = BEFORE[name]
    assert lens.tolist() == want_lens
    total = float(lp[0, :lens[0]].sum() + lp[1, :lens[1]].sum())
    assert total == pytest.approx(want_sum, rel=1e-5)
    np.testing.assert_allclose(lp[0, 0].numpy(), want_first, atol=1e-4)


@pytest.mark.parametrize("name", SCRATCH)
def test_a_checkpoint_written_before_loads_and_computes_the_same(tmp_path, name):
    cfg, tokenizer = legacy_config(name), build_tokenizer("char", ["abcdef"])
    torch.manual_seed(0)
    model = build_model(cfg, tokenizer.vocab_size)
    path = save_checkpoint(tmp_path / "old.pt", model=model, config=cfg, tokenizer=tokenizer,
                           stats=FeatureStats(np.zeros(20, np.float32), np.ones(20, np.float32), 1),
                           meta={})
    state = torch.load(path, weights_only=False)  # rewrite its config as earlier versions did
    state["config"]["model"] = {"name": name, "dropout": 0.1, "init": None, "init_gain": 1.0,
                                **LEGACY}
    del state["config"]["features"]["kind"], state["config"]["features"]["normalize"]
    torch.save(state, path)
    ckpt = load(path)
    assert ckpt.config.model == cfg.model
    assert ckpt.config.features.kind == "logmel"
    lp, _ = reference_output(ckpt.model)
    want, _ = reference_output(model)
    assert torch.equal(lp, want)
