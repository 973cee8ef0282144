"""HTTP server: FastAPI app around one Transcriber (the model given at start; requests never name
a model or a path).

    POST /v1/transcribe   multipart field `file`: WAV, FLAC, OGG or MP3, any rate and channels
                          -> {"text", "words": [{"word","start","end","confidence"}], "duration"}
    GET  /healthz         {"status": "ok", model, decoder, limits, ...} (file names, no paths)
    GET  /                the web page (upload or record, transcript with word timings)
    GET  /docs, /openapi.json   only when started with `docs=True` (`--docs`)

Errors: 413 upload over the size limit (from the Content-Length header before the body is read,
else while it streams), 415 not WAV/FLAC/OGG/MP3 (checked from the first bytes, before libsndfile
parses anything), 422 audio too long, too costly to decode (channels x rate x seconds, from the
header before decoding: decompression bombs), empty or NaN/inf; 408 body not received within
`body_timeout_s`; 429 with Retry-After when this client (peer address) already has
`max_uploads_per_client` uploads in flight, 503 with Retry-After when `max_uploads` are in flight
in all; 401 without the API key when one is set; 400 for a Host header not allowed, 403 for a
request from another site's page. Each with a JSON `detail` message.

Bounded: `UploadGuard` reads each upload body itself, within the size limit and the body
timeout, and admits at most `max_uploads` requests at once and `max_uploads_per_client` from one
peer address, so held-open or slow uploads cannot pile up and one client cannot take every slot.
The body is handed on in the pieces it arrived in (never joined); the multipart parser spools the
file (1 MB in memory, the rest on disk) and the audio is decoded from that file in blocks
(asrlab.audio: streamed downmix and resampling), so a request holds at most its body, then the
spooled megabyte plus its decoded audio at the model's rate; audio longer than 30 s is recognized
in overlapping windows (asrlab.longform). `ServerLimits.memory_bound` adds these up; glibc is told
to map large buffers and the heap is trimmed after each upload, so the memory goes back.

Cross-site use (`Access`): requests must name the server by an allowed Host (loopback names,
plus `allowed_hosts`: a DNS-rebinding page names its own domain), a request carrying another
site's Origin is refused unless that origin was allowed with `cors_origins` (then CORS headers are
sent for it, and for nothing else), and the page is sent with a Content-Security-Policy that
allows its own inline script and style (by hash) and requests to this server only.

Concurrency: audio decoding runs in the thread pool; recognition goes through `MicroBatcher`,
which gathers queued requests (up to `max_batch`; optionally waiting `batch_wait_ms` after the
first for more) into one padded forward pass in a worker thread. While a batch runs, new
requests queue and form the next batch, so a busy server batches by itself and an idle one adds
no delay (the default wait is 0). bench/server_load.py measures max_batch 1 against 8.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import io
import ipaddress
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, File, UploadFile
from fastapi.responses import JSONResponse

from asrlab.audio import (DECODE_RATE, DECODE_WORK_BYTES, AudioContentError, AudioError,
                          AudioLimitError, AudioLimits, check_header, check_samples,
                          decode_audio_file, probe)
from asrlab.runtime import memory_status, reset_peak_memory, trim_heap

log = logging.getLogger("asrlab.serve")
BODY_OVERHEAD = 64 * 1024  # multipart headers and boundaries on top of the file itself
SPOOL_BYTES = 1024 * 1024  # what the multipart parser keeps of a file in memory (the rest: disk)
FORMATS = "WAV, FLAC, OGG (Vorbis, Opus) or MP3"  # what the docs promise, all that is parsed
LIBSNDFILE_FORMATS = {"WAV", "WAVEX", "FLAC", "OGG", "MP3"}  # MP3: libsndfile >= 1.1


@dataclass(frozen=True)
class ServerLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_seconds: float = 600.0  # recognized in 30 s windows: memory is the decoded audio only
    max_batch: int = 8
    batch_wait_ms: float = 0.0  # 0: batch what is already queued, never delay a request
    workers: int = 1  # batches run at once (each in its own thread)
    max_uploads: int = 16  # requests in flight (receiving, decoding or queued); more get 503
    max_uploads_per_client: int = 4  # of those, from one peer address; more get 429
    body_timeout_s: float = 30.0  # the whole upload body must arrive within this
    max_sample_rate: int = 192_000
    max_decode_rate: int = DECODE_RATE  # channels x rate decoded per second of audio (CPU cost)

    def validate(self) -> "ServerLimits":
        bad = [k for k in ("max_bytes", "max_seconds", "max_batch", "workers", "max_uploads",
                           "max_uploads_per_client", "body_timeout_s", "max_sample_rate",
                           "max_decode_rate") if not getattr(self, k) > 0]
        if bad:
            raise ValueError(f"server limits must be positive: {', '.join(bad)}")
        if self.max_uploads_per_client > self.max_uploads:
            raise ValueError(f"--max-uploads-per-client {self.max_uploads_per_client} is more "
                             f"than --max-uploads {self.max_uploads}: lower it (one client "
                             f"should not be able to take every slot)")
        return self

    @property
    def audio(self) -> AudioLimits:
        return AudioLimits(max_seconds=self.max_seconds, max_sample_rate=self.max_sample_rate,
                           max_decoded_samples=int(self.max_seconds * self.max_decode_rate),
                           flag="the server's --max-seconds")

    def upload_bytes(self, sample_rate: int) -> int:
        """The most one upload holds at once: its body while it is received and parsed, then
        the spooled part of the file, its decoded audio at `sample_rate` and the decode's
        working set (counted together: an upload is in one stage at a time, this is the sum)."""
        body = self.max_bytes + BODY_OVERHEAD
        return body + SPOOL_BYTES + int(self.max_seconds * sample_rate * 4) + DECODE_WORK_BYTES

    def memory_bound(self, sample_rate: int, recognition_bytes: int = 0) -> int:
        """Bytes the requests in flight can hold at most: `upload_bytes` for each upload, plus,
        for each worker, the working memory of one batch (`recognition_bytes`: features and
        model of `max_batch` windows, as `measure_recognition` measured it)."""
        return (self.max_uploads * self.upload_bytes(sample_rate)
                + self.workers * recognition_bytes)


LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class Access:
    """Who may use the server from a browser. allowed_hosts: names (or addresses) clients may
    give in the Host header besides the loopback ones (localhost, 127.0.0.0/8, ::1); a page on
    another origin is refused unless its origin is in cors_origins (then CORS headers allow it);
    docs: serve /docs and /openapi.json (behind the API key when one is set)."""
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    docs: bool = False

    def validate(self) -> "Access":
        for h in self.allowed_hosts:
            if not h or "/" in h or h != h.strip() or h == "*":
                raise ValueError(f"--allowed-host {h!r}: give a host name or address as clients "
                                 f"write it in URLs, without scheme, port or path (e.g. "
                                 f"asr.example.com)")
        for o in self.cors_origins:
            u = urlsplit(o)
            if u.scheme not in ("http", "https") or not u.hostname or u.path not in ("", "/") \
                    or u.query or o.endswith("/"):
                raise ValueError(f"--cors {o!r}: give one origin as a browser sends it, scheme "
                                 f"and host (and port), e.g. https://app.example.com; '*' is not "
                                 f"accepted (it would let every site use this server)")
        return self

    def host_allowed(self, host: str | None) -> bool:
        name = host_name(host)
        if name is None:
            return False
        if name in LOOPBACK_NAMES or name in {host_name(h) for h in self.allowed_hosts}:
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Same origin as the Host the request names, an allowed --cors origin, or a page
        served under an --allowed-host name (e.g. behind a proxy that rewrites Host)."""
        if origin in self.cors_origins:
            return True
        u = urlsplit(origin)
        if not u.hostname:  # "null": sandboxed frames, file:// pages
            return False
        if u.netloc.lower() == host.lower():
            return True
        return u.hostname.lower() in {host_name(h) for h in self.allowed_hosts}


def host_name(host: str | None) -> str | None:
    """'Example.COM:8000' -> 'example.com', '[::1]:80' -> '::1'; None for a malformed value."""
    if not host:
        return None
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else None
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.rstrip(".")
    return name if name and re.fullmatch(r"[a-z0-9._:-]+", name) else None


class HTTPProblem(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class UploadGuard:
    """Outermost ASGI layer (see the module doc): Host allow-list (400), cross-site Origin
    (403), API key (401), uploads in flight from this client (429) and in all (503, both with
    Retry-After), body size (413 from Content-Length before reading, else while reading) and
    body timeout (408). The body it read is replayed to the app in the pieces it came in, so
    nothing downstream waits on the client any more."""

    def __init__(self, app, limits: ServerLimits, api_key: str | None = None,
                 access: Access = Access()):
        self.app, self.limits, self.api_key, self.access = app, limits, api_key, access
        self.limit = limits.max_bytes + BODY_OVERHEAD
        self.protected = ("/v1/", "/healthz") + (("/docs", "/openapi.json") if access.docs
                                                 else ())
        self.in_flight = 0
        self.by_client: collections.Counter[str] = collections.Counter()
        self.refused = {"busy": 0, "client_busy": 0, "timeout": 0, "too_large": 0,
                        "unauthorized": 0, "bad_host": 0, "cross_site": 0}
        self.state = getattr(app, "state", None)  # the FastAPI app's state (batcher)
        if self.state is not None:
            self.state.guard = self

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # lifespan (no websocket routes exist)
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.access.host_allowed(host):
            self.refused["bad_host"] += 1
            return await reply(scope, receive, send, 400, bad_host_message(host))
        origin = headers.get(b"origin")
        if origin is not None and not self.access.origin_allowed(origin.decode("latin-1"), host):
            self.refused["cross_site"] += 1
            return await reply(scope, receive, send, 403, f"cross-site request refused (Origin "
                               f"{origin.decode('latin-1')}): this server answers its own page; "
                               f"start it with --cors ORIGIN to let that site's pages use it")
        if not scope["path"].startswith(self.protected):
            return await self.app(scope, receive, send)
        if self.api_key is not None and not self.authorized(headers):
            self.refused["unauthorized"] += 1
            return await reply(scope, receive, send, 401, "missing or wrong API key: send it "
                               "as the header `Authorization: Bearer KEY` or `X-API-Key: KEY`",
                               {"www-authenticate": "Bearer"})
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            self.refused["too_large"] += 1
            return await reply(scope, receive, send, 413,
                               too_large_message(self.limits.max_bytes, int(length)))
        client = (scope.get("client") or ("unknown",))[0]
        if self.by_client[client] >= self.limits.max_uploads_per_client:
            self.refused["client_busy"] += 1
            return await reply(scope, receive, send, 429, f"too many uploads at once from your "
                               f"address: {self.by_client[client]} in flight (the per-client "
                               f"limit); retry when one has finished", {"retry-after": "1"})
        if self.in_flight >= self.limits.max_uploads:
            self.refused["busy"] += 1
            return await reply(scope, receive, send, 503, f"busy: {self.in_flight} uploads in "
                               f"flight (the limit); retry in a moment", {"retry-after": "1"})
        self.in_flight += 1
        self.by_client[client] += 1
        try:
            try:
                chunks = await asyncio.wait_for(self.read_body(receive),
                                                self.limits.body_timeout_s)
            except asyncio.TimeoutError:
                self.refused["timeout"] += 1
                return await reply(scope, receive, send, 408, f"upload not received within "
                                   f"{self.limits.body_timeout_s:g} s; send the file at once")
            except HTTPProblem as e:
                self.refused["too_large"] += 1
                return await reply(scope, receive, send, e.status, e.detail)
            if chunks is None:  # the client went away
                return
            await self.app(scope, replay(chunks, receive), send)
        finally:
            self.in_flight -= 1
            self.by_client[client] -= 1
            if not self.by_client[client]:
                del self.by_client[client]
            trim_heap()  # what the request freed goes back to the system (runtime.py)

    def authorized(self, headers: dict) -> bool:
        auth = headers.get(b"authorization", b"").decode("latin-1")
        given = auth[7:] if auth.lower().startswith("bearer ") else \
            headers.get(b"x-api-key", b"").decode("latin-1")
        return hmac.compare_digest(given.encode(), self.api_key.encode())

    async def read_body(self, receive) -> collections.deque | None:
        """The body's pieces as they came (not joined: that would hold it twice)."""
        chunks: collections.deque[bytes] = collections.deque()
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise HTTPProblem(413, too_large_message(self.limits.max_bytes))
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks


def replay(chunks: collections.deque, receive):
    """The body already read, piece by piece (each let go once handed on), then the client's
    own messages (its disconnect)."""

    done = False

    async def replayed():
        nonlocal done
        if done:
            return await receive()
        body = chunks.popleft() if chunks else b""
        done = not chunks
        return {"type": "http.request", "body": body, "more_body": not done}

    return replayed


def bad_host_message(host: str) -> str:
    name = host_name(host) or host
    return (f"the Host header {host!r} is not a name this server answers to (by default "
            f"localhost and loopback addresses: a page on another site must not reach it by "
            f"DNS rebinding); start it with --allowed-host {name or 'NAME'} if clients use "
            f"that name")


async def reply(scope, receive, send, status: int, detail: str, headers: dict | None = None):
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await response(scope, receive, send)


def too_large_message(max_bytes: int, size: int | None = None) -> str:
    got = f" (this request: {size} bytes)" if size else ""
    return (f"upload too large: the limit is {max_bytes} bytes{got}; send a shorter recording "
            f"or a compressed (FLAC/OGG) file")


# ---- audio checks ----------------------------------------------------------------------------

def container_of(head: bytes) -> str | None:
    """The container the first 12 bytes announce, among FORMATS; None for anything else (then
    libsndfile is not asked to parse it: it would read CAF, MAT5, AIFF, ... as well)."""
    if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"  # an ID3v2 tag, or an MPEG audio frame's sync word (libsndfile then checks)
    return {b"fLaC": "FLAC", b"OggS": "OGG"}.get(head[:4])


def read_upload_audio(data: bytes | BinaryIO, sample_rate: int, limits: ServerLimits
                      ) -> np.ndarray:
    """An upload (bytes, or the open file the multipart parser spooled it to) -> mono float32
    at `sample_rate`; HTTPProblem 413/415/422 with a clear message. The format is checked from
    the first bytes and the duration from the header before decoding, so an unsupported or
    over-long file costs nothing."""
    import soundfile as sf

    file = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    if size > limits.max_bytes:
        raise HTTPProblem(413, too_large_message(limits.max_bytes, size))
    if not size:
        raise HTTPProblem(415, f"empty upload: send a {FORMATS} file")
    head = file.read(12)
    file.seek(0)
    if container_of(head) is None:
        raise HTTPProblem(415, f"not a supported audio file: send {FORMATS}")
    try:
        with sf.SoundFile(file) as f:
            info, fmt, subtype = probe(f), f.format, f.subtype
    except Exception as e:  # libsndfile's reason, without the file object's repr it starts with
        reason = str(e).rsplit(": ", 1)[-1]
        raise HTTPProblem(415, f"not a supported audio file ({FORMATS} expected): "
                               f"{reason}") from None
    if fmt not in LIBSNDFILE_FORMATS or (fmt == "OGG" and subtype not in ("VORBIS", "OPUS")):
        raise HTTPProblem(415, f"not a supported audio file ({fmt} {subtype}): send {FORMATS}")
    if info.seconds is not None and info.seconds > limits.max_seconds:
        raise HTTPProblem(422, f"audio too long: {info.seconds:.1f} s, limit "
                               f"{limits.max_seconds:g} s; split it into shorter files")
    try:
        check_header(info, limits.audio)  # decompression bombs: refused before decoding
        file.seek(0)
        wave = decode_audio_file(file, sample_rate, limits.audio)
        check_samples(wave)
        return wave
    except AudioLimitError as e:
        raise HTTPProblem(422, f"audio refused: {e}") from None
    except AudioContentError as e:  # empty, NaN/inf
        raise HTTPProblem(422, str(e)) from None
    except AudioError as e:
        raise HTTPProblem(415, str(e)) from None


def measure_recognition(transcriber, limits: ServerLimits) -> int | None:
    """Peak memory of the largest batch the server runs: `max_batch` waveforms one window
    long (30 s; longer audio is recognized a window at a time), run once (the warm-up), with
    the process's peak reset before it. None where the peak cannot be read (not Linux)."""
    rng = np.random.default_rng(0)
    waves = [(0.01 * rng.standard_normal(transcriber.window_samples)).astype(np.float32)
             for _ in range(limits.max_batch)]
    before = memory_status()
    if before is None or not reset_peak_memory():
        transcriber.transcribe_waves(waves)
        return None
    transcriber.transcribe_waves(waves)
    after = memory_status()
    return max(0, after[1] - before[0]) if after else None


# ---- micro-batching --------------------------------------------------------------------------

@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest: int = 0


class MicroBatcher:
    """Runs concurrent requests as padded batches in worker threads (see the module doc)."""

    def __init__(self, transcriber, max_batch: int = 8, wait_ms: float = 0.0, workers: int = 1):
        self.tr = transcriber
        self.max_batch, self.wait_s, self.workers = max(1, max_batch), wait_ms / 1000, workers
        self.stats = BatchStats()
        self._queue: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asr")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, wave: np.ndarray):
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((wave, fut))
        return await fut

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                try:
                    batch.append(self._queue.get_nowait() if remaining <= 0
                                 else await asyncio.wait_for(self._queue.get(), remaining))
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            await self._run(batch)
            del batch  # not kept while waiting for the next request (its waveforms: 38 MB each)

    async def _run(self, batch: list) -> None:
        """Answer every future of the batch. If the batch fails, each request is retried alone,
        so one bad utterance fails only its own request."""
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._pool, self.tr.transcribe_waves,
                                                 [w for w, _ in batch])
        except Exception as e:
            if len(batch) > 1:
                for item in batch:
                    await self._run([item])
                return
            log.exception("recognition failed")
            if not batch[0][1].done():
                batch[0][1].set_exception(e)
            return
        for (_, fut), res in zip(batch, results):
            if not fut.done():
                fut.set_result(res)


# ---- the app ---------------------------------------------------------------------------------

def page_html() -> str:
    return resources.files("asrlab.web").joinpath("index.html").read_text(encoding="utf-8")


def page_headers(page: str) -> dict[str, str]:
    """The page's Content-Security-Policy: its own inline script and style (by their SHA-256,
    so an injected script would not run), requests and media to this server (and recordings'
    blob: URLs) only, no frames, no forms, no plugins; and the usual companions."""
    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S)
        return " ".join("'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest())
                        .decode() + "'" for b in bodies) or "'none'"

    csp = (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
           f"connect-src 'self'; media-src 'self' blob:; img-src 'self' data:; "
           f"base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return {"content-security-policy": csp, "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer", "x-frame-options": "DENY",
            "permissions-policy": "microphone=(self)"}


def public_decoder_info(info: dict | None) -> dict:
    """/healthz's decoder description: file names, never paths."""
    info = dict(info or {})
    if info.get("lm"):
        info["lm"] = Path(str(info["lm"])).name
    return info


def create_app(transcriber, limits: ServerLimits = ServerLimits(), model_name: str = "",
               decoder_info: dict | None = None, api_key: str | None = None,
               access: Access = Access()):
    """The ASGI app; `api_key`: required on /v1/ and /healthz (and /docs with `access.docs`)
    when given; `access`: Host allow-list, CORS origins, docs (UploadGuard)."""
    from contextlib import asynccontextmanager

    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import HTMLResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limits, access = limits.validate(), access.validate()
    batcher = MicroBatcher(transcriber, limits.max_batch, limits.batch_wait_ms, limits.workers)

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    # FastAPI's own body limit counts the body while it streams, before multipart parsing spools
    # it (a chunked upload has no Content-Length for ContentLengthLimit to refuse early)
    app = FastAPI(title="asrlab", lifespan=lifespan, redoc_url=None,
                  docs_url="/docs" if access.docs else None,
                  openapi_url="/openapi.json" if access.docs else None,
                  max_body_size=limits.max_bytes + BODY_OVERHEAD)
    app.state.batcher = batcher
    page = page_html()
    headers = page_headers(page)
    model_name = Path(model_name).name
    decoder_public = public_decoder_info(decoder_info)

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request, exc: StarletteHTTPException):
        if exc.status_code == 413:  # say what the limit is
            return JSONResponse({"detail": too_large_message(limits.max_bytes)},
                                status_code=413)
        return await http_exception_handler(request, exc)

    @app.exception_handler(HTTPProblem)
    async def problem(_request, exc: HTTPProblem):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse(page, headers=headers)

    @app.get("/healthz")
    async def healthz():
        guard = app.state.guard
        return {"status": "ok", "model": model_name, "decoder": decoder_public,
                "sample_rate": transcriber.sample_rate, "limits": asdict(limits),
                "batches": asdict(batcher.stats),
                "uploads": {"in_flight": guard.in_flight, "refused": dict(guard.refused)}}

    @app.post("/v1/transcribe")
    async def transcribe(file: UploadFile = File(..., description=f"{FORMATS} audio")):
        # decoded from the spooled file (1 MB in memory, the rest on disk), not from a copy
        wave = await run_in_threadpool(read_upload_audio, file.file, transcriber.sample_rate,
                                       limits)
        result = await batcher.submit(wave)
        del wave
        return result.to_dict()

    # the guard is outermost (its JSON answers are not replaced by the body limiter's plain-text
    # one), except for CORS when origins are allowed: preflights are answered before the key is
    # asked for, and the guard's refusals carry the CORS headers too
    guarded = UploadGuard(app, limits, api_key, access)
    if not access.cors_origins:
        return guarded
    from starlette.middleware.cors import CORSMiddleware

    return CORSMiddleware(guarded, allow_origins=list(access.cors_origins),
                          allow_methods=["GET", "POST"],
                          allow_headers=["authorization", "x-api-key", "content-type"],
                          max_age=600)
