"""Audio in: read any file soundfile can, downmix to mono, resample to the model's rate.

Everything that touches a waveform (training, evaluation, inference, the server) goes through
`load_audio` / `decode_audio_bytes` (whole file) or `AudioReader` (windows of a long file), so a
file is read the same way everywhere. The verbs that recognize audio read whole files through
`load_checked` (the limits, then `check_samples`).

Limits come before decoding (`AudioLimits`): the header's channels x rate x seconds is checked
first, so a small file that would decode to gigabytes (a "decompression bomb", e.g. 8 channels
at 655,350 Hz) is refused without decoding anything. Where the header cannot be trusted (a FLAC
without a total length, which libsndfile reports as 2**63 frames), decoding is streamed in
blocks and stops as soon as the limit is passed.

Memory: one decode holds its mono output at the model's rate plus a working set bounded in bytes
(`DECODE_WORK_BYTES`), whatever the file's rate, channel count or length: each block is
downmixed, then resampled by a streaming polyphase resampler (`StreamResampler`) that carries
the input its next stretch needs, and written into the output, which is allocated once at the
length the header gives (grown in steps when it gives none). Nothing at the file's own rate is
ever held whole. (Before: every block was kept at the file's rate and resampled at the end: 590 s
of 96 kHz silence, a 178 kB FLAC, took 446 MB.)
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

BLOCK_FRAMES = 65536  # most frames decoded at a time
BLOCK_SAMPLES = 2 ** 19  # most samples (frames x channels) decoded at a time: 2 MB of float32
# what one decode holds besides its output: the raw block, its mono copy, the resampler's stretch
# and that stretch's output; measured at most 3.3 MB (8 channels x 48 kHz), bound with room
DECODE_WORK_BYTES = 8 * 2 ** 20
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


def block_frames(channels: int) -> int:
    """Frames per decoded block: at most BLOCK_FRAMES and BLOCK_SAMPLES samples in all."""
    return max(256, min(BLOCK_FRAMES, BLOCK_SAMPLES // max(1, channels)))


def _read_blocks(f: sf.SoundFile, info: AudioInfo, frames: int, limits: AudioLimits
                 ) -> Iterator[np.ndarray]:
    """Mono float32 blocks (fresh arrays) of at most `block_frames`; `frames` < 0: to the end.
    Stops with AudioError as soon as the decoded total passes the limits (the header may have
    lied). One raw (frames, channels) buffer is reused for every block."""
    max_frames = min(limits.max_seconds * info.sample_rate,
                     limits.decoded_budget / info.channels)
    raw = np.empty((block_frames(info.channels), info.channels), np.float32)
    done = 0
    while frames < 0 or done < frames:
        want = len(raw) if frames < 0 else min(len(raw), frames - done)
        block = _read_raw(f, raw[:want])
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


def _read_raw(f: sf.SoundFile, out: np.ndarray) -> np.ndarray:
    """Fill `out` (frames, channels) float32 from the current position, straight from
    libsndfile; returns the part read. SoundFile.read asks for the position first, which fails
    on a stream without a length (a FLAC upload whose header has no total) although reading
    works."""
    n = sf._snd.sf_readf_float(f._file, sf._ffi.from_buffer("float[]", out), len(out))
    sf._error_check(f._errorcode)
    return out[:n]


def _resample_plan(sr_in: int, sr_out: int) -> tuple[int, int, int]:
    """(up, down, margin): margin = input samples on each side of a block whose output is
    discarded (more than the anti-aliasing filter's half length), a multiple of `down`."""
    ratio = Fraction(sr_out, sr_in).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    half = 10 * max(up, down) / up + 2  # resample_poly's default filter: 10 taps per phase
    return up, down, down * math.ceil(half / down)


@functools.lru_cache(maxsize=16)
def _lowpass(up: int, down: int) -> np.ndarray:
    """resample_poly's own default filter for float32 input (firwin, Kaiser beta 5), designed
    once per ratio instead of once per call."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    h = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(np.float32)
    h.flags.writeable = False
    return h


class StreamResampler:
    """Polyphase resampling of a signal that arrives in pieces, in memory of one stretch.

    scipy's resample_poly with carried state: the input is cut into stretches of `step`
    samples (multiples of `down`, so every output position is exact); each stretch is resampled
    together with `margin` samples of its neighbours on both sides (more than the filter's half
    length), and only its own outputs are kept. The state carried from one push to the next is
    the input not yet resampled plus the left margin. The output therefore equals
    `resample_poly(whole_signal, up, down)` except for float rounding (tests/test_audio.py).
    scipy rather than soxr's stream API: soxr is not installed here (no new dependency), and this
    reproduces the resampler every model was trained with, so features do not move."""

    def __init__(self, sr_in: int, sr_out: int):
        self.up, self.down, self.margin = _resample_plan(sr_in, sr_out)
        # at most ~BLOCK_FRAMES outputs per stretch (upsampling makes more outputs than inputs)
        per = BLOCK_FRAMES * self.down // max(self.up, self.down)
        self.step = max(self.margin, per // self.down * self.down, self.down)
        self.h = _lowpass(self.up, self.down)
        self.pending = np.zeros(0, np.float32)  # input from (next stretch start - ctx)
        self.ctx = 0  # left context at the front of `pending`: min(margin, stretch start)

    def _run(self, x: np.ndarray, n_out: int) -> np.ndarray:
        from scipy.signal import resample_poly

        y = resample_poly(x, self.up, self.down, window=self.h)
        skip = self.ctx * self.up // self.down
        return y[skip:skip + n_out]

    def push(self, x: np.ndarray) -> np.ndarray:
        """Feed input samples; returns the output samples now final (maybe none)."""
        self.pending = np.concatenate([self.pending, x.astype(np.float32, copy=False)])
        outs = []
        while len(self.pending) - self.ctx >= self.step + self.margin:
            outs.append(self._run(self.pending[:self.ctx + self.step + self.margin],
                                  self.step * self.up // self.down))
            keep = min(self.margin, self.ctx + self.step)
            self.pending = self.pending[self.ctx + self.step - keep:]
            self.ctx = keep
        if not outs:
            return np.zeros(0, np.float32)
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def flush(self) -> np.ndarray:
        """The rest of the output, the signal having ended."""
        rest = len(self.pending) - self.ctx
        out = (self._run(self.pending, -(-rest * self.up // self.down)) if rest > 0
               else np.zeros(0, np.float32))
        self.pending, self.ctx = np.zeros(0, np.float32), 0
        return out.astype(np.float32, copy=False)


class _Output:
    """The decoded signal, written in place: allocated once at the expected length (`size`),
    grown by half at a time when a header gave no length (at most to `most`), trimmed at the
    end (realloc in place: no second copy of the signal)."""

    def __init__(self, size: int | None, most: float):
        self.most = int(min(most, 2 ** 62))
        self.buf = np.empty(min(size if size is not None else 2 ** 20, self.most + 1),
                            np.float32)
        self.n = 0

    def add(self, y: np.ndarray) -> None:
        end = self.n + len(y)
        if end > len(self.buf):
            grown = min(max(end, len(self.buf) * 3 // 2), max(end, self.most + 1))
            self.buf.resize(grown, refcheck=False)
        self.buf[self.n:end] = y
        self.n = end

    def array(self) -> np.ndarray:
        if self.n < len(self.buf):
            self.buf.resize(self.n, refcheck=False)
        buf, self.buf = self.buf, np.zeros(0, np.float32)
        return buf


def _stream(blocks: Iterator[np.ndarray], sr_in: int, sr_out: int, frames: int | None,
            most_frames: float) -> np.ndarray:
    """Mono blocks at `sr_in` -> one float32 array at `sr_out`, resampled as they come;
    `frames`: input frames expected (None: unknown), `most_frames`: the most there can be."""
    if sr_in == sr_out:
        rs, scale = None, Fraction(1)
    else:
        rs = StreamResampler(sr_in, sr_out)
        scale = Fraction(rs.up, rs.down)
    size = None if frames is None else math.ceil(frames * scale)
    out = _Output(size, math.ceil(most_frames * scale) if math.isfinite(most_frames)
                  else 2 ** 62)
    for block in blocks:
        out.add(block if rs is None else rs.push(block))
    if rs is not None:
        out.add(rs.flush())
    return out.array()


def resample(wave: np.ndarray, sr_in: int, sr_out: int, block: int = BLOCK_FRAMES
             ) -> np.ndarray:
    """Polyphase resampling (scipy's resample_poly: anti-aliased, exact for rational ratios),
    fed to `StreamResampler` `block` samples at a time, so the temporary memory is one stretch
    whatever the length; the result equals resampling at once (up to float rounding)."""
    if sr_in == sr_out or wave.size == 0:
        return wave.astype(np.float32, copy=False)
    return _stream((wave[i:i + block] for i in range(0, len(wave), max(1, block))), sr_in,
                   sr_out, len(wave), len(wave))


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
        reason = str(e).rsplit(": ", 1)[-1] if not isinstance(source, str) else str(e)
        raise AudioError(f"{name}cannot be read as audio ({reason})") from None


@contextlib.contextmanager
def named_errors(name: str):
    """Errors while decoding become AudioErrors that start with the file's `name` ("FILE: "):
    asrlab's own keep their kind, anything else libsndfile or the resampler raises is
    "cannot be read as audio"."""
    try:
        yield
    except AudioError as e:
        raise type(e)(f"{name}{e}") from None
    except Exception as e:
        raise AudioError(f"{name}cannot be read as audio ({e})") from None


def _decode(f: sf.SoundFile, name: str, sample_rate: int, offset: float, duration: float | None,
            limits: AudioLimits) -> np.ndarray:
    info = probe(f)
    start = int(round(offset * info.sample_rate)) if info.sample_rate > 0 else 0
    frames = -1 if duration is None else int(round(duration * info.sample_rate))
    try:
        check_header(info, limits, start, None if frames < 0 else frames)
    except AudioError as e:
        raise type(e)(f"{name}{e}") from None
    expected = None
    if info.frames is not None:
        expected = max(0, info.frames - start)
        expected = expected if frames < 0 else min(frames, expected)
    most = min(limits.max_seconds * info.sample_rate, limits.decoded_budget / info.channels)
    with named_errors(name):
        if start:
            f.seek(min(start, info.frames) if info.frames is not None else start)
        return _stream(_read_blocks(f, info, frames, limits), info.sample_rate, sample_rate,
                       expected, most if frames < 0 else min(most, frames))


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
    return decode_audio_file(io.BytesIO(data), sample_rate, limits)


def decode_audio_file(file: BinaryIO, sample_rate: int = 16000,
                      limits: AudioLimits = AudioLimits()) -> np.ndarray:
    """Like load_audio, for an open binary file object (read from its current position; the
    server decodes an upload from its spooled file, not from a copy of its bytes)."""
    with _open(file, "") as f:
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
        read = 0  # input frames known to exist (the header may give no length)

        def counted(blocks):
            nonlocal read
            for block in blocks:
                read += len(block)
                yield block

        want = b + margin - lo
        if self.info.frames is not None:
            want = max(0, min(want, self.info.frames - lo))
        with named_errors(self.name):
            self.f.seek(lo)
            y = _stream(counted(_read_blocks(self.f, self.info, want, UNLIMITED)),
                        self.info.sample_rate, self.sample_rate, want, want)
        end = lo + read
        limit = min(self.limits.max_seconds * self.info.sample_rate,
                    self.limits.decoded_budget / self.info.channels)
        if end > limit:
            raise AudioLimitError(f"{self.name}longer than the limit of {self.limits.max_seconds:g} s "
                             f"at {self.info.channels} channels x {self.info.sample_rate} Hz "
                             f"(decoding stopped at {end / self.info.sample_rate:.1f} s; raise "
                             f"{self.limits.flag} for such files)")
        skip = start - lo * up // down
        return y[skip:skip + (stop - start)]
