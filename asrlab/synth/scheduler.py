"""The scheduler: utterances made by worker processes in fixed batches, with a progress bar.

Audio is made by `jobs` worker processes, each initializing espeak once. Every utterance's text,
speaker, prosody and noise seed are fixed up front (asrlab.synth.corpus) and espeak's
carried-over state is reset per batch (see run_batch), so the same arguments give byte-identical
WAVs whatever `jobs` is. Festival starts once per batch (one `festival --batch` script for the
batch's festival utterances), not once per utterance.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import zlib
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np

from asrlab.synth import espeak, piper
from asrlab.synth.base import SAMPLE_RATE, Speaker, SynthError
from asrlab.synth.engines import render
from asrlab.synth.festival import synthesize_batch

BATCH = 16  # utterances one forked child makes in a row; fixed, so audio is independent of jobs


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
        espeak.engine()  # initialized once here, never used to speak in this process: see run_batch
    if "piper" in engines:  # loaded once here; forked batch children inherit the sessions
        for voice in piper.piper_voices():
            piper.engine(voice)


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
            made = synthesize_batch([(j.text, j.voice) for j in festival])
        except (OSError, subprocess.SubprocessError) as e:
            made = [f"festival failed: {e}"] * len(festival)
        raw = {j.index: r for j, r in zip(festival, made)}
    return [_make_one(j, raw.get(j.index)) for j in batch]


def run_batch(batch: list[Job]) -> list[Result]:
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


def execute(jobs: list[Job], n_jobs: int, engines: Sequence[str], progress: bool) -> list[float]:
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
        yield from pool.imap_unordered(run_batch, batches)


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
