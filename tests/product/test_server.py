"""The real server (uvicorn subprocess on a free loopback port): formats, limits, concurrency;
and the micro-batcher on its own."""

from __future__ import annotations

import asyncio
import io
import json
import time
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


# ---- hostile and slow clients -----------------------------------------------------------------

def _held_upload(url: str, declared: int = 200_000):
    """A raw connection that sends the headers and part of a body, then holds it open."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(url)
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    s.sendall(b"POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
              b"boundary=b\r\nContent-Length: " + str(declared).encode() + b"\r\n\r\n--b\r\n"
              + b"x" * 1000)
    return s


def _status_of(sock) -> int:
    data = sock.recv(4096)
    return int(data.split(b" ", 2)[1]) if data else 0


@pytest.mark.slow
def test_bombs_are_refused_and_held_uploads_time_out_while_others_are_served(server, digit_corpus):
    from tests.product.test_longform import bomb

    r = _post(server, bomb(seconds=9.0))  # within the fixture's 10 s: refused for its rate
    assert r.status_code == 422 and "655350 Hz" in r.json()["detail"]
    wave, sr = _utterance(digit_corpus)
    good = _encode(wave, sr, "WAV")
    held = [_held_upload(server.url) for _ in range(8)]  # the server's --max-uploads
    try:
        time.sleep(0.3)
        r = _post(server, good)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert [_status_of(s) for s in held] == [408] * 8  # after --body-timeout 2
    finally:
        for s in held:
            s.close()
    r = _post(server, good)
    assert r.status_code == 200 and r.json()["text"]
    refused = httpx.get(server.url + "/healthz").json()["uploads"]["refused"]
    assert refused["busy"] >= 1 and refused["timeout"] >= 8


def test_api_key_is_required_when_set():
    from asrlab.serve import ServerLimits, create_app

    app = create_app(_FakeTranscriber(), ServerLimits(), api_key="s3cret")

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return [(await c.get("/healthz", headers=h)).status_code for h in
                    ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer s3cret"},
                     {"X-API-Key": "s3cret"})] + [(await c.post("/v1/transcribe")).status_code,
                                                  (await c.get("/")).status_code]

    assert asyncio.run(main()) == [401, 401, 200, 200, 401, 200]


def test_uploads_in_flight_are_capped_and_slow_bodies_time_out():
    from asrlab.serve import ServerLimits, create_app

    app = create_app(_FakeTranscriber(), ServerLimits(max_uploads=2, body_timeout_s=0.3))
    scope = {"type": "http", "method": "POST", "path": "/v1/transcribe", "headers": [],
             "query_string": b"", "http_version": "1.1", "scheme": "http", "server": ("t", 80),
             "client": ("c", 1), "root_path": ""}

    async def call():
        sent = []

        async def receive():  # a client that never sends its body
            await asyncio.sleep(3600)

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        return start["status"], dict(start["headers"]).get(b"retry-after")

    async def main():
        slow = [asyncio.create_task(call()) for _ in range(2)]
        await asyncio.sleep(0.05)
        third = await call()  # at once, not after the slow ones
        return third, [await t for t in slow]

    third, slow = asyncio.run(main())
    assert third == (503, b"1") and slow == [(408, None)] * 2


def test_exposed_bind_address_warns_unless_loopback():
    from asrlab.commands.serve import exposure_warnings

    assert exposure_warnings("127.0.0.1", 8000, False) == []
    assert exposure_warnings("::1", 8000, False) == []
    (line,) = exposure_warnings("0.0.0.0", 8000, False)
    assert "no authentication" in line and "--api-key" in line
    (line,) = exposure_warnings("0.0.0.0", 8000, True)
    assert "API key" in line and "TLS" in line


def test_bomb_upload_is_refused_before_decoding_with_memory_flat():
    import tracemalloc

    from asrlab.serve import HTTPProblem, ServerLimits, read_upload_audio
    from tests.product.test_longform import bomb

    data = bomb()
    tracemalloc.start()
    try:
        with pytest.raises(HTTPProblem) as e:
            read_upload_audio(data, 16000, ServerLimits(max_seconds=120, max_sample_rate=10 ** 6))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert e.value.status == 422 and "8 channels x 655350 Hz x 119.0 s" in e.value.detail
    assert peak < 2 * 2 ** 20, peak
