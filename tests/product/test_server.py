"""The real server (uvicorn subprocess on a free loopback port): formats, limits, concurrency;
and the micro-batcher on its own."""

from __future__ import annotations

import asyncio
import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


def _utterance(digit_corpus, i: int = 0) -> tuple[np.ndarray, int]:
    row = json.loads(digit_corpus["train"].read_text().splitlines()[i])
    return sf.read(digit_corpus["train"].parent / row["audio_filepath"], dtype="float32")


def _encode(wave: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _post(server, data: bytes, name: str = "a.wav", timeout: float = 60):
    return httpx.post(server.url + "/v1/transcribe", files={"file": (name, data)}, timeout=timeout)


def _check_transcript(body: dict, duration: float):
    assert set(body) == {"text", "words", "duration"}
    assert body["duration"] == pytest.approx(duration, abs=2e-3)
    assert " ".join(w["word"] for w in body["words"]) == body["text"]
    for w in body["words"]:
        assert set(w) == {"word", "start", "end", "confidence"}
        assert 0 <= w["start"] <= w["end"] <= body["duration"] and 0 < w["confidence"] <= 1


@pytest.mark.slow
def test_formats_rates_and_channels_give_the_same_answer(server, digit_corpus):
    wave, sr = _utterance(digit_corpus)
    assert sr == 8000
    stereo = np.stack([wave, wave], axis=1)
    answers = {}
    for name, data in [("mono8k.wav", _encode(wave, sr, "WAV")),
                       ("stereo8k.wav", _encode(stereo, sr, "WAV", "PCM_16")),
                       ("a.flac", _encode(wave, sr, "FLAC")),
                       ("a.ogg", _encode(wave, sr, "OGG", "VORBIS"))]:
        r = _post(server, data, name)
        assert r.status_code == 200, (name, r.text)
        _check_transcript(r.json(), len(wave) / sr)
        answers[name] = r.json()["text"]
    assert answers["mono8k.wav"], "the overfit model should emit something"
    assert answers["stereo8k.wav"] == answers["mono8k.wav"] == answers["a.flac"]


@pytest.mark.slow
def test_bad_uploads_get_clear_errors(server, digit_corpus):
    r = _post(server, b"this is not audio, just text" * 10, "notes.txt")
    assert r.status_code == 415 and "not a supported audio file" in r.json()["detail"]
    r = _post(server, b"", "empty.wav")
    assert r.status_code == 415
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 8000 * 70).astype(np.float32)
    big = _encode(noise, 8000, "WAV", "FLOAT")  # 2.2 MB > the server's 1 MB limit
    r = _post(server, big, "big.wav")
    assert r.status_code == 413 and "limit is 1048576 bytes" in r.json()["detail"]
    long = _encode(np.zeros(8000 * 12, np.float32), 8000, "FLAC")  # small file, 12 s > 10 s
    assert len(long) < 1024 * 1024
    r = _post(server, long, "long.flac")
    assert r.status_code == 422
    assert "too long" in r.json()["detail"] and "limit 10 s" in r.json()["detail"]
    r = httpx.post(server.url + "/v1/transcribe", data={"model": "/etc/passwd"}, timeout=30)
    assert r.status_code == 422  # no file field; and no way to name a model in a request


@pytest.mark.slow
def test_concurrent_requests_are_all_answered(server, digit_corpus):
    waves = [_utterance(digit_corpus, i) for i in range(8)]
    payloads = [_encode(w, sr, "WAV") for w, sr in waves]
    alone = [_post(server, p).json()["text"] for p in payloads]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: _post(server, p), payloads * 2))
    assert all(r.status_code == 200 for r in together)
    assert [r.json()["text"] for r in together] == alone * 2  # batching changes nothing
    health = httpx.get(server.url + "/healthz").json()
    assert health["status"] == "ok" and health["batches"]["requests"] >= 24
    assert health["decoder"]["kind"] == "beam" and health["limits"]["max_bytes"] == 1048576


@pytest.mark.slow
def test_page_is_served(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "v1/transcribe" in r.text and "MediaRecorder" in r.text
    assert "<script src=" not in r.text and "https://" not in r.text  # self-contained


class _FakeTranscriber:
    """Records the batch sizes it is called with."""
    sample_rate = 16000

    def __init__(self):
        self.calls: list[int] = []

    def transcribe_waves(self, waves):
        self.calls.append(len(waves))
        return [len(w) for w in waves]


def test_micro_batcher_groups_concurrent_requests():
    from asrlab.serve import MicroBatcher

    fake = _FakeTranscriber()

    async def main():
        b = MicroBatcher(fake, max_batch=4, wait_ms=200)
        await b.start()
        results = await asyncio.gather(*(b.submit(np.zeros(n)) for n in range(1, 7)))
        await b.stop()
        return results

    assert asyncio.run(main()) == [1, 2, 3, 4, 5, 6]  # each answer goes to its own request
    assert fake.calls == [4, 2]


def test_upload_checks_without_a_server():
    from asrlab.serve import HTTPProblem, ServerLimits, read_upload_audio

    limits = ServerLimits(max_bytes=100_000, max_seconds=1.0)
    wav = _encode(np.zeros(4000, np.float32), 8000, "WAV")
    assert read_upload_audio(wav, 16000, limits).shape == (8000,)  # resampled to 16 kHz
    for data, status in [(b"x" * 200_000, 413), (b"RIFF????", 415), (b"", 415),
                         (_encode(np.zeros(9000, np.float32), 8000, "WAV"), 422)]:
        with pytest.raises(HTTPProblem) as e:
            read_upload_audio(data, 16000, limits)
        assert e.value.status == status


def test_one_failing_request_does_not_fail_its_batch():
    from asrlab.serve import MicroBatcher

    class Picky(_FakeTranscriber):
        def transcribe_waves(self, waves):
            self.calls.append(len(waves))
            if any(len(w) == 3 for w in waves):
                raise RuntimeError("cannot do 3")
            return [len(w) for w in waves]

    fake = Picky()

    async def main():
        b = MicroBatcher(fake, max_batch=4, wait_ms=200)
        await b.start()
        results = await asyncio.gather(*(b.submit(np.zeros(n)) for n in (1, 2, 3, 4)),
                                       return_exceptions=True)
        await b.stop()
        return results

    results = asyncio.run(main())
    assert results[:2] == [1, 2] and results[3] == 4
    assert isinstance(results[2], RuntimeError)
    assert fake.calls == [4, 1, 1, 1, 1]
