"""Training on a pretrained encoder (`asrlab train --encoder`): each mode updates exactly the
parameters it should, the cached-states path computes what inference computes, and the run's
config records the source.

The encoder is a tiny randomly initialized transformers Whisper the tests save themselves
(tests/conftest.py: tiny_whisper); the corpus is espeak-ng speech made by asrlab's corpus
builder (tiny_corpus)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asrlab.checkpoint import load
from asrlab.config import Config
from asrlab.preflight import resolve_config

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def speech(tiny_corpus):
    return {split: tiny_corpus / f"{split}.jsonl" for split in ("train", "val", "test")}


def train_run(speech, whisper_folder, out, *flags: str, epochs: int = 2):
    from asrlab.cli import main

    rc = main(["train", "--train", str(speech["train"]), "--val", str(speech["val"]),
               "--out", str(out), "--encoder", str(whisper_folder), "--epochs", str(epochs),
               "--threads", "1", "--no-progress", "--force", "--max-minutes", "0",
               "--set", "train.tensorboard=false", "--set", "model.pretrained.hidden=16",
               "--set", "model.pretrained.proj=16", "--set", "model.pretrained.layers=1",
               "--set", "train.warmup_epochs=0.2", *flags])
    assert rc == 0
    return load(out / "last.pt")


def weights(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def source_weights(whisper_folder) -> dict:
    from asrlab.models.whisper import WhisperEncoder

    return WhisperEncoder.from_transformers(whisper_folder).state_dict()


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.slow
def test_frozen_encoder_stays_as_loaded_and_the_rest_learns(speech, whisper_folder, tmp_path):
    ckpt = train_run(speech, whisper_folder, tmp_path / "frozen", "--set",
                     "model.pretrained.layer_sum=true")  # SUPERB's weighted sum learns too
    state = ckpt.model.state_dict()
    assert changed(source_weights(whisper_folder), weights(state, "encoder.backbone.")) == set()
    untrained = Config.from_dict(ckpt.config.to_dict())
    torch.manual_seed(123)
    from asrlab.models import build_model

    fresh = build_model(untrained, ckpt.tokenizer.vocab_size).state_dict()
    learnt = changed({k: v for k, v in fresh.items() if not k.startswith("encoder.backbone.")},
                     state)
    assert "encoder.layer_weights" in learnt and "head.weight" in learnt
    assert any(k.startswith("encoder.rnn.") for k in learnt)
    assert any(k.startswith("encoder.proj.") for k in learnt)
    log = (tmp_path / "frozen" / "train.log").read_text()
    assert "encoder states, train: 20 utterance variants" in log  # computed once, cached


@pytest.mark.slow
def test_top_layer_learns_after_its_frozen_epoch_and_the_rest_of_the_encoder_never(
        speech, whisper_folder, tmp_path):
    ckpt = train_run(speech, whisper_folder, tmp_path / "top1", "--encoder-layers-trained", "1",
                     epochs=3)
    encoder = changed(source_weights(whisper_folder),
                      weights(ckpt.model.state_dict(), "encoder.backbone."))
    assert encoder and all(k.startswith("blocks.1.") for k in encoder)  # the top one only
    assert {k for k in source_weights(whisper_folder) if k.startswith("blocks.1.")
            and "weight" in k} <= encoder
    # after its frozen first epoch: epoch 1's checkpoint had it as loaded
    log = (tmp_path / "top1" / "train.log").read_text()
    assert "trained layers frozen for the first 1 epoch(s)" in log
    assert "epoch 1: the pretrained encoder's trained layers unfrozen" in log


@pytest.mark.slow
def test_every_layer_learns_with_minus_one(speech, whisper_folder, tmp_path):
    ckpt = train_run(speech, whisper_folder, tmp_path / "all", "--encoder-layers-trained", "-1",
                     "--set", "model.pretrained.frozen_epochs=0")
    source = source_weights(whisper_folder)
    encoder = changed(source, weights(ckpt.model.state_dict(), "encoder.backbone."))
    # every parameter but the fixed positions (a buffer) and the final norm: the last state
    # goes through ln_post, so it learns too
    assert encoder == {k for k in source if k != "positional_embedding"}
    assert "encoder states" not in (tmp_path / "all" / "train.log").read_text()


def test_cached_states_then_the_rest_is_the_whole_forward(whisper_folder):
    """What training runs from cached states (FromStates on frozen_states) is what inference
    runs (CTCModel.forward), for a frozen encoder, one whose top block trains and one whose
    every block trains from the cached embedding (layers_trained = the encoder's 2 layers)."""
    from asrlab.models import build_model
    from asrlab.models.pretrained import FromStates, load_encoder_weights
    from asrlab.pretrained import resolve_encoder

    for trained, layer_sum in [(t, s) for s in (True, False) for t in (0, 1, 2)]:
        cfg = resolve_config("default", None, {"model": {"name": "pretrained", "pretrained": {
            "source": str(whisper_folder), "layers_trained": trained, "hidden": 8,
            "proj": 8, "layers": 1, "layer_sum": layer_sum}}})
        torch.manual_seed(0)
        model = build_model(cfg.validate(), 12).eval()
        load_encoder_weights(model, resolve_encoder(whisper_folder))
        lengths = torch.tensor([230, 171, 96])
        x = torch.randn(3, 230, 80)
        with torch.no_grad():
            states, state_lens = model.encoder.frozen_states(x, lengths)
            # with a layer sum: the embedding and every frozen block's output; else the last
            assert states.shape[2] == model.encoder.cached_states == (
                3 - trained if layer_sum else 1)
            cached = FromStates(model)(states.half().float(), state_lens)[0]
            direct = model(x, lengths)[0]
            for b, n in enumerate(model.output_lengths(lengths).tolist()):
                # float16 storage of the states is all that differs
                assert (cached[b, :n] - direct[b, :n]).abs().max() < 1e-2
        assert torch.equal(model.output_lengths(lengths), state_lens)


def test_the_config_records_the_source_and_takes_its_features(whisper_folder):
    cfg = resolve_config("default", None, {"model": {"name": "pretrained",
                                                     "pretrained": {"source": str(whisper_folder)}}})
    p = cfg.validate().model.pretrained
    assert p.kind == "whisper" and len(p.sha256) == 64
    assert json.loads(p.arch)["layers"] == 2 and json.loads(p.arch)["width"] == 16
    assert cfg.features.kind == "whisper" and cfg.features.n_fft == 400
    assert cfg.augment.speed_perturb == (1.0,)  # the pretrained recipe, under the user's values
    mine = resolve_config("default", None, {"augment": {"speed_perturb": [0.9, 1.0, 1.1]},
                                            "model": {"name": "pretrained", "pretrained": {
                                                "source": str(whisper_folder)}}})
    assert mine.augment.speed_perturb == (0.9, 1.0, 1.1)


def test_a_changed_or_missing_source_is_one_clear_line(whisper_folder, tmp_path):
    from asrlab.config import ConfigError

    with pytest.raises(ConfigError, match="no such encoder"):
        resolve_config("default", None, {"model": {"name": "pretrained", "pretrained": {
            "source": str(tmp_path / "nowhere")}}})
    with pytest.raises(ConfigError, match="weights changed"):
        resolve_config("default", None, {"model": {"name": "pretrained", "pretrained": {
            "source": str(whisper_folder), "sha256": "0" * 64}}})


def test_waveform_augmentation_with_cached_states_is_refused_with_the_fix(whisper_folder):
    from asrlab.config import ConfigError

    cfg = resolve_config("default", None, {"augment": {"noise_prob": 0.5}, "model": {
        "name": "pretrained", "pretrained": {"source": str(whisper_folder)}}})
    with pytest.raises(ConfigError, match="model.pretrained.cache=false"):
        cfg.validate()
    cfg.merged({"model": {"pretrained": {"cache": False}}}).validate()  # then it is fine


def test_states_are_what_the_model_makes_of_each_utterance(speech, whisper_folder):
    """EncoderStates.fill (batched, sorted by length) gives each utterance what encoding it
    alone gives."""
    from asrlab.data.featcache import FeatureCache
    from asrlab.data.manifest import read_manifest
    from asrlab.audio import load_audio
    from asrlab.encoder_cache import EncoderStates
    from asrlab.features import FeaturePipeline
    from asrlab.models import build_model
    from asrlab.models.pretrained import load_encoder_weights
    from asrlab.pretrained import resolve_encoder

    cfg = resolve_config("default", None, {"model": {"name": "pretrained", "pretrained": {
        "source": str(whisper_folder)}}}).validate()
    model = build_model(cfg, 10).eval()
    load_encoder_weights(model, resolve_encoder(whisper_folder))
    utts, _ = read_manifest(speech["train"])
    waves = {u.id: load_audio(u.audio_filepath, 16000) for u in utts}
    pipeline = FeaturePipeline(cfg.features)
    cache = FeatureCache(cfg.features, utts, 100.0)
    states = EncoderStates(model.encoder, pipeline, utts, waves, cache, torch.device("cpu"),
                           batch_seconds=12.0)
    report = states.fill([1.0, 1.1])
    assert report.variants == 2 * len(utts) and cache.bytes > 0
    for i in (0, 5, 11):
        alone = states.encode([i], 1.1)[0]
        np.testing.assert_allclose(states.get(i, 1.1).astype(np.float32),
                                   alone.astype(np.float32), atol=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("trained", [0, 1])
def test_a_wav2vec2_encoder_trains_frozen_from_cached_states_or_its_top_layer(
        speech, tmp_path, trained):
    """The waveform family: frozen, its states cached (like Whisper's); with its top layer
    trained, every step runs it (transformers' layers cannot start from a cached state) and
    only that layer's weights move."""
    from tests.models.conftest import WAVEFORM_LAYERS, make_waveform_model

    folder = make_waveform_model("wav2vec2", "layer", tmp_path / "w2v")
    ckpt = train_run(speech, folder, tmp_path / "run", "--encoder-layers-trained", str(trained),
                     "--set", "model.pretrained.frozen_epochs=0")
    assert ckpt.config.features.kind == "waveform" and ckpt.config.model.pretrained.kind == \
        "wav2vec2"
    from asrlab.models.hf import HFEncoder
    from asrlab.pretrained import resolve_encoder

    source = HFEncoder.from_source(resolve_encoder(folder)).state_dict()
    moved = changed(source, weights(ckpt.model.state_dict(), "encoder.backbone."))
    top = (f"model.encoder.layers.{WAVEFORM_LAYERS - 1}.",  # `blocks` is the same ModuleList
           f"blocks.{WAVEFORM_LAYERS - 1}.")
    assert moved == (set() if not trained else {k for k in source if k.startswith(top)})
    log = (tmp_path / "run" / "train.log").read_text()
    assert ("encoder states, train" in log) == (not trained)
