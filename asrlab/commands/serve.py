"""`asrlab serve`: HTTP server (FastAPI + uvicorn) with a web page, for one model.

    asrlab serve --model runs/default [--lm lm.arpa --lm-weight A --word-score B]
    asrlab serve --model model.onnx --host 127.0.0.1 --port 8000      # torch-free
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asrlab.decode import add_decoder_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path,
                   help="run folder, checkpoint, or exported model.onnx (then torch is not loaded)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this "
                                                       "machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-mb", type=float, default=20.0, help="upload size limit in MB (413)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="audio duration limit (422)")
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

    tr = Transcriber.from_args(args)
    limits = ServerLimits(max_bytes=int(args.max_mb * 1024 * 1024), max_seconds=args.max_seconds,
                          max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
                          workers=args.workers)
    app = create_app(tr, limits, model_name=Path(args.model).name,
                     decoder_info=describe_decoder(tr.decoder))
    print(f"asrlab serve: http://{args.host}:{args.port}/  (model {args.model}, "
          f"decoder {describe_decoder(tr.decoder)['kind']})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1)
    return 0
