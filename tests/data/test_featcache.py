"""The per-run log-mel cache: bounded memory, disk spill, keys that never return stale features."""

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrlab.config import FeatureConfig
from asrlab.data.featcache import FeatureCache, config_namespace, entry_name
from asrlab.data.manifest import Utterance


def utts_in(tmp_path: Path, n: int = 3) -> list[Utterance]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, rng.standard_normal(1600).astype(np.float32) * 0.1, 16000)
        out.append(Utterance(f"u{i}", path, 0.1, "a"))
    return out


def feats(i: int) -> np.ndarray:
    return np.full((100, 80), float(i), np.float32)  # 32,000 bytes


def test_memory_is_bounded_and_the_rest_goes_to_disk(tmp_path):
    utts = utts_in(tmp_path)
    cache = FeatureCache(FeatureConfig(), utts, memory_mb=50_000 / 2 ** 20, disk_dir=tmp_path / "c")
    for i in range(3):
        cache.put(i, 1.0, feats(i))
    assert cache.bytes == 32_000 <= cache.limit  # one entry fits, two do not
    assert len(cache.memory) == 1
    assert len(list((tmp_path / "c").rglob("*.npy"))) == 2
    for i in range(3):
        np.testing.assert_array_equal(cache.get(i, 1.0), feats(i))
    assert cache.get(0, 0.9) is None  # another speed factor is another entry
    assert (cache.hits, cache.misses) == (3, 1)


def test_without_a_disk_folder_entries_past_the_bound_are_not_kept(tmp_path):
    cache = FeatureCache(FeatureConfig(), utts_in(tmp_path), memory_mb=50_000 / 2 ** 20)
    for i in range(3):
        cache.put(i, 1.0, feats(i))
    assert cache.get(0, 1.0) is not None and cache.get(2, 1.0) is None
    assert not list(tmp_path.rglob("*.npy"))


def test_a_changed_feature_config_never_reads_stale_features(tmp_path):
    utts = utts_in(tmp_path)
    old = FeatureCache(FeatureConfig(), utts, memory_mb=0, disk_dir=tmp_path / "c")
    old.put(0, 1.0, feats(7))
    assert FeatureCache(FeatureConfig(), utts, 0, tmp_path / "c").get(0, 1.0) is not None
    new_cfg = replace(FeatureConfig(), n_mels=40)
    assert config_namespace(new_cfg) != config_namespace(FeatureConfig())
    assert FeatureCache(new_cfg, utts, 0, tmp_path / "c").get(0, 1.0) is None


def test_a_rewritten_audio_file_gets_a_new_entry(tmp_path):
    utt = utts_in(tmp_path, 1)[0]
    before = entry_name(utt, 1.0)
    assert entry_name(utt, 1.1) != before
    sf.write(utt.audio_filepath, np.zeros(3200, np.float32), 16000)
    os.utime(utt.audio_filepath, ns=(1, 1))
    assert entry_name(utt, 1.0) != before


def test_a_torn_disk_entry_is_recomputed(tmp_path):
    utts = utts_in(tmp_path, 1)
    cache = FeatureCache(FeatureConfig(), utts, 0, tmp_path / "c")
    cache.put(0, 1.0, feats(1))
    (path,) = list((tmp_path / "c").rglob("*.npy"))
    path.write_bytes(path.read_bytes()[:40])  # a write cut short
    again = FeatureCache(FeatureConfig(), utts, 0, tmp_path / "c")
    assert again.get_or_compute(0, 1.0, lambda: feats(2))[0, 0] == 2.0


# ---- in the training dataset ---------------------------------------------------------------

from asrlab.config import AugmentConfig  # noqa: E402
from asrlab.data.dataset import SpeechDataset  # noqa: E402
from asrlab.data.tokenizer import CharTokenizer  # noqa: E402
from asrlab.features import FeaturePipeline, estimate_stats  # noqa: E402

# name -> (augmentation, whether later epochs can reuse cached variants)
AUGMENTS = {
    "speed and SpecAugment only": (AugmentConfig(), True),
    "every wave step sometimes": (AugmentConfig(noise_prob=0.3, pitch_prob=0.2, vocode_prob=0.2,
                                                bandlimit_prob=0.3, clip_prob=0.2), True),
    "gain always": (AugmentConfig(gain_db=(-6.0, 6.0)), False),  # every waveform changes
    "VTLP": (AugmentConfig(vtlp=(1.05, 1.1)), False),  # warped filterbanks: other log-mels
}


def speech_like(tmp_path: Path, n: int = 6) -> list[Utterance]:
    rng = np.random.default_rng(1)
    utts = []
    for i in range(n):
        seconds = 0.4 + 0.1 * i
        t = np.arange(int(seconds * 16000)) / 16000
        wave = (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)
                + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        path = tmp_path / f"s{i}.wav"
        sf.write(path, wave, 16000)
        utts.append(Utterance(f"s{i}", path, seconds, "ab"))
    return utts


def epochs_of_features(utts, aug, cache, epochs=3) -> list[list[np.ndarray]]:
    cfg = FeatureConfig()
    from asrlab.audio import load_audio

    pipeline = FeaturePipeline(cfg, estimate_stats([load_audio(u.audio_filepath) for u in utts], cfg))
    ds = SpeechDataset(utts, pipeline, CharTokenizer.train(["ab"]), aug, seed=3, feature_cache=cache)
    out = []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        out.append([np.asarray(ds[i].feats) for i in range(len(utts))])
    return out


@pytest.mark.parametrize("name", list(AUGMENTS))
def test_cached_features_are_bit_identical_to_the_uncached_path(tmp_path, name):
    utts = speech_like(tmp_path)
    aug, reusable = AUGMENTS[name]
    cache = FeatureCache(FeatureConfig(), utts, memory_mb=64)
    cached = epochs_of_features(utts, aug, cache, epochs=8)
    plain = epochs_of_features(utts, aug, None, epochs=8)
    for epoch_cached, epoch_plain in zip(cached, plain):
        for a, b in zip(epoch_cached, epoch_plain):
            np.testing.assert_array_equal(a, b)
    if reusable:
        assert cache.hits > 0 and cache.memory
    else:  # nothing may come from the cache
        assert cache.hits == 0 and not cache.memory


def test_the_dataset_cache_stays_within_its_memory_bound(tmp_path):
    utts = speech_like(tmp_path)
    limit_mb = 0.05  # a few utterances' worth
    cache = FeatureCache(FeatureConfig(), utts, memory_mb=limit_mb)
    epochs_of_features(utts, AugmentConfig(), cache, epochs=4)
    assert 0 < cache.bytes <= limit_mb * 2 ** 20
    assert len(cache.memory) < 3 * len(utts)  # not every variant fitted


def test_training_with_the_cache_is_identical_to_training_without(tmp_path, monkeypatch):
    """End to end: the scan's 1.0x log-mels seed the cache, train() serves every training item
    through it (counted inside train(): hits and misses of each FeatureCache it makes), and the
    losses match to the bit those of a run without a cache."""
    from asrlab.config import Config
    from asrlab.train import train
    from tests.conftest import write_tone_manifest

    counts = {"caches": 0, "hits": 0, "misses": 0}
    real_init, real_get = FeatureCache.__init__, FeatureCache.get

    def counting_init(self, *args, **kwargs):
        counts["caches"] += 1
        real_init(self, *args, **kwargs)

    def counting_get(self, i, speed):
        feats = real_get(self, i, speed)
        counts["hits" if feats is not None else "misses"] += 1
        return feats

    monkeypatch.setattr(FeatureCache, "__init__", counting_init)
    monkeypatch.setattr(FeatureCache, "get", counting_get)
    texts = ["ab", "ba", "abba", "baab", "aab", "bba"]
    manifest = write_tone_manifest(tmp_path / "data", texts)
    epochs = 3
    base = Config().merged({
        "model": {"hidden": 32, "conv_channels": 8},
        "train": {"epochs": epochs, "max_minutes": None, "batch_size": 2, "tensorboard": False,
                  "precision": "fp32", "threads": 1}})
    assert base.augment.speed_perturb == (0.9, 1.0, 1.1)  # 3 variants, no waveform changes
    losses, seen = {}, {}
    for name, mb in (("cached", 64.0), ("plain", 0.0)):
        counts.update(caches=0, hits=0, misses=0)
        cfg = base.merged({"train": {"feature_cache_mb": mb}})
        result = train(manifest, manifest, tmp_path / name, cfg, show_progress=False, force=True)
        losses[name] = [(m.train_loss, m.val_loss) for m in result.metrics]
        seen[name] = dict(counts)
    assert losses["cached"] == losses["plain"]
    served = epochs * len(texts)  # every training item of every epoch asks the cache
    assert seen["cached"]["caches"] == 1
    assert seen["cached"]["hits"] + seen["cached"]["misses"] == served, seen
    # at most one miss per (utterance, speed variant other than the scan's 1.0x)
    assert seen["cached"]["misses"] <= 2 * len(texts), seen
    assert seen["cached"]["hits"] >= served - 2 * len(texts), seen
    assert seen["plain"] == {"caches": 0, "hits": 0, "misses": 0}
