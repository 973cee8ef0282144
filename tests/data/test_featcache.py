"""The per-run log-mel cache: bounded memory, disk spill, keys that never return stale features."""

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
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
