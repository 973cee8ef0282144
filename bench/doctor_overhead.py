"""How much the CTC doctor costs per batch, next to the CTC loss itself.

    python bench/doctor_overhead.py                 # B=16, T=400, V=32, 1 thread
    python bench/doctor_overhead.py --B 32 --T 800 --V 256 --json

Times (median of torch.utils.benchmark's adaptive runs, one CPU thread unless --threads):
ctc_loss forward, ctc_loss forward+backward, `check_batch` (the one-off wiring check),
`CTCDoctor.observe` (every update: emission statistics plus the loss bookkeeping) and the
TrainingMonitor's per-step cost (losses every step, emission statistics every 25th step).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asrlab.doctor import CTCDoctor, check_batch  # noqa: E402
from asrlab.doctor.rules import HealthTracker  # noqa: E402
from asrlab.doctor.stats import EmissionStats  # noqa: E402


def inputs(B: int, T: int, V: int, S: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, B, V, generator=g, requires_grad=True)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    lengths[0] = T
    tlens = torch.randint(S // 2, S + 1, (B,), generator=g)
    targets = torch.randint(1, V, (B, S), generator=g)
    return logits, lengths, targets, tlens


def measure(stmt: str, env: dict, threads: int) -> float:
    """Median seconds per call."""
    return Timer(stmt, globals=env, num_threads=threads).adaptive_autorange(min_run_time=1.0).median


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--B", type=int, default=16)
    p.add_argument("--T", type=int, default=400)
    p.add_argument("--V", type=int, default=32)
    p.add_argument("--S", type=int, default=80, help="padded target length")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logits, lengths, targets, tlens = inputs(args.B, args.T, args.V, args.S)
    lp = logits.log_softmax(-1)
    lpd = lp.detach()
    doctor = CTCDoctor(every=25)
    tracker = HealthTracker()
    losses = F.ctc_loss(lpd, targets, lengths, tlens, reduction="none")
    ids = [f"u{i}" for i in range(args.B)]
    env = dict(F=F, lp=lp, lpd=lpd, logits=logits, lengths=lengths, targets=targets, tlens=tlens,
               check_batch=check_batch, doctor=doctor, tracker=tracker, losses=losses, ids=ids,
               EmissionStats=EmissionStats, btc=lpd.transpose(0, 1))
    rows = {
        "ctc_loss forward": measure("F.ctc_loss(lpd, targets, lengths, tlens, reduction='none')", env, args.threads),
        "ctc_loss forward+backward": measure(
            "logits.grad = None; F.ctc_loss(logits.log_softmax(-1), targets, lengths, tlens).backward()",
            env, args.threads),
        "check_batch": measure("check_batch(lpd, lengths, targets, tlens)", env, args.threads),
        "CTCDoctor.observe": measure("doctor.observe(lpd, lengths, losses=losses, ids=ids)", env, args.threads),
        "monitor: losses + judgement (every step)": measure(
            "tracker.observe_losses(0, losses, ids); tracker.new_findings()", env, args.threads),
        "monitor: emission stats (every 25th)": measure("s = EmissionStats(); s.add(btc, lengths)", env, args.threads),
    }
    fb = rows["ctc_loss forward+backward"]
    monitor = rows["monitor: losses + judgement (every step)"] + \
        rows["monitor: emission stats (every 25th)"] / 25
    rows["monitor per step (amortized)"] = monitor
    shape = f"B={args.B} T={args.T} V={args.V} S={args.S}, {args.threads} thread(s), torch {torch.__version__}"
    if args.json:
        print(json.dumps({"shape": shape, "seconds": rows,
                          "relative_to_ctc_fwd_bwd": {k: v / fb for k, v in rows.items()}}, indent=2))
        return 0
    print(f"doctor overhead per batch ({shape})\n")
    print("| operation | ms per batch | vs ctc_loss fwd+bwd |\n|---|---:|---:|")
    for k, v in rows.items():
        print(f"| {k} | {v * 1e3:.3f} | {v / fb:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
