"""`asrlab serve`: HTTP server (FastAPI + uvicorn) with a web page, for one model.

    asrlab serve --model runs/default [--lm lm.arpa --lm-weight A --word-score B]
    asrlab serve --model model.onnx --host 127.0.0.1 --port 8000      # torch-free
    asrlab serve --model model.onnx --host 0.0.0.0 --api-key-file key.txt --allowed-host asr.lan
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from asrlab.commands.decoding import add_decoder_arguments, decoder_options

API_KEY_ENV = "ASRLAB_API_KEY"
# The flags that are ServerLimits fields as they are: (flag, field, type, default, help).
LIMIT_FLAGS = (
    ("--max-seconds", "max_seconds", float, 600.0,
     "audio duration limit (422); audio over 30 s is recognized in windows, so this bounds only "
     "the decoded audio held per request (4 bytes/sample)"),
    ("--max-uploads", "max_uploads", int, 16,
     "requests in flight at once (receiving, decoding, queued); more get 503 with Retry-After"),
    ("--max-uploads-per-client", "max_uploads_per_client", int, None,
     "of those, from one client (peer address; behind a proxy every client has the proxy's); "
     "more get 429 with Retry-After (default 4, or --max-uploads when that is lower)"),
    ("--max-decode-rate", "max_decode_rate", int, 96_000,
     "channels x sample rate decoded per second of audio (CPU per upload; memory does not "
     "depend on it); default 96000: stereo 48 kHz, mono 96 kHz. 384000 accepts 8 channels at "
     "48 kHz"),
    ("--body-timeout", "body_timeout_s", float, 30.0,
     "seconds a client has to send the whole upload (408 after)"),
    ("--max-batch", "max_batch", int, 8,
     "most concurrent requests run as one batch (1: no batching)"),
    ("--batch-wait-ms", "batch_wait_ms", float, 0.0,
     "how long the first request of a batch waits for company (default 0: batch only what is "
     "already queued)"),
    ("--workers", "workers", int, 1, "batches run at the same time"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path,
                   help="run folder, checkpoint, or exported model.onnx (then torch is not loaded)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this "
                                                       "machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-mb", type=float, default=20.0, help="upload size limit in MB (413)")
    for flag, _, kind, default, text in LIMIT_FLAGS:
        p.add_argument(flag, type=kind, default=default, help=text)
    p.add_argument("--api-key-file", type=Path, default=None,
                   help="require the key in this file (first line; header `Authorization: "
                        "Bearer KEY` or `X-API-Key`) on /v1/, /healthz and /docs; or set "
                        f"${API_KEY_ENV}; default: no key")
    p.add_argument("--api-key", default=None,
                   help="the key itself; visible to every user of this machine in `ps`, so "
                        f"prefer --api-key-file or ${API_KEY_ENV} (a warning says so)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a name clients use for this server in URLs (Host header); repeatable; "
                        "localhost and loopback addresses are always allowed, and so is the "
                        "--host address when it is not 0.0.0.0/::; any other Host gets 400 "
                        "(DNS-rebinding pages)")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="let pages of this origin (e.g. https://app.example.com) call the API "
                        "from the browser; repeatable; default: none (other sites' requests get "
                        "403)")
    p.add_argument("--docs", action="store_true",
                   help="serve /docs (Swagger UI: the browser loads it from a CDN) and "
                        "/openapi.json, behind the API key when one is set; default: 404")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per model call (torch / onnxruntime intra-op)")
    p.add_argument("--log-level", default="info")
    add_decoder_arguments(p)


def run(args) -> int:
    import uvicorn

    from asrlab.decode import describe_decoder
    from asrlab.runtime import pin_mmap_threshold
    from asrlab.serve import Access, ServerLimits, create_app, measure_recognition
    from asrlab.transcribe import Transcriber

    given = {field: getattr(args, flag[2:].replace("-", "_")) for flag, field, *_ in LIMIT_FLAGS}
    limits = ServerLimits(max_bytes=int(args.max_mb * 1024 * 1024),
                          **{**given, "max_uploads_per_client": per_client(args)}).validate()
    hosts = tuple(args.allowed_host) + (() if is_wildcard(args.host) else (args.host,))
    access = Access(allowed_hosts=hosts, cors_origins=tuple(args.cors), docs=args.docs).validate()
    api_key, key_warnings = api_key_from(args)
    tr = Transcriber.load(args.model, decoder_options(args), args.threads,
                          limits.audio)
    recognition = measure_recognition(tr, limits) or 0  # also the warm-up
    bound = limits.memory_bound(tr.sample_rate, recognition)
    available = physical_memory()
    if available and bound > available // 2:
        raise ValueError(f"the limits allow {bound / 2**30:.1f} GB of uploads, decoded audio "
                         f"and recognition in flight (--max-uploads {limits.max_uploads} x "
                         f"(--max-mb {args.max_mb:g} + --max-seconds {limits.max_seconds:g} s "
                         f"of audio) + --workers {limits.workers} x a batch of --max-batch "
                         f"{limits.max_batch}), more than half of this machine's "
                         f"{available / 2**30:.1f} GB; lower --max-uploads, --max-seconds or "
                         f"--max-mb")
    pin_mmap_threshold()  # decode buffers go back to the system when freed (asrlab.runtime)
    app = create_app(tr, limits, model_name=Path(args.model).name,
                     decoder_info=describe_decoder(tr.decoder), api_key=api_key, access=access)
    for line in key_warnings + exposure_warnings(args.host, args.port, bool(api_key)):
        print(f"asrlab serve: warning: {line}", file=sys.stderr, flush=True)
    print(f"asrlab serve: http://{args.host}:{args.port}/  (model {args.model}, "
          f"decoder {describe_decoder(tr.decoder)['kind']}; at most {limits.max_uploads} uploads "
          f"in flight, {limits.max_uploads_per_client} per client; memory bound "
          f"{bound / 2**20:.0f} MB = {limits.max_uploads} uploads x "
          f"{limits.upload_bytes(tr.sample_rate) / 2**20:.1f} MB + {limits.workers} x "
          f"{recognition / 2**20:.0f} MB recognition (measured))", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1)
    return 0


def per_client(args) -> int:
    """--max-uploads-per-client, by default 4 (a quarter of the default --max-uploads), never
    more than a lower --max-uploads the user gave."""
    from asrlab.serve import ServerLimits  # FastAPI: loaded by `serve` only

    if args.max_uploads_per_client is not None:
        return args.max_uploads_per_client
    return min(ServerLimits.max_uploads_per_client, args.max_uploads)


def api_key_from(args) -> tuple[str | None, list[str]]:
    """(the key or None, warnings): --api-key-file, else --api-key, else $ASRLAB_API_KEY."""
    given = [name for name, v in (("--api-key-file", args.api_key_file),
                                  ("--api-key", args.api_key)) if v is not None]
    if len(given) > 1:
        raise ValueError("give the API key once: --api-key-file or --api-key, not both")
    if args.api_key_file is not None:
        try:
            key = args.api_key_file.read_text(encoding="utf-8").splitlines()[0].strip() \
                if args.api_key_file.stat().st_size else ""
        except (OSError, UnicodeDecodeError, IndexError) as e:
            raise ValueError(f"--api-key-file {args.api_key_file}: cannot be read ({e})") \
                from None
        if not key:
            raise ValueError(f"--api-key-file {args.api_key_file}: the first line is empty; "
                             f"write the key on it")
        return key, []
    if args.api_key is not None:
        if not args.api_key.strip():
            raise ValueError("--api-key is empty; give a key, or leave the flag out")
        return args.api_key, [f"the API key was given on the command line, where every user of "
                              f"this machine can read it (ps, /proc); use --api-key-file FILE or "
                              f"the environment variable {API_KEY_ENV} instead"]
    key = os.environ.get(API_KEY_ENV, "").strip()
    return key or None, []


def is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "[::]", "")


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
    where = "every network interface" if is_wildcard(host) else host
    names = (["clients must name it by an allowed host (localhost, loopback addresses and "
              "--allowed-host NAME; others get 400): add --allowed-host for each name they "
              "use"] if is_wildcard(host) else [])
    if not has_key:
        return [f"listening on {where} (port {port}) and the server has no authentication: "
                f"anyone who can reach it can send audio to transcribe. Pass --api-key-file "
                f"FILE (or set {API_KEY_ENV}), or bind --host 127.0.0.1 behind a proxy that "
                f"authenticates"] + names
    return [f"listening on {where} (port {port}) with an API key, over plain HTTP: the key "
            f"and the audio travel unencrypted; put a TLS proxy in front for untrusted "
            f"networks"] + names


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0
