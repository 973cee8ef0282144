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

    def post_from(i: int):  # 16 clients of their own (at most 4 uploads per client at once)
        with _client_at(f"127.0.0.{10 + i}") as c:
            return c.post(server.url + "/v1/transcribe", files={"file": ("a.wav", payloads[i % 8])})

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(post_from, range(16)))
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

def _held_upload(url: str, declared: int = 200_000, source: str = "127.0.0.1"):
    """A raw connection from the loopback address `source` (a client of its own: the server
    tells clients apart by peer address) that sends the headers and part of a body, then holds
    it open."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(url)
    s = socket.create_connection((u.hostname, u.port), timeout=30, source_address=(source, 0))
    s.sendall(b"POST /v1/transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/"
              b"form-data; boundary=b\r\nContent-Length: " + str(declared).encode()
              + b"\r\n\r\n--b\r\n" + b"x" * 1000)
    return s


def _status_of(sock) -> int:
    data = sock.recv(4096)
    return int(data.split(b" ", 2)[1]) if data else 0


def _client_at(source: str) -> httpx.Client:
    """An HTTP client whose connections come from the loopback address `source`."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=60)


@pytest.mark.slow
def test_bombs_are_refused_and_one_client_holding_its_slots_does_not_block_others(server,
                                                                                 digit_corpus):
    """The fixture allows 8 uploads in flight, 4 per client (the default)."""
    from tests.product.test_longform import bomb

    r = _post(server, bomb(seconds=9.0))  # within the fixture's 10 s: refused for its rate
    assert r.status_code == 422 and "655350 Hz" in r.json()["detail"]
    wave, sr = _utterance(digit_corpus)
    good = _encode(wave, sr, "WAV")
    files = {"file": ("a.wav", good)}
    url = server.url + "/v1/transcribe"
    stalled = [_held_upload(server.url, source="127.0.0.2") for _ in range(4)]
    held = []
    try:
        time.sleep(0.3)
        with _client_at("127.0.0.2") as same, _client_at("127.0.0.3") as other:
            r = same.post(url, files=files)  # the staller's fifth: its own limit
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert "per-client limit" in r.json()["detail"]
            r = other.post(url, files=files)  # another client is served while they stall
            assert r.status_code == 200 and r.json()["text"]
        held = [_held_upload(server.url, source="127.0.0.4") for _ in range(4)]
        time.sleep(0.3)
        with _client_at("127.0.0.5") as fifth:  # 8 in flight: the global limit
            r = fifth.post(url, files=files)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert [_status_of(s) for s in stalled + held] == [408] * 8  # after --body-timeout 2
    finally:
        for s in stalled + held:
            s.close()
    r = _post(server, good)
    assert r.status_code == 200 and r.json()["text"]
    refused = httpx.get(server.url + "/healthz").json()["uploads"]["refused"]
    assert refused["busy"] >= 1 and refused["client_busy"] >= 1 and refused["timeout"] >= 8


@pytest.mark.slow
def test_a_foreign_host_is_refused_and_docs_are_off(server):
    """DNS rebinding: a page on attacker.example whose name now resolves to 127.0.0.1 sends
    `Host: attacker.example`."""
    for path in ("/", "/healthz"):
        r = httpx.get(server.url + path, headers={"Host": "attacker.example"})
        assert r.status_code == 400 and "--allowed-host attacker.example" in r.json()["detail"]
    r = httpx.post(server.url + "/v1/transcribe", headers={"Host": "attacker.example:80"},
                   files={"file": ("a.wav", b"RIFF")})
    assert r.status_code == 400
    assert httpx.get(server.url + "/", headers={"Host": "localhost"}).status_code == 200
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert httpx.get(server.url + path).status_code == 404
    r = httpx.post(server.url + "/v1/transcribe", headers={"Origin": "https://evil.example"},
                   files={"file": ("a.wav", b"RIFF")})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


def test_api_key_is_required_when_set():
    from asrlab.serve import ServerLimits, create_app

    app = create_app(_FakeTranscriber(), ServerLimits(), api_key="s3cret")

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return [(await c.get("/healthz", headers=h)).status_code for h in
                    ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer s3cret"},
                     {"X-API-Key": "s3cret"})] + [(await c.post("/v1/transcribe")).status_code,
                                                  (await c.get("/")).status_code]

    assert asyncio.run(main()) == [401, 401, 200, 200, 401, 200]


def test_uploads_in_flight_are_capped_and_slow_bodies_time_out():
    from asrlab.serve import ServerLimits, create_app

    app = create_app(_FakeTranscriber(), ServerLimits(max_uploads=3, max_uploads_per_client=2,
                                                      body_timeout_s=0.3))

    async def call(client: str):
        sent = []
        scope = {"type": "http", "method": "POST", "path": "/v1/transcribe",
                 "headers": [(b"host", b"127.0.0.1:8000")], "query_string": b"",
                 "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 8000),
                 "client": (client, 1), "root_path": ""}

        async def receive():  # a client that never sends its body
            await asyncio.sleep(3600)

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        return start["status"], dict(start["headers"]).get(b"retry-after")

    async def main():
        slow = [asyncio.create_task(call("10.0.0.1")) for _ in range(2)]
        await asyncio.sleep(0.05)
        own = await call("10.0.0.1")  # at once, not after the slow ones: this client's limit
        slow.append(asyncio.create_task(call("10.0.0.2")))
        await asyncio.sleep(0.05)
        third = await call("10.0.0.3")  # 3 in flight: the global limit
        return own, third, [await t for t in slow]

    own, third, slow = asyncio.run(main())
    assert own == (429, b"1") and third == (503, b"1") and slow == [(408, None)] * 3


def test_exposed_bind_address_warns_unless_loopback():
    from asrlab.commands.serve import exposure_warnings

    assert exposure_warnings("127.0.0.1", 8000, False) == []
    assert exposure_warnings("::1", 8000, False) == []
    line, names = exposure_warnings("0.0.0.0", 8000, False)
    assert "no authentication" in line and "--api-key-file" in line
    assert "--allowed-host" in names
    line, _ = exposure_warnings("0.0.0.0", 8000, True)
    assert "API key" in line and "TLS" in line
    (line,) = exposure_warnings("192.168.1.5", 8000, True)  # its own address is allowed


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


# ---- no cross-site use -------------------------------------------------------------------------

def _asgi_requests(app, requests: list[tuple]) -> list[httpx.Response]:
    """(method, path, headers[, kwargs]) through the ASGI app, no server; base URL 127.0.0.1."""
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            return [await c.request(m, path, headers=h, **(rest[0] if rest else {}))
                    for m, path, h, *rest in requests]

    return asyncio.run(main())


def test_only_allowed_host_names_are_answered():
    from asrlab.serve import Access, ServerLimits, create_app

    app = create_app(_FakeTranscriber(), ServerLimits(), access=Access(allowed_hosts=("asr.lan",)))
    hosts = ["attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example",
             "localhost.attacker.example", "", "asr.lan.evil", "localhost:8000", "127.0.0.1:8000",
             "127.0.0.2", "[::1]:8000", "LOCALHOST", "asr.lan", "ASR.lan:443"]
    got = [r.status_code for r in _asgi_requests(app, [("GET", "/", {"Host": h})
                                                       for h in hosts])]
    assert got == [400] * 6 + [200] * 7, dict(zip(hosts, got))
    (r,) = _asgi_requests(app, [("GET", "/healthz", {"Host": "attacker.example"})])
    assert r.status_code == 400 and "--allowed-host attacker.example" in r.json()["detail"]


def test_other_sites_pages_are_refused_unless_their_origin_is_allowed():
    from asrlab.serve import Access, ServerLimits, create_app

    plain = create_app(_FakeTranscriber(), ServerLimits())
    same, evil, null = [_asgi_requests(plain, [("GET", "/healthz", {"Origin": o})])[0]
                        for o in ("http://127.0.0.1:8000", "https://evil.example", "null")]
    assert same.status_code == 200 and "access-control-allow-origin" not in same.headers
    assert evil.status_code == 403 and "--cors" in evil.json()["detail"]
    assert null.status_code == 403
    app = create_app(_FakeTranscriber(), ServerLimits(),
                     access=Access(cors_origins=("https://app.example",)))
    ok, other, preflight = _asgi_requests(app, [
        ("GET", "/healthz", {"Origin": "https://app.example"}),
        ("GET", "/healthz", {"Origin": "https://evil.example"}),
        ("OPTIONS", "/v1/transcribe", {"Origin": "https://app.example",
                                       "Access-Control-Request-Method": "POST",
                                       "Access-Control-Request-Headers": "x-api-key"})])
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    with pytest.raises(ValueError, match="'\\*' is not accepted"):
        Access(cors_origins=("*",)).validate()
    with pytest.raises(ValueError, match="without scheme"):
        Access(allowed_hosts=("http://x",)).validate()


def test_the_page_has_a_content_security_policy_that_allows_its_own_script_only():
    import base64
    import hashlib
    import re

    from asrlab.serve import ServerLimits, create_app, page_html

    (r,) = _asgi_requests(create_app(_FakeTranscriber(), ServerLimits()), [("GET", "/", {})])
    csp = r.headers["content-security-policy"]
    (script,) = re.findall(r"<script>(.*?)</script>", page_html(), re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and r.headers["x-content-type-options"] == "nosniff"


def test_docs_only_when_asked_and_then_behind_the_key():
    from asrlab.serve import Access, ServerLimits, create_app

    off = create_app(_FakeTranscriber(), ServerLimits(), api_key="k")
    assert [r.status_code for r in _asgi_requests(off, [
        ("GET", p, {"X-API-Key": "k"}) for p in ("/docs", "/openapi.json")])] == [404, 404]
    on = create_app(_FakeTranscriber(), ServerLimits(), api_key="k", access=Access(docs=True))
    assert [r.status_code for r in _asgi_requests(on, [
        ("GET", "/docs", {}), ("GET", "/openapi.json", {}),
        ("GET", "/docs", {"X-API-Key": "k"}), ("GET", "/openapi.json", {"X-API-Key": "k"})])] \
        == [401, 401, 200, 200]
    open_docs = create_app(_FakeTranscriber(), ServerLimits(), access=Access(docs=True))
    (r,) = _asgi_requests(open_docs, [("GET", "/openapi.json", {})])
    assert r.status_code == 200 and "/v1/transcribe" in r.json()["paths"]


def test_healthz_names_files_without_their_paths():
    from asrlab.serve import ServerLimits, create_app

    app = create_app(_FakeTranscriber(), ServerLimits(), model_name="/home/me/runs/model.onnx",
                     decoder_info={"kind": "beam", "lm": "/home/me/secret/lm3.bin"})
    (r,) = _asgi_requests(app, [("GET", "/healthz", {})])
    assert r.json()["model"] == "model.onnx" and r.json()["decoder"]["lm"] == "lm3.bin"
    assert "/home/me" not in r.text


@pytest.mark.parametrize("fmt,subtype,ok", [
    ("WAV", "PCM_16", True), ("WAV", "FLOAT", True), ("WAVEX", "PCM_16", True),
    ("FLAC", "PCM_16", True), ("OGG", "VORBIS", True), ("AIFF", "PCM_16", False),
    ("CAF", "PCM_16", False), ("MAT5", "DOUBLE", False), ("AU", "PCM_16", False),
    ("W64", "PCM_16", False), ("RF64", "PCM_16", False), ("RAW", "PCM_16", False),
    ("MP3", "MPEG_LAYER_III", True)])
def test_only_the_documented_formats_are_parsed(fmt, subtype, ok):
    from asrlab.serve import HTTPProblem, ServerLimits, read_upload_audio

    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) does not write {fmt}")
    data = _encode(np.zeros(8000, np.float32) + 0.01, 8000, fmt, subtype)
    if ok:
        assert abs(len(read_upload_audio(data, 16000, ServerLimits())) - 16000) < 1200
        return
    with pytest.raises(HTTPProblem) as e:
        read_upload_audio(data, 16000, ServerLimits())
    assert e.value.status == 415 and "WAV, FLAC, OGG (Vorbis, Opus) or MP3" in e.value.detail


def test_the_api_key_comes_from_a_file_or_the_environment_and_argv_warns(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from asrlab.commands.serve import api_key_from

    def args(**kw):
        return SimpleNamespace(**{"api_key": None, "api_key_file": None, **kw})

    monkeypatch.delenv("ASRLAB_API_KEY", raising=False)
    assert api_key_from(args()) == (None, [])
    monkeypatch.setenv("ASRLAB_API_KEY", "from-env")
    assert api_key_from(args()) == ("from-env", [])
    f = tmp_path / "key"
    f.write_text("from-file\n")
    assert api_key_from(args(api_key_file=f)) == ("from-file", [])
    key, (warning,) = api_key_from(args(api_key="on-argv"))
    assert key == "on-argv" and "ps" in warning and "--api-key-file" in warning
    f.write_text("\n")
    with pytest.raises(ValueError, match="first line is empty"):
        api_key_from(args(api_key_file=f))
    with pytest.raises(ValueError, match="cannot be read"):
        api_key_from(args(api_key_file=tmp_path / "missing"))
    with pytest.raises(ValueError, match="not both"):
        api_key_from(args(api_key_file=f, api_key="x"))


def test_limits_refuse_a_per_client_cap_above_the_global_one():
    from asrlab.serve import ServerLimits

    with pytest.raises(ValueError, match="--max-uploads-per-client 8 is more than --max-uploads 4"):
        ServerLimits(max_uploads=4, max_uploads_per_client=8).validate()
    assert ServerLimits().max_uploads_per_client < ServerLimits().max_uploads


# ---- memory ------------------------------------------------------------------------------------

def test_the_batcher_lets_go_of_the_waveforms_it_answered():
    import gc
    import weakref

    from asrlab.serve import MicroBatcher

    async def main():
        b = MicroBatcher(_FakeTranscriber(), max_batch=4)
        await b.start()
        wave = np.zeros(1000, np.float32)
        ref = weakref.ref(wave)
        assert await b.submit(wave) == 1000
        del wave
        await asyncio.sleep(0.05)  # the loop is waiting for the next request now
        gc.collect()
        alive = ref() is not None
        await b.stop()
        return alive

    assert not asyncio.run(main())


def _proc_memory_mb(pid: int) -> tuple[float, float]:
    kb = {line.split(":")[0]: int(line.split()[1]) for line in
          open(f"/proc/{pid}/status") if line.startswith(("VmRSS:", "VmHWM:"))}
    return kb["VmRSS"] / 1024, kb["VmHWM"] / 1024


@pytest.mark.slow
def test_uploads_at_96_khz_stay_within_the_printed_bound_and_memory_goes_back(tiny_onnx,
                                                                              tmp_path):
    """4 uploads at once of 60 s at 96 kHz (a 17 kB FLAC each): the server's peak growth stays
    within the bound it printed at start-up (4 x (1 MB body + 1 MB spool + 60 s x 16 kHz x 4 B +
    the decode's working set) + one batch measured), and RSS comes back."""
    import re
    import subprocess
    import sys

    from tests.product.conftest import REPO, free_port, wait_until_up

    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", 96000, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(6):
            f.write(np.zeros(960_000, np.int16))
    data = buf.getvalue()
    port, log = free_port(), tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "asrlab", "serve", "--model", str(tiny_onnx), "--port",
             str(port), "--max-mb", "1", "--max-seconds", "60", "--max-uploads", "4",
             "--threads", "1", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
            env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, log, timeout=120)
        bound_mb = float(re.search(r"memory bound (\d+) MB", log.read_text()).group(1))

        def post(i: int) -> int:
            with _client_at(f"127.0.0.{20 + i}") as c:
                return c.post(url + "/v1/transcribe", files={"file": ("a.flac", data)}).status_code

        assert post(0) == 200  # warm: threads, arenas, the first decode's imports
        rss0, _ = _proc_memory_mb(proc.pid)
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(post, range(4))) == [200] * 4
        time.sleep(0.5)
        rss1, peak = _proc_memory_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    assert peak - rss0 <= bound_mb, (peak - rss0, bound_mb)
    assert rss1 - rss0 < 32, (rss0, rss1)


def test_the_per_client_default_never_exceeds_a_lower_global_cap():
    from types import SimpleNamespace

    from asrlab.commands.serve import per_client

    assert per_client(SimpleNamespace(max_uploads=16, max_uploads_per_client=None)) == 4
    assert per_client(SimpleNamespace(max_uploads=2, max_uploads_per_client=None)) == 2
    assert per_client(SimpleNamespace(max_uploads=16, max_uploads_per_client=8)) == 8
