"""Training-step time of the default model on the CPU: fp32, bf16 autocast, torch.compile.

    python bench/train_step.py --threads 1 --repeats 7
    python bench/train_step.py --threads 2 --variants fp32 bf16

One step = forward, CTC loss, backward, AdamW update, on a batch shaped like the default recipe's
(30 s of padded audio: 12 utterances of 250 frames, 80 mel bins, 30 labels each). The variants
are timed in turn, round after round, so a change in machine load hits each of them alike; the
figure is the median over rounds. `compile` pads each batch to a bucketed length (a multiple of
--bucket frames) so that torch.compile sees a handful of shapes rather than one per batch, and
the first call per shape (the compilation) is reported apart.

bf16 autocast is also checked for learning: the loss after --learn-steps updates on one fixed
batch, against fp32 from the same initial weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F

from asrlab.config import Config
from asrlab.models import build_model
from asrlab.runtime import physical_cores

CPU_FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_info() -> dict:
    model, flags = "?", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    return {"cpu": model, **{flag: flag in flags for flag in CPU_FLAGS}}


def make_batch(B: int, T: int, L: int, n_mels: int, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, T, n_mels, generator=g)
    lens = torch.randint(int(0.8 * T), T + 1, (B,), generator=g)
    lens[0] = T
    targets = torch.randint(1, vocab, (B, L), generator=g)
    return feats, lens, targets, torch.full((B,), L)


def step(model, opt, batch, bf16: bool) -> float:
    feats, lens, targets, tlens = batch
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        log_probs, out_lens = model(feats, lens)
    loss = F.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lens, tlens,
                      reduction="mean", zero_infinity=True)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss)


def padded(batch, bucket: int):
    feats, lens, targets, tlens = batch
    T = -(-feats.shape[1] // bucket) * bucket
    return (F.pad(feats, (0, 0, 0, T - feats.shape[1])), lens, targets, tlens)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7, help="timed rounds")
    p.add_argument("--variants", nargs="+", default=["fp32", "bf16", "compile"],
                   choices=["fp32", "bf16", "compile"])
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--frames", type=int, default=250)
    p.add_argument("--bucket", type=int, default=64, help="compile: pad T to a multiple")
    p.add_argument("--learn-steps", type=int, default=30)
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = Config()
    vocab = 32
    torch.manual_seed(0)
    base = build_model(cfg, vocab)
    models = {v: copy.deepcopy(base) for v in args.variants}
    opts = {v: torch.optim.AdamW(m.parameters(), lr=1e-3) for v, m in models.items()}
    runners = {v: models[v] for v in args.variants}
    if "compile" in runners:
        runners["compile"] = torch.compile(models["compile"], dynamic=False)
    # lengths vary batch to batch, as in training: T in [0.8, 1.0] x frames
    shapes = [int(args.frames * f) for f in (1.0, 0.93, 0.86, 0.8)]
    batches = [make_batch(args.batch, T, 30, cfg.features.n_mels, vocab, seed=i)
               for i, T in enumerate(shapes)]
    first_call: dict[str, float] = {}
    times: dict[str, list[float]] = {v: [] for v in args.variants}
    for v in args.variants:  # warm-up: every shape once (compilation happens here)
        t0 = time.perf_counter()
        for b in batches:
            step(runners[v], opts[v], padded(b, args.bucket) if v == "compile" else b, v == "bf16")
        first_call[v] = round(time.perf_counter() - t0, 2)
    for _ in range(args.repeats):
        for v in args.variants:
            t0 = time.perf_counter()
            for b in batches:
                step(runners[v], opts[v], padded(b, args.bucket) if v == "compile" else b,
                     v == "bf16")
            times[v].append((time.perf_counter() - t0) / len(batches))
    result = {**cpu_info(), "threads": args.threads, "physical_cores": physical_cores(),
              "torch": torch.__version__, "batch": [args.batch, args.frames],
              "warmup_s": first_call,
              "median_step_s": {v: round(statistics.median(t), 4) for v, t in times.items()}}
    ref = result["median_step_s"].get("fp32")
    if ref:
        result["speedup_vs_fp32"] = {v: round(ref / t, 2)
                                     for v, t in result["median_step_s"].items()}
    if "bf16" in args.variants:  # does bf16 still learn? same start, same batch
        losses = {}
        for v in ("fp32", "bf16"):
            torch.manual_seed(1)
            m = copy.deepcopy(base)
            opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
            b = batches[0]
            first = step(m, opt, b, v == "bf16")
            for _ in range(args.learn_steps - 1):
                last = step(m, opt, b, v == "bf16")
            losses[v] = [round(first, 3), round(last, 3)]
        result["loss_first_last"] = losses
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
