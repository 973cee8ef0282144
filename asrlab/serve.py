"""HTTP server: FastAPI app around one Transcriber (the model given at start; requests never name
a model or a path).

    POST /v1/transcribe   multipart field `file`: WAV/FLAC/OGG, any rate, any channel count
                          -> {"text", "words": [{"word","start","end","confidence"}], "duration"}
    GET  /healthz         {"status": "ok", model, decoder, limits}
    GET  /                the web page (upload or record, transcript with word timings)

Errors: 413 upload over the size limit (from the Content-Length header before the body is read,
else while it streams), 415 not audio, 422 audio too long, too costly to decode (channels x rate
x seconds, from the header before decoding: decompression bombs), empty or NaN/inf; 408 body not
received within `body_timeout_s`; 503 with Retry-After when `max_uploads` requests are already
in flight; 401 without the API key when one is set. Each with a JSON `detail` message.

Bounded: `UploadGuard` (outermost) reads each upload body itself, within the size limit and the
body timeout, and admits at most `max_uploads` requests at once, so held-open or slow uploads
cannot pile up; audio is decoded in blocks within `AudioLimits`, and audio longer than 30 s is
recognized in overlapping windows (asrlab.longform), so the memory a request can take is bounded
by max_bytes + max_seconds x sample rate x 4 bytes (`ServerLimits.memory_bound`).

Concurrency: audio decoding runs in the thread pool; recognition goes through `MicroBatcher`,
which gathers queued requests (up to `max_batch`; optionally waiting `batch_wait_ms` after the
first for more) into one padded forward pass in a worker thread. While a batch runs, new
requests queue and form the next batch, so a busy server batches by itself and an idle one adds
no delay (the default wait is 0). bench/server_load.py measures max_batch 1 against 8.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
from fastapi import FastAPI, File, UploadFile
from fastapi.responses import JSONResponse

from asrlab.audio import (AudioContentError, AudioError, AudioLimitError, AudioLimits,
                          load_checked, probe)

log = logging.getLogger("asrlab.serve")
BODY_OVERHEAD = 64 * 1024  # multipart headers and boundaries on top of the file itself


@dataclass(frozen=True)
class ServerLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_seconds: float = 600.0  # recognized in 30 s windows: memory is the decoded audio only
    max_batch: int = 8
    batch_wait_ms: float = 0.0  # 0: batch what is already queued, never delay a request
    workers: int = 1  # batches run at once (each in its own thread)
    max_uploads: int = 16  # requests in flight (receiving, decoding or queued); more get 503
    body_timeout_s: float = 30.0  # the whole upload body must arrive within this
    max_sample_rate: int = 192_000

    def validate(self) -> "ServerLimits":
        bad = [k for k in ("max_bytes", "max_seconds", "max_batch", "workers", "max_uploads",
                           "body_timeout_s", "max_sample_rate") if not getattr(self, k) > 0]
        if bad:
            raise ValueError(f"server limits must be positive: {', '.join(bad)}")
        return self

    @property
    def audio(self) -> AudioLimits:
        return AudioLimits(max_seconds=self.max_seconds, max_sample_rate=self.max_sample_rate,
                           flag="the server's --max-seconds")

    def memory_bound(self, sample_rate: int) -> int:
        """Bytes the uploads in flight can hold at most: body + decoded mono audio each."""
        per = self.max_bytes + BODY_OVERHEAD + int(self.max_seconds * sample_rate * 4)
        return self.max_uploads * per


class HTTPProblem(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class UploadGuard:
    """Outermost ASGI layer (see the module doc): API key, uploads in flight (503 +
    Retry-After), body size (413 from Content-Length before reading, else while reading) and
    body timeout (408). The body it read is replayed to the app, so nothing downstream waits on
    the client any more."""

    def __init__(self, app, limits: ServerLimits, api_key: str | None = None):
        self.app, self.limits, self.api_key = app, limits, api_key
        self.limit = limits.max_bytes + BODY_OVERHEAD
        self.in_flight = 0
        self.refused = {"busy": 0, "timeout": 0, "too_large": 0, "unauthorized": 0}
        self.state = getattr(app, "state", None)  # the FastAPI app's state (batcher)
        if self.state is not None:
            self.state.guard = self

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(("/v1/", "/healthz")):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
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
        if self.in_flight >= self.limits.max_uploads:
            self.refused["busy"] += 1
            return await reply(scope, receive, send, 503, f"busy: {self.in_flight} uploads in "
                               f"flight (the limit); retry in a moment", {"retry-after": "1"})
        self.in_flight += 1
        try:
            try:
                body = await asyncio.wait_for(self.read_body(receive),
                                              self.limits.body_timeout_s)
            except asyncio.TimeoutError:
                self.refused["timeout"] += 1
                return await reply(scope, receive, send, 408, f"upload not received within "
                                   f"{self.limits.body_timeout_s:g} s; send the file at once")
            except HTTPProblem as e:
                self.refused["too_large"] += 1
                return await reply(scope, receive, send, e.status, e.detail)
            if body is None:  # the client went away
                return
            await self.app(scope, replay(body, receive), send)
        finally:
            self.in_flight -= 1

    def authorized(self, headers: dict) -> bool:
        auth = headers.get(b"authorization", b"").decode("latin-1")
        given = auth[7:] if auth.lower().startswith("bearer ") else \
            headers.get(b"x-api-key", b"").decode("latin-1")
        return hmac.compare_digest(given.encode(), self.api_key.encode())

    async def read_body(self, receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise HTTPProblem(413, too_large_message(self.limits.max_bytes))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def replay(body: bytes, receive):
    """The body already read, then the client's own messages (its disconnect)."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def reply(scope, receive, send, status: int, detail: str, headers: dict | None = None):
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await response(scope, receive, send)


def too_large_message(max_bytes: int, size: int | None = None) -> str:
    got = f" (this request: {size} bytes)" if size else ""
    return (f"upload too large: the limit is {max_bytes} bytes{got}; send a shorter recording "
            f"or a compressed (FLAC/OGG) file")


# ---- audio checks ----------------------------------------------------------------------------

def read_upload_audio(data: bytes, sample_rate: int, limits: ServerLimits) -> np.ndarray:
    """Bytes -> mono float32 at `sample_rate`; HTTPProblem 413/415/422 with a clear message.
    The duration is read from the header before decoding, so an over-long file costs nothing."""
    import soundfile as sf

    if len(data) > limits.max_bytes:
        raise HTTPProblem(413, too_large_message(limits.max_bytes, len(data)))
    if not data:
        raise HTTPProblem(415, "empty upload: send a WAV, FLAC or OGG file")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            info = probe(f)
    except Exception as e:  # libsndfile's reason, without the BytesIO repr it starts with
        reason = str(e).rsplit(": ", 1)[-1]
        raise HTTPProblem(415, f"not a supported audio file (WAV, FLAC or OGG expected): "
                               f"{reason}") from None
    if info.seconds is not None and info.seconds > limits.max_seconds:
        raise HTTPProblem(422, f"audio too long: {info.seconds:.1f} s, limit "
                               f"{limits.max_seconds:g} s; split it into shorter files")
    try:  # the header against the limits first: decompression bombs refused before decoding
        return load_checked(data, sample_rate, limits.audio)
    except AudioLimitError as e:
        raise HTTPProblem(422, f"audio refused: {e}") from None
    except AudioContentError as e:  # empty, NaN/inf
        raise HTTPProblem(422, str(e)) from None
    except AudioError as e:
        raise HTTPProblem(415, str(e)) from None


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


def create_app(transcriber, limits: ServerLimits = ServerLimits(), model_name: str = "",
               decoder_info: dict | None = None, api_key: str | None = None):
    """The ASGI app; `api_key`: required on /v1/ and /healthz when given (UploadGuard)."""
    from contextlib import asynccontextmanager

    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import HTMLResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    batcher = MicroBatcher(transcriber, limits.max_batch, limits.batch_wait_ms, limits.workers)

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    # FastAPI's own body limit counts the body while it streams, before multipart parsing spools
    # it (a chunked upload has no Content-Length for ContentLengthLimit to refuse early)
    app = FastAPI(title="asrlab", lifespan=lifespan, docs_url="/docs", redoc_url=None,
                  max_body_size=limits.max_bytes + BODY_OVERHEAD)
    app.state.batcher = batcher
    page = page_html()

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
        return page

    @app.get("/healthz")
    async def healthz():
        guard = app.state.guard
        return {"status": "ok", "model": model_name, "decoder": decoder_info or {},
                "sample_rate": transcriber.sample_rate, "limits": asdict(limits),
                "batches": asdict(batcher.stats),
                "uploads": {"in_flight": guard.in_flight, "refused": dict(guard.refused)}}

    @app.post("/v1/transcribe")
    async def transcribe(file: UploadFile = File(..., description="WAV, FLAC or OGG audio")):
        data = await file.read(limits.max_bytes + 1)
        wave = await run_in_threadpool(read_upload_audio, data, transcriber.sample_rate, limits)
        result = await batcher.submit(wave)
        return result.to_dict()

    # outermost, so that its JSON answers are not replaced by the body limiter's plain-text one
    return UploadGuard(app, limits.validate(), api_key)
