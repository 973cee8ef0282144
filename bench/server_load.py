"""Server throughput and latency at 1, 4 and 16 concurrent clients (loopback only).

    python bench/server_load.py --model model.onnx --data data/test.jsonl \
        [--requests 64] [--max-batch 1 8] [--threads 1] [-- extra serve flags, e.g. --lm lm.arpa]

For each --max-batch value, starts `asrlab serve` on a free 127.0.0.1 port, warms it up, then for
each concurrency level sends a bounded number of requests (test utterances, round robin) from
that many concurrent clients and reports throughput (requests/s and audio seconds per second)
and p50/p99 latency. --max-batch 1 turns micro-batching off, so the two runs show what it buys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class Result:
    max_batch: int
    clients: int
    requests: int
    errors: int
    wall_s: float
    audio_s: float
    latencies: list[float]
    mean_batch: float

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")

    def markdown(self) -> str:
        return (f"| {self.max_batch} | {self.clients} | {self.requests} | {self.errors} | "
                f"{self.requests / self.wall_s:.1f} | {self.audio_s / self.wall_s:.1f} | "
                f"{1000 * self.pct(0.5):.0f} | {1000 * self.pct(0.99):.0f} | "
                f"{self.mean_batch:.1f} |")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, max_batch: int, threads: int, extra: list[str]):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "asrlab", "serve", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--max-batch", str(max_batch), "--threads", str(threads),
           "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start within 120 s")


async def load(url: str, payloads: list[tuple[bytes, float]], clients: int, total: int) -> tuple:
    import httpx

    latencies, errors, audio = [], 0, 0.0
    counter = iter(range(total))

    async def client(http):
        nonlocal errors, audio
        for i in counter:
            data, seconds = payloads[i % len(payloads)]
            t0 = time.perf_counter()
            r = await http.post(url, files={"file": ("a.wav", data)})
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors += 1
            audio += seconds

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return latencies, errors, audio, wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="run folder or model.onnx")
    p.add_argument("--data", required=True, type=Path, help="manifest of request audio")
    p.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--max-batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--batch-wait-ms", type=float, default=None, help="passed to the server")
    p.add_argument("--threads", type=int, default=1, help="server's model threads")
    p.add_argument("--json", type=Path)
    args, extra = p.parse_known_args()
    extra = [a for a in extra if a != "--"]

    import httpx

    from asrlab.data.manifest import load_manifest

    utts = load_manifest(args.data)[:32]
    payloads = [(u.audio_filepath.read_bytes(), u.duration) for u in utts]
    results: list[Result] = []
    for mb in args.max_batch:
        port = free_port()
        wait = [] if args.batch_wait_ms is None else ["--batch-wait-ms", str(args.batch_wait_ms)]
        proc = start_server(args.model, port, mb, args.threads, extra + wait)
        url = f"http://127.0.0.1:{port}/v1/transcribe"
        try:
            asyncio.run(load(url, payloads, 2, 4))  # warm-up
            for c in args.clients:
                before = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["batches"]
                lat, errors, audio, wall = asyncio.run(load(url, payloads, c, args.requests))
                after = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["batches"]
                mean_batch = ((after["requests"] - before["requests"])
                              / max(1, after["batches"] - before["batches"]))
                results.append(Result(mb, c, len(lat), errors, wall, audio, lat, mean_batch))
        finally:
            proc.terminate()
            proc.wait(30)

    print(f"model {args.model}; {args.requests} requests per row from {args.data} "
          f"(mean {sum(d for _, d in payloads) / len(payloads):.2f} s of audio each); server "
          f"threads {args.threads}; extra flags: {' '.join(extra) or '-'}\n")
    print("| max batch | clients | requests | errors | req/s | audio s/s | p50 ms | p99 ms | "
          "mean batch |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(r.markdown())
    if args.json:
        args.json.write_text(json.dumps([{**{k: v for k, v in r.__dict__.items()
                                             if k != "latencies"},
                                          "p50": r.pct(0.5), "p99": r.pct(0.99)}
                                         for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
