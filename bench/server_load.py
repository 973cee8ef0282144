"""Server throughput and latency at 1, 4 and 16 concurrent clients (loopback only).

    python bench/server_load.py --model model.onnx --data data/test.jsonl \
        [--requests 64] [--max-batch 1 8] [--threads 1] [-- extra serve flags, e.g. --lm lm.arpa]

For each --max-batch value, starts `asrlab serve` on a free 127.0.0.1 port, warms it up, then for
each concurrency level sends a bounded number of requests (test utterances, round robin) from
that many concurrent clients and reports throughput (requests/s and audio seconds per second)
and p50/p99 latency. --max-batch 1 turns micro-batching off, so the two runs show what it buys.
Each client connects from a loopback address of its own (127.0.1.k): the server counts uploads
in flight per peer address (--max-uploads-per-client), as it would for clients on a network.

    python bench/server_load.py --model model.onnx --data data/test.jsonl --hostile \
        [--phases attack stall memory]

--hostile runs three more phases, each with a server of its own; all loops are bounded and all
traffic goes to 127.0.0.0/8.

- attack: 16 well-behaved clients (as above) while, at the same time, decompression bombs
  (8 channels at 655,350 Hz, 119 s of silence in the header: the issue's 683 kB file), held-open
  uploads (headers and 1 kB of a 200 kB body, then nothing; from one address) and slow uploads
  (200 kB at 10 kB/s) arrive. Reports the well-behaved clients' errors (should be 0), how each
  hostile kind was answered, and the server's peak memory (VmHWM).
- stall: one client (127.0.0.2, in a process of its own) keeps 16 uploads open that never finish
  sending, reopening each as soon as it is answered, while 8 other clients send requests. Rounds with and without the
  staller alternate in the same run (so machine load hits both alike): the other clients' p50/p99
  latency and errors in each, and how the staller was answered (its per-client limit: 429).
- memory: 16 uploads at once, from 16 clients, of a 600 s 96 kHz mono FLAC, then of a 600 s
  8-channel 48 kHz FLAC (the server started with --max-decode-rate 384000, else that file is
  refused from its header: shown too). For each: the server's RSS before, its peak during
  (VmHWM, reset before each file where /proc/PID/clear_refs allows), RSS after, and the memory
  bound it printed at start-up.
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
    """`asrlab serve` in a subprocess; returns it once /healthz answers. Its start-up line
    (with the memory bound) is kept as `proc.banner`."""
    import tempfile

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "asrlab", "serve", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--max-batch", str(max_batch), "--threads", str(threads),
           "--log-level", "warning", *extra]
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited: {log.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                log.seek(0)
                proc.banner = next((line.strip() for line in log if "memory bound" in line), "")
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start within 300 s")


def client_address(k: int, net: int = 1) -> str:
    """Loopback source address of client k (127.0.NET.k+1): a peer address of its own."""
    return f"127.0.{net + k // 250}.{1 + k % 250}"


async def load(url: str, payloads: list[tuple[bytes, float]], clients: int, total: int,
               net: int = 1) -> tuple:
    """`total` requests from `clients` concurrent clients, each from its own loopback address,
    one request in flight each."""
    import httpx

    latencies, errors, audio = [], 0, 0.0
    counter = iter(range(total))

    async def client(k: int):
        nonlocal errors, audio
        transport = httpx.AsyncHTTPTransport(local_address=client_address(k, net))
        async with httpx.AsyncClient(timeout=300, transport=transport) as http:
            for i in counter:
                data, seconds = payloads[i % len(payloads)]
                t0 = time.perf_counter()
                r = await http.post(url, files={"file": ("a.wav", data)})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1
                audio += seconds

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    return latencies, errors, audio, wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="run folder or model.onnx")
    p.add_argument("--data", required=True, type=Path, help="manifest of request audio")
    p.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--max-batch", type=int, nargs="*", default=[1, 8],
                   help="one throughput table per value; none: the hostile phases only")
    p.add_argument("--batch-wait-ms", type=float, default=None, help="passed to the server")
    p.add_argument("--threads", type=int, default=1, help="server's model threads")
    p.add_argument("--json", type=Path)
    p.add_argument("--hostile", action="store_true",
                   help="add the hostile phases (see the doc)")
    p.add_argument("--phases", nargs="+", default=["attack", "stall", "memory"],
                   choices=["attack", "stall", "memory"], help="which hostile phases")
    p.add_argument("--stall-rounds", type=int, default=4,
                   help="stall phase: rounds with the staller (and as many without)")
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

    if args.hostile:
        if "attack" in args.phases:
            hostile_phase(args, payloads, extra)
        if "stall" in args.phases:
            stall_phase(args, payloads, extra)
        if "memory" in args.phases:
            memory_phase(args, payloads, extra)

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


# ---- hostile clients ------------------------------------------------------------------------

def bomb_bytes() -> bytes:
    """The issue's bomb as its header tells it: 8 channels, 655,350 Hz, 119 s of silence (one
    real second encoded, the FLAC header's total rewritten to 119 s)."""
    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros((655350, 8), np.int16), 655350, format="FLAC", subtype="PCM_16")
    d = bytearray(buf.getvalue())
    total = 119 * 655350
    d[21] = (d[21] & 0xF0) | ((total >> 32) & 0x0F)
    d[22:26] = (total & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(d)


async def raw_upload(port: int, declared: int, send_bytes: int, rate: float | None,
                     source: str = "127.0.0.1") -> int:
    """Send headers and `send_bytes` of a `declared`-byte body (at `rate` bytes/s, or at once)
    from the loopback address `source`, then wait for the answer; returns its status (0:
    connection closed without one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(b"POST /v1/transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                 b"multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n" % declared)
    answer = asyncio.ensure_future(reader.readline())  # read while sending: a 408 may come first
    try:
        sent = 0
        while sent < send_bytes and not answer.done():
            n = min(1000, send_bytes - sent) if rate else send_bytes - sent
            writer.write(b"x" * n)
            await writer.drain()
            sent += n
            if rate:
                await asyncio.sleep(n / rate)
    except ConnectionError:
        pass
    try:
        line = await asyncio.wait_for(answer, 120)
        return int(line.split()[1]) if line else 0
    except (ConnectionError, asyncio.TimeoutError, IndexError, ValueError):
        return 0
    finally:
        writer.close()


async def hostile_load(port: int, payloads, requests: int) -> dict:
    import httpx

    url = f"http://127.0.0.1:{port}/v1/transcribe"
    bomb = bomb_bytes()
    counts: dict[str, dict] = {"bomb": {}, "held": {}, "slow": {}}

    def count(kind: str, status: int) -> None:
        counts[kind][status] = counts[kind].get(status, 0) + 1

    async def bombs(http):
        for _ in range(10):  # bounded
            r = await http.post(url, files={"file": ("bomb.flac", bomb)})
            count("bomb", r.status_code)

    async def held():
        for _ in range(2):  # two rounds of 8 held-open uploads from one client
            for status in await asyncio.gather(*(raw_upload(port, 200_000, 1000, None,
                                                            "127.0.0.2") for _ in range(8))):
                count("held", status)

    async def slow():  # 4 slow clients
        for status in await asyncio.gather(*(raw_upload(port, 200_000, 200_000, 10_000,
                                                        f"127.0.0.{3 + k}") for k in range(4))):
            count("slow", status)

    async def good(hostile: asyncio.Future) -> tuple[list[float], int, float]:
        """16 well-behaved clients, rounds of `requests`, for as long as the attack lasts
        (at most 100 rounds)."""
        latencies, errors, t0 = [], 0, time.perf_counter()
        for _ in range(100):
            lat, err, _, _ = await load(url, payloads, 16, requests)
            latencies += lat
            errors += err
            if hostile.done():
                break
        return latencies, errors, time.perf_counter() - t0

    async with httpx.AsyncClient(timeout=300) as http:
        hostile = asyncio.ensure_future(asyncio.gather(bombs(http), bombs(http), held(), slow()))
        latencies, errors, wall = await good(hostile)
        await hostile
    return {"good_requests": len(latencies), "good_errors": errors, "good_wall_s": round(wall, 1),
            "good_p99_ms": round(1000 * sorted(latencies)[int(0.99 * (len(latencies) - 1))]),
            **{k: {str(s): n for s, n in sorted(v.items())} for k, v in counts.items()}}


def proc_mb(pid: int, key: str = "VmHWM") -> float:
    """VmHWM (peak resident) or VmRSS of process `pid`, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    return proc_mb(pid, "VmHWM")


def reset_peak(pid: int) -> bool:
    """Reset process `pid`'s VmHWM to its current RSS (Linux, same user or root)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def hostile_phase(args, payloads, extra: list[str]) -> None:
    port = free_port()
    flags = ["--max-uploads", "32", "--body-timeout", "5"]
    proc = start_server(args.model, port, 8, args.threads, extra + flags)
    try:
        asyncio.run(load(f"http://127.0.0.1:{port}/v1/transcribe", payloads, 2, 4))  # warm-up
        before = peak_rss_mb(proc.pid)
        result = asyncio.run(hostile_load(port, payloads, args.requests))
        result["server_peak_mb_before"], result["server_peak_mb_after"] = before, \
            peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"hostile phase (server {' '.join(flags)}, max batch 8): {json.dumps(result)}\n")
    if args.json:
        args.json.with_suffix(".hostile.json").write_text(json.dumps(result, indent=2))



# ---- one client stalls its slots ----------------------------------------------------------------

async def staller(port: int, stop: asyncio.Event, counts: dict, n: int = 16) -> None:
    """One client (127.0.0.2) keeping `n` uploads open that never finish: each is reopened as
    soon as it is answered (408 after the body timeout), or a second after a refusal (429, as
    Retry-After says), until `stop`."""
    async def one():
        while not stop.is_set():
            status = await raw_upload(port, 200_000, 1000, None, "127.0.0.2")
            counts[status] = counts.get(status, 0) + 1
            if status != 408:
                await asyncio.sleep(1.0)  # refused at once (429): as Retry-After says

    await asyncio.gather(*(one() for _ in range(n)))


def staller_process(port: int, stop, counts) -> None:
    """The staller in a process of its own (a client elsewhere: it does not share the measuring
    clients' event loop); `stop` a multiprocessing Event, `counts` a managed dict."""
    async def main():
        done, local = asyncio.Event(), {}

        async def watch():
            while not stop.is_set():
                await asyncio.sleep(0.1)
            done.set()

        await asyncio.gather(watch(), staller(port, done, local))
        counts.update(local)

    asyncio.run(main())


async def stall_rounds(port: int, payloads, clients: int, requests: int, rounds: int) -> dict:
    import multiprocessing

    url = f"http://127.0.0.1:{port}/v1/transcribe"
    out = {"plain": {"latencies": [], "errors": 0}, "stalled": {"latencies": [], "errors": 0}}
    counts: dict[int, int] = {}
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        for _ in range(rounds):
            for kind in ("plain", "stalled"):
                proc = stop = shared = None
                if kind == "stalled":
                    stop, shared = ctx.Event(), manager.dict()
                    proc = ctx.Process(target=staller_process, args=(port, stop, shared))
                    proc.start()
                    await asyncio.sleep(1.0)  # its uploads are in flight before the others
                lat, err, _, _ = await load(url, payloads, clients, requests, net=3)
                out[kind]["latencies"] += lat
                out[kind]["errors"] += err
                if proc is not None:
                    stop.set()
                    await asyncio.get_running_loop().run_in_executor(None, proc.join, 60)
                    for status, n in dict(shared).items():
                        counts[status] = counts.get(status, 0) + n
    result = {}
    for kind, r in out.items():
        xs = sorted(r["latencies"])
        result[kind] = {"requests": len(xs), "errors": r["errors"],
                        "p50_ms": round(1000 * xs[len(xs) // 2]),
                        "p99_ms": round(1000 * xs[min(len(xs) - 1, int(0.99 * len(xs)))])}
    result["staller_answers"] = {str(k): v for k, v in sorted(counts.items())}
    return result


def stall_phase(args, payloads, extra: list[str]) -> None:
    port = free_port()
    flags = ["--body-timeout", "5"]  # defaults otherwise: 16 uploads, 4 per client
    proc = start_server(args.model, port, 8, args.threads, extra + flags)
    try:
        asyncio.run(load(f"http://127.0.0.1:{port}/v1/transcribe", payloads, 2, 4))  # warm-up
        result = asyncio.run(stall_rounds(port, payloads, 8, args.requests, args.stall_rounds))
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"stall phase (server {' '.join(flags)}, max batch 8; 8 clients, {args.stall_rounds} "
          f"rounds of {args.requests} requests without and with the staller, alternating): "
          f"{json.dumps(result)}\n")
    if args.json:
        args.json.with_suffix(".stall.json").write_text(json.dumps(result, indent=2))


# ---- memory under long uploads at high rates ---------------------------------------------------

def long_flac(rate: int, channels: int, seconds: int = 600) -> bytes:
    """`seconds` of silence as FLAC (the issue's file: 180 kB at 96 kHz; any content decodes
    to the same number of samples)."""
    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, channels, format="FLAC", subtype="PCM_16") as f:
        for _ in range(seconds // 10):
            f.write(np.zeros((rate * 10, channels), np.int16))
    return buf.getvalue()


async def concurrent_uploads(port: int, data: bytes, n: int) -> list[int]:
    import httpx

    async def one(k: int) -> int:
        transport = httpx.AsyncHTTPTransport(local_address=client_address(k, net=5))
        async with httpx.AsyncClient(timeout=1800, transport=transport) as http:
            r = await http.post(f"http://127.0.0.1:{port}/v1/transcribe",
                                files={"file": ("long.flac", data)})
            return r.status_code

    return await asyncio.gather(*(one(k) for k in range(n)))


def memory_phase(args, payloads, extra: list[str]) -> None:
    files = {"96 kHz mono": long_flac(96_000, 1), "8 x 48 kHz": long_flac(48_000, 8)}
    port = free_port()
    flags = ["--max-decode-rate", "384000"]  # accepts 8 channels x 48 kHz; defaults otherwise
    proc = start_server(args.model, port, 8, args.threads, extra + flags)
    rows = []
    try:
        url = f"http://127.0.0.1:{port}/v1/transcribe"
        asyncio.run(load(url, payloads, 2, 4))  # warm-up
        time.sleep(1)
        start = proc_mb(proc.pid, "VmRSS")
        for name, data in files.items():
            before = proc_mb(proc.pid, "VmRSS")
            reset = reset_peak(proc.pid)
            t0 = time.perf_counter()
            statuses = asyncio.run(concurrent_uploads(port, data, 16))
            wall = time.perf_counter() - t0
            time.sleep(2)
            rows.append({"file": name, "bytes": len(data), "statuses": sorted(set(statuses)),
                         "wall_s": round(wall, 1), "rss_before_mb": round(before),
                         "peak_mb": round(proc_mb(proc.pid, "VmHWM")), "peak_reset": reset,
                         "rss_after_mb": round(proc_mb(proc.pid, "VmRSS"))})
        banner = proc.banner
    finally:
        proc.terminate()
        proc.wait(30)
    # the 8-channel file on a server with the default decode rate: refused from its header
    port = free_port()
    proc = start_server(args.model, port, 8, args.threads, extra)
    try:
        (status,) = asyncio.run(concurrent_uploads(port, files["8 x 48 kHz"], 1))
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"memory phase (server {' '.join(flags)}; 16 uploads at once of 600 s; server RSS "
          f"{start:.0f} MB after warm-up; start-up line: {banner})")
    print("| file | FLAC bytes | answers | wall s | RSS before MB | peak MB | peak growth MB | "
          "RSS after MB | after - start MB |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['file']} | {r['bytes']:,} | {r['statuses']} | {r['wall_s']} | "
              f"{r['rss_before_mb']} | {r['peak_mb']} | {r['peak_mb'] - r['rss_before_mb']} | "
              f"{r['rss_after_mb']} | {r['rss_after_mb'] - start:.0f} |")
    print(f"\n8 x 48 kHz on a server with the default --max-decode-rate: {status}\n")
    if args.json:
        args.json.with_suffix(".memory.json").write_text(json.dumps(
            {"rows": rows, "start_mb": start, "banner": banner, "default_rate_status": status},
            indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
