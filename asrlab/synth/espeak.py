"""The espeak-ng driver: libespeak-ng from the pip package espeakng-loader (which bundles the
library and its voice data), driven through ctypes: always there. 8 English language voices x 41
voice variants (formant synthesis)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from asrlab.synth.base import EngineUnavailable, Speaker, SynthError

# English voices of espeak-ng's bundled data ("en" is British English).
ESPEAK_VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                 "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# Voice variants that still sound like a person talking (no whisper, croak or robot effects).
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4",
                   "f5", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "adam",
                   "Alex", "Andy", "aunty", "benjamin", "david", "ed", "edward", "iven", "john",
                   "linda", "max", "michel", "norbert", "paul", "quincy", "rob", "robert",
                   "steph", "travis", "belinda")

# espeak-ng API constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH = 1, 2, 3
_VOLUME = 70  # of 0-200 (100 = default, which often reaches full scale); leaves headroom
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)


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


class Espeak:
    """libespeak-ng from espeakng-loader, synchronous mode, samples collected by a callback.

    The library keeps global state, so there is one instance a process (see engine()).
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


def engine() -> Espeak:
    global _ESPEAK
    if _ESPEAK is None:
        _ESPEAK = Espeak()
    return _ESPEAK
