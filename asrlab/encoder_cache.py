"""A pretrained encoder's frozen states, computed once per run instead of every epoch.

When some of a pretrained encoder stays frozen (`model.pretrained.layers_trained` is not -1), the
part below its first trained block gives the same output for the same input in every epoch:
`PretrainedEncoder.frozen_states`. Training computes it once per (utterance, speed factor), in
batches sorted by length, and each step runs only the rest (`from_states`): a CPU epoch then
costs the downstream, not the encoder. Inference runs the whole encoder (`forward`), the same two
halves in a row.

States are stored as float16 (T', S, D) in an asrlab.data.featcache.FeatureCache: in memory up
to `train.feature_cache_mb`, the rest as memory-mapped files under `train.feature_cache_dir`
(their folder named by the encoder's weights, its cut and the feature config), or, with neither,
computed again when asked. Only the speed factors the recipe draws are encoded.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from asrlab.data.augment import speed_perturb
from asrlab.data.featcache import FeatureCache, config_namespace
from asrlab.data.manifest import Utterance
from asrlab.features import FeaturePipeline
from asrlab.frames import input_rate
from asrlab.recognizer import length_batches, pad_frames


@dataclass(frozen=True)
class EncodeReport:
    variants: int  # (utterance, speed) pairs encoded
    audio_seconds: float
    seconds: float
    megabytes: float  # of states kept in memory


def states_namespace(encoder, pipeline: FeaturePipeline, sha256: str) -> str:
    """Names what the states depend on: the weights, the cut (frozen blocks, layer sum) and the
    features."""
    blob = f"{sha256}|{encoder.split}|{encoder.cached_states}|{config_namespace(pipeline.cfg)}"
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


class EncoderStates:
    """(utterance index, speed factor) -> frozen states (T', S, D) float16."""

    def __init__(self, encoder, pipeline: FeaturePipeline, utts: list[Utterance],
                 waves: dict[str, np.ndarray], cache: FeatureCache, device: torch.device,
                 batch_seconds: float = 100.0):
        self.encoder, self.pipeline, self.utts = encoder, pipeline, utts
        self.waves, self.cache, self.device = waves, cache, device
        self.batch_seconds = batch_seconds
        # states per second of audio: the backbone's output rate (before any stacking)
        self.rate = input_rate(pipeline.cfg) / math.prod(s.stride for s in encoder.backbone.stages)

    def wave(self, i: int, speed: float) -> np.ndarray:
        return speed_perturb(self.waves[self.utts[i].id], speed)

    @torch.no_grad()
    def encode(self, idx: list[int], speed: float) -> list[np.ndarray]:
        """States of these utterances at this speed, one (T', S, D) float16 array each."""
        x, lengths = pad_frames([self.pipeline(self.wave(i, speed)) for i in idx])
        states, out_lens = self.encoder.frozen_states(torch.from_numpy(x).to(self.device),
                                                      torch.from_numpy(lengths).to(self.device))
        states = states.to(torch.float16).cpu().numpy()  # (B, T', S, D)
        return [states[b, :int(n)].copy() for b, n in enumerate(out_lens.tolist())]

    def fill(self, speeds, on_batch=None) -> EncodeReport:
        """Encode every utterance at every speed factor not yet cached, in batches of about
        `batch_seconds` of padded audio, shortest first; `on_batch(done, total)` after each."""
        t0, audio_s = time.time(), 0.0
        seconds = [len(self.waves[u.id]) / self.pipeline.cfg.sample_rate for u in self.utts]
        todo = [(s, i) for s in speeds for i in range(len(self.utts))
                if self.cache.get(i, s) is None]
        total, done = len(todo), 0
        for speed in speeds:
            idx = [i for s, i in todo if s == speed]
            lengths = [seconds[i] / speed for i in idx]
            for batch in length_batches(lengths, self.batch_seconds):
                chosen = [idx[b] for b in batch]
                for i, states in zip(chosen, self.encode(chosen, speed)):
                    self.cache.put(i, speed, states)
                audio_s += sum(seconds[i] / speed for i in chosen)
                done += len(chosen)
                if on_batch is not None:
                    on_batch(done, total)
        return EncodeReport(total, audio_s, time.time() - t0, self.cache.bytes / 2 ** 20)

    def get(self, i: int, speed: float) -> np.ndarray:
        return self.cache.get_or_compute(i, speed, lambda: self.encode([i], speed)[0])
