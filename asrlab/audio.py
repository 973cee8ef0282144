"""Audio in: read any file soundfile can, downmix to mono, resample to the model's rate.

Everything that touches a waveform (training, evaluation, inference, the server) goes through
`load_audio` / `decode_audio_bytes` (whole file) or `AudioReader` (windows of a long file), so a
file is read the same way everywhere. The verbs that recognize audio read whole files through
`load_checked` (the limits, then `check_samples`).

Limits come before decoding (`AudioLimits`): the header's channels x rate x seconds is checked
first, so a small file that would decode to gigabytes (a "decompression bomb", e.g. 8 channels
at 655,350 Hz) is refused without decoding anything. Where the header cannot be trusted (a FLAC
without a total length, which libsndfile reports as 2**63 frames), decoding is streamed in
blocks and stops as soon as the limit is passed. Downmixing and resampling run in bounded
blocks too, so memory holds the mono output plus one block, whatever the channel count.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

BLOCK_FRAMES = 65536  # frames decoded at a time (x channels x 4 bytes: 2 MB for 8 channels)
UNKNOWN_LENGTH = 2 ** 62  # libsndfile's frame count for a stream without a length is 2**63-1
DECODE_RATE = 96_000  # default decode budget per second of audio: stereo 48 kHz


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the reason."""


class AudioLimitError(AudioError):
    """A readable file over the AudioLimits (too long, too many channels, too costly to decode)."""


class AudioContentError(AudioError):
    """Decoded audio that cannot be recognized: no samples, or NaN/infinite ones."""


@dataclass(frozen=True)
class AudioLimits:
    """What a file may cost to decode, checked from its header before decoding.

    max_seconds: longest audio accepted. max_decoded_samples: channels x frames decoded before
    downmixing (the CPU and memory a file costs); None means max_seconds x 96,000 (stereo 48 kHz,
    or mono 96 kHz, for the whole max_seconds). max_channels, max_sample_rate: header sanity."""
    max_seconds: float = 4 * 3600.0
    max_decoded_samples: int | None = None
    max_channels: int = 64
    max_sample_rate: int = 384_000
    flag: str = "--max-audio-seconds"  # what the refusal tells the user to raise

    def validate(self) -> "AudioLimits":
        if not self.max_seconds > 0 or (self.max_decoded_samples is not None
                                        and self.max_decoded_samples <= 0):
            raise ValueError(f"audio limits must be positive (got max_seconds={self.max_seconds}, "
                             f"max_decoded_samples={self.max_decoded_samples}); raise {self.flag} "
                             f"instead of turning the limit off")
        return self

    @property
    def decoded_budget(self) -> int:
        if self.max_decoded_samples is not None:
            return self.max_decoded_samples
        return int(self.max_seconds * DECODE_RATE)


UNLIMITED = AudioLimits(max_seconds=float("inf"), max_decoded_samples=2 ** 62,
                        max_channels=2 ** 31, max_sample_rate=2 ** 31)


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int | None  # None: the header gives no length (streamed FLAC/OGG)

    @property
    def seconds(self) -> float | None:
        return None if self.frames is None else self.frames / self.sample_rate


def probe(f: sf.SoundFile) -> AudioInfo:
    frames = f.frames if 0 <= f.frames < UNKNOWN_LENGTH else None
    return AudioInfo(f.samplerate, f.channels, frames)


def check_header(info: AudioInfo, limits: AudioLimits, start: int = 0,
                 frames: int | None = None) -> None:
    """Refuse, before decoding, what the header says is over the limits (AudioError without the
    file name: callers prefix it). `start`/`frames`: the segment to be read."""
    if info.sample_rate <= 0 or info.channels <= 0:
        raise AudioError(f"invalid header ({info.channels} channels at {info.sample_rate} Hz)")
    if info.channels > limits.max_channels:
        raise AudioLimitError(f"{info.channels} channels, the limit is {limits.max_channels}")
    if info.sample_rate > limits.max_sample_rate:
        raise AudioLimitError(f"sample rate {info.sample_rate} Hz, the limit is "
                         f"{limits.max_sample_rate} Hz")
    if info.frames is None:
        return  # unknown length: the streaming decode enforces the limits
    n = max(0, info.frames - start) if frames is None else max(0, min(frames, info.frames - start))
    seconds = n / info.sample_rate
    if seconds > limits.max_seconds:
        raise AudioLimitError(f"{seconds:.1f} s of audio, the limit is {limits.max_seconds:g} s "
                         f"(raise it with {limits.flag}, or split the file)")
    if n * info.channels > limits.decoded_budget:
        raise AudioLimitError(f"{info.channels} channels x {info.sample_rate} Hz x {seconds:.1f} s = "
                         f"{n * info.channels:,} samples to decode, the limit is "
                         f"{limits.decoded_budget:,} ({limits.max_seconds:g} s x "
                         f"{DECODE_RATE:,} samples/s; raise {limits.flag} for such files)")


def _read_blocks(f: sf.SoundFile, info: AudioInfo, frames: int, limits: AudioLimits
                 ) -> Iterator[np.ndarray]:
    """Mono float32 blocks of at most BLOCK_FRAMES; `frames` < 0: to the end. Stops with
    AudioError as soon as the decoded total passes the limits (the header may have lied)."""
    max_frames = min(limits.max_seconds * info.sample_rate,
                     limits.decoded_budget / info.channels)
    done = 0
    while frames < 0 or done < frames:
        want = BLOCK_FRAMES if frames < 0 else min(BLOCK_FRAMES, frames - done)
        block = _read_raw(f, want, info.channels)
        if len(block) == 0:
            return
        done += len(block)
        if done > max_frames:
            raise AudioLimitError(f"longer than the limit of {limits.max_seconds:g} s at "
                             f"{info.channels} channels x {info.sample_rate} Hz (the header "
                             f"gives no length; decoding stopped at {done / info.sample_rate:.1f} "
                             f"s; raise {limits.flag} for such files)")
        yield to_mono(block)
        if len(block) < want:
            return


def _read_raw(f: sf.SoundFile, frames: int, channels: int) -> np.ndarray:
    """Up to `frames` frames (frames, channels) float32 from the current position, straight from
    libsndfile: SoundFile.read asks for the position first, which fails on a stream without a
    length (a FLAC upload whose header has no total) although reading works."""
    out = np.empty((frames, channels), np.float32)
    n = sf._snd.sf_readf_float(f._file, sf._ffi.from_buffer("float[]", out), frames)
    sf._error_check(f._errorcode)
    return out[:n]


def _resample_plan(sr_in: int, sr_out: int) -> tuple[int, int, int]:
    """(up, down, margin): margin = input samples on each side of a block whose output is
    discarded (more than the anti-aliasing filter's half length), a multiple of `down`."""
    ratio = Fraction(sr_out, sr_in).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    half = 10 * max(up, down) / up + 2  # resample_poly's default filter: 10 taps per phase
    return up, down, down * math.ceil(half / down)


def resample(wave: np.ndarray, sr_in: int, sr_out: int, block: int = 16 * BLOCK_FRAMES
             ) -> np.ndarray:
    """Polyphase resampling (scipy's resample_poly: anti-aliased, exact for rational ratios),
    in blocks of about `block` input samples with overlapping margins, so that the temporary
    memory is a few blocks whatever the length; the result equals resampling at once."""
    if sr_in == sr_out or wave.size == 0:
        return wave.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    up, down, margin = _resample_plan(sr_in, sr_out)
    n = wave.shape[0]
    n_out = -(-n * up // down)  # resample_poly's output length: ceil(n * up / down)
    if n <= block + 2 * margin:
        return resample_poly(wave, up, down).astype(np.float32)
    step = max(down, block // down * down)
    out = np.empty(n_out, np.float32)
    for a in range(0, n, step):
        lo, hi = max(0, a - margin), min(n, a + step + margin)
        y = resample_poly(wave[lo:hi], up, down)
        o0 = a * up // down  # a and lo are multiples of `down`: exact output positions
        o1 = min(n_out, (a + step) * up // down)
        skip = (a - lo) * up // down
        out[o0:o1] = y[skip:skip + o1 - o0]
    return out


def to_mono(wave: np.ndarray) -> np.ndarray:
    """(S,) or (S, C) -> (S,), averaging channels."""
    if wave.ndim == 1:
        return wave
    return wave[:, 0].copy() if wave.shape[1] == 1 else wave.mean(axis=1, dtype=np.float32)


def require_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: " + ("is a folder, not an audio file" if path.is_dir()
                                        else "file not found"))
    return path


def _open(source, name: str) -> sf.SoundFile:
    try:
        return sf.SoundFile(source)
    except Exception as e:  # soundfile raises several types (LibsndfileError, RuntimeError...)
        reason = str(e).rsplit(": ", 1)[-1] if isinstance(source, io.IOBase) else str(e)
        raise AudioError(f"{name}cannot be read as audio ({reason})") from None


def _decode(f: sf.SoundFile, name: str, sample_rate: int, offset: float, duration: float | None,
            limits: AudioLimits) -> np.ndarray:
    info = probe(f)
    start = int(round(offset * info.sample_rate)) if info.sample_rate > 0 else 0
    frames = -1 if duration is None else int(round(duration * info.sample_rate))
    try:
        check_header(info, limits, start, None if frames < 0 else frames)
    except AudioError as e:
        raise type(e)(f"{name}{e}") from None
    try:
        if start:
            f.seek(min(start, info.frames) if info.frames is not None else start)
        blocks = list(_read_blocks(f, info, frames, limits))
    except AudioError as e:
        raise type(e)(f"{name}{e}") from None
    except Exception as e:
        raise AudioError(f"{name}cannot be read as audio ({e})") from None
    wave = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    del blocks
    return resample(wave, info.sample_rate, sample_rate)


def load_audio(path: str | Path, sample_rate: int = 16000, offset: float = 0.0,
               duration: float | None = None, limits: AudioLimits = AudioLimits()) -> np.ndarray:
    """Read `path` as float32 mono at `sample_rate`. Raises AudioError naming the file.

    `offset`/`duration` (seconds) read a segment only (Kaldi `segments`); None reads to the end.
    `limits` are checked from the header before decoding (see the module doc)."""
    path = require_file(path)
    with _open(str(path), f"{path}: ") as f:
        return _decode(f, f"{path}: ", sample_rate, offset, duration, limits)


def decode_audio_bytes(data: bytes, sample_rate: int = 16000,
                       limits: AudioLimits = AudioLimits()) -> np.ndarray:
    """Like load_audio, for an in-memory file (uploads)."""
    with _open(io.BytesIO(data), "") as f:
        return _decode(f, "", sample_rate, 0.0, None, limits)


def check_samples(wave: np.ndarray, name: str = "") -> None:
    """Refuse what cannot be recognized (the server's 422s; the CLI's errors): no samples, or
    NaN/infinite samples. `name` ("FILE: ") starts the message."""
    if wave.size == 0:
        raise AudioContentError(f"{name}the audio file has no samples")
    if not np.isfinite(wave).all():
        raise AudioContentError(f"{name}the audio has non-finite samples (NaN or infinity)")


def load_checked(source: str | Path | bytes, sample_rate: int,
                 limits: AudioLimits = AudioLimits(), offset: float = 0.0,
                 duration: float | None = None) -> np.ndarray:
    """The one way a verb reads audio in one piece (transcribe, evaluate and tune-lm through
    asrlab.transcribe.Transcriber, the server's uploads): `load_audio` for a path (`offset`/
    `duration`: a segment), `decode_audio_bytes` for bytes, within `limits`, then
    `check_samples`. AudioLimitError over the limits, AudioContentError for empty or NaN/inf
    audio, AudioError for the rest, each naming the file (bytes: no name)."""
    if isinstance(source, bytes):
        wave = decode_audio_bytes(source, sample_rate, limits)
        check_samples(wave)
        return wave
    wave = load_audio(source, sample_rate, offset, duration, limits)
    check_samples(wave, f"{source}: ")
    return wave


def audio_info(path: str | Path) -> AudioInfo:
    """The header of `path` (no decoding); AudioError naming the file."""
    with _open(str(path), f"{path}: ") as f:
        return probe(f)


def audio_duration(path: str | Path, limits: AudioLimits = AudioLimits()) -> float:
    """Seconds of audio in `path`: from the header, or, where the header gives no length (a
    streamed FLAC: libsndfile says 2**63 frames), by decoding it in blocks within `limits`."""
    with _open(str(path), f"{path}: ") as f:
        info = probe(f)
        if info.frames is not None:
            return info.frames / info.sample_rate
        try:
            check_header(info, limits)
            n = sum(len(block) for block in _read_blocks(f, info, -1, limits))
        except AudioError as e:
            raise type(e)(f"{path}: {e}") from None
        return n / info.sample_rate


class AudioReader:
    """Windows of a long file at the model's rate, each read on its own (seek + bounded decode),
    so memory holds one window whatever the file's length.

        with AudioReader("talk.flac", 16000, limits) as r:
            r.read(0, 16000 * 30)   # samples [0, 480000) at 16 kHz, mono float32; shorter at the end

    Each window is read with a margin on both sides for the resampler, so a window equals the
    same span of `load_audio(path)` except for float rounding."""

    def __init__(self, path: str | Path, sample_rate: int, limits: AudioLimits = AudioLimits()):
        self.path = require_file(path)
        self.name = f"{self.path}: "
        self.f = _open(str(self.path), self.name)
        self.info = probe(self.f)
        try:
            check_header(self.info, limits)
        except AudioError as e:
            self.f.close()
            raise type(e)(f"{self.name}{e}") from None
        self.sample_rate, self.limits = sample_rate, limits
        self.up, self.down, self.margin = _resample_plan(self.info.sample_rate, sample_rate)
        if self.info.sample_rate == sample_rate:
            self.up = self.down = 1
            self.margin = 0

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.f.close()

    @property
    def num_samples(self) -> int | None:
        """Length at the model's rate; None when the header does not say."""
        if self.info.frames is None:
            return None
        return -(-self.info.frames * self.up // self.down)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Model-rate samples [start, stop), fewer (maybe none) past the end of the file."""
        up, down, margin = self.up, self.down, self.margin
        # input span: whole multiples of `down` so output positions are exact
        a = start * down // up // down * down
        b = -(-stop * down // up)
        lo = max(0, a - margin)
        try:
            self.f.seek(lo)
            blocks = list(_read_blocks(self.f, self.info, b + margin - lo, UNLIMITED))
        except AudioError as e:
            raise type(e)(f"{self.name}{e}") from None
        except Exception as e:
            raise AudioError(f"{self.name}cannot be read as audio ({e})") from None
        native = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
        end = lo + len(native)  # input frames known to exist (the header may give no length)
        limit = min(self.limits.max_seconds * self.info.sample_rate,
                    self.limits.decoded_budget / self.info.channels)
        if end > limit:
            raise AudioLimitError(f"{self.name}longer than the limit of {self.limits.max_seconds:g} s "
                             f"at {self.info.channels} channels x {self.info.sample_rate} Hz "
                             f"(decoding stopped at {end / self.info.sample_rate:.1f} s; raise "
                             f"{self.limits.flag} for such files)")
        if up == down:
            return native[start - lo:stop - lo].astype(np.float32, copy=False)
        y = resample(native, self.info.sample_rate, self.sample_rate)
        skip = start - lo * up // down
        return y[skip:skip + (stop - start)]
