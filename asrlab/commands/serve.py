"""`asrlab serve`: HTTP server (FastAPI + uvicorn) with a web page, for one model.

    asrlab serve --model runs/default [--lm lm.arpa --lm-weight A --word-score B]
    asrlab serve --model model.onnx --host 127.0.0.1 --port 8000      # torch-free
    ASRLAB_API_KEY=... asrlab serve --model model.onnx --host 0.0.0.0  # exposed: require a key
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from asrlab.commands.decoding import add_decoder_arguments, decoder_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path,
                   help="run folder, checkpoint, or exported model.onnx (then torch is not loaded)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this "
                                                       "machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-mb", type=float, default=20.0, help="upload size limit in MB (413)")
    p.add_argument("--max-seconds", type=float, default=600.0,
                   help="audio duration limit (422); audio over 30 s is recognized in windows, so "
                        "this bounds only the decoded audio held per request (4 bytes/sample)")
    p.add_argument("--max-uploads", type=int, default=16,
                   help="requests in flight at once (receiving, decoding, queued); more get 503 "
                        "with Retry-After")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds a client has to send the whole upload (408 after)")
    p.add_argument("--api-key", default=os.environ.get("ASRLAB_API_KEY"),
                   help="require this key (header `Authorization: Bearer KEY` or `X-API-Key`) "
                        "on /v1/ and /healthz; default: $ASRLAB_API_KEY, else no key")
    p.add_argument("--max-batch", type=int, default=8,
                   help="most concurrent requests run as one batch (1: no batching)")
    p.add_argument("--batch-wait-ms", type=float, default=0.0,
                   help="how long the first request of a batch waits for company (default 0: "
                        "batch only what is already queued)")
    p.add_argument("--workers", type=int, default=1, help="batches run at the same time")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per model call (torch / onnxruntime intra-op)")
    p.add_argument("--log-level", default="info")
    add_decoder_arguments(p)


def run(args) -> int:
    import uvicorn

    from asrlab.decode import describe_decoder
    from asrlab.serve import ServerLimits, create_app
    from asrlab.transcribe import Transcriber

    limits = ServerLimits(max_bytes=int(args.max_mb * 1024 * 1024), max_seconds=args.max_seconds,
                          max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
                          workers=args.workers, max_uploads=args.max_uploads,
                          body_timeout_s=args.body_timeout).validate()
    tr = Transcriber.load(args.model, decoder_options(args), args.threads,
                          limits.audio)
    bound = limits.memory_bound(tr.sample_rate)
    available = physical_memory()
    if available and bound > available // 2:
        raise ValueError(f"the limits allow {bound / 2**30:.1f} GB of uploads and decoded audio "
                         f"in flight (--max-uploads {limits.max_uploads} x (--max-mb "
                         f"{args.max_mb:g} + --max-seconds {limits.max_seconds:g} s of audio)), "
                         f"more than half of this machine's {available / 2**30:.1f} GB; lower "
                         f"--max-uploads, --max-seconds or --max-mb")
    app = create_app(tr, limits, model_name=Path(args.model).name,
                     decoder_info=describe_decoder(tr.decoder), api_key=args.api_key or None)
    for line in exposure_warnings(args.host, args.port, bool(args.api_key)):
        print(f"asrlab serve: warning: {line}", file=sys.stderr, flush=True)
    print(f"asrlab serve: http://{args.host}:{args.port}/  (model {args.model}, "
          f"decoder {describe_decoder(tr.decoder)['kind']}; at most {limits.max_uploads} uploads "
          f"in flight, {bound / 2**20:.0f} MB)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1)
    return 0


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it resolves to whatever it resolves to
        return False


def exposure_warnings(host: str, port: int, has_key: bool) -> list[str]:
    """What to tell whoever binds beyond this machine."""
    if is_loopback(host):
        return []
    where = "every network interface" if host in ("0.0.0.0", "::", "[::]", "") else host
    if not has_key:
        return [f"listening on {where} (port {port}) and the server has no authentication: "
                f"anyone who can reach it can send audio to transcribe. Pass --api-key KEY (or "
                f"set ASRLAB_API_KEY), or bind --host 127.0.0.1 behind a proxy that "
                f"authenticates"]
    return [f"listening on {where} (port {port}) with an API key, over plain HTTP: the key "
            f"and the audio travel unencrypted; put a TLS proxy in front for untrusted networks"]


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0
