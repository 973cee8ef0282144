"""HTTP server: FastAPI app around one Transcriber (the model given at start; requests never name
a model or a path).

    POST /v1/transcribe   multipart field `file`: WAV/FLAC/OGG, any rate, any channel count
                          -> {"text", "words": [{"word","start","end","confidence"}], "duration"}
    GET  /healthz         {"status": "ok", model, decoder, limits}
    GET  /                the web page (upload or record, transcript with word timings)

Errors: 413 upload over the size limit (from the Content-Length header before the body is read;
for chunked bodies, FastAPI's max_body_size while it streams), 415 not audio, 422 audio too long
or empty; each with a JSON `detail` message.

Concurrency: audio decoding runs in the thread pool; recognition goes through `MicroBatcher`,
which gathers queued requests (up to `max_batch`; optionally waiting `batch_wait_ms` after the
first for more) into one padded forward pass in a worker thread. While a batch runs, new
requests queue and form the next batch, so a busy server batches by itself and an idle one adds
no delay (the default wait is 0). bench/server_load.py measures max_batch 1 against 8.
"""

from __future__ import annotations

import asyncio
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
from fastapi import FastAPI, File, UploadFile
from fastapi.responses import JSONResponse

from asrlab.audio import AudioError, decode_audio_bytes

log = logging.getLogger("asrlab.serve")
BODY_OVERHEAD = 64 * 1024  # multipart headers and boundaries on top of the file itself


@dataclass(frozen=True)
class ServerLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_seconds: float = 120.0
    max_batch: int = 8
    batch_wait_ms: float = 0.0  # 0: batch what is already queued, never delay a request
    workers: int = 1  # batches run at once (each in its own thread)


class HTTPProblem(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class ContentLengthLimit:
    """Answers 413 (JSON, with the limit) from the Content-Length header alone, before the body is
    read. FastAPI's max_body_size still guards bodies without the header (chunked uploads)."""

    def __init__(self, app, limit: int, max_bytes: int):
        self.app, self.limit, self.max_bytes = app, limit, max_bytes
        self.state = getattr(app, "state", None)  # the FastAPI app's state (batcher)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.limit:
                response = JSONResponse({"detail": too_large_message(self.max_bytes, int(length))},
                                        status_code=413)
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


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
        info = sf.info(io.BytesIO(data))
    except Exception as e:  # libsndfile's reason, without the BytesIO repr it starts with
        reason = str(e).rsplit(": ", 1)[-1]
        raise HTTPProblem(415, f"not a supported audio file (WAV, FLAC or OGG expected): "
                               f"{reason}") from None
    duration = info.frames / info.samplerate if info.samplerate else 0.0
    if duration > limits.max_seconds:
        raise HTTPProblem(422, f"audio too long: {duration:.1f} s, limit {limits.max_seconds:g} s; "
                               f"split it into shorter files")
    try:
        wave = decode_audio_bytes(data, sample_rate)
    except AudioError as e:
        raise HTTPProblem(415, str(e)) from None
    if wave.size == 0:
        raise HTTPProblem(422, "the audio file has no samples")
    if not np.isfinite(wave).all():
        raise HTTPProblem(422, "the audio has non-finite samples (NaN or infinity)")
    return wave


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
               decoder_info: dict | None = None):
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
        return {"status": "ok", "model": model_name, "decoder": decoder_info or {},
                "sample_rate": transcriber.sample_rate, "limits": asdict(limits),
                "batches": asdict(batcher.stats)}

    @app.post("/v1/transcribe")
    async def transcribe(file: UploadFile = File(..., description="WAV, FLAC or OGG audio")):
        data = await file.read(limits.max_bytes + 1)
        wave = await run_in_threadpool(read_upload_audio, data, transcriber.sample_rate, limits)
        result = await batcher.submit(wave)
        return result.to_dict()

    # outermost, so that its JSON answer is not replaced by the body limiter's plain-text one
    return ContentLengthLimit(app, limits.max_bytes + BODY_OVERHEAD, limits.max_bytes)
