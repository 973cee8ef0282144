"""How far a training run's time budget will get on this machine, said after the first epoch:
measured in updates against what a recipe needed on the default corpus (updates, not seconds,
so the reference holds on any machine; only the time per update differs)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """What `recipe` needed on the default corpus: `updates` to reach val CER `cer`."""
    updates: int
    cer: float
    recipe: str


# The default recipe reached val CER 0.10 at 4,860 updates on the default corpus (`asrlab synth`:
# three engines, 3,333 training utterances; bench/time_to_cer.py, seed 0: epoch 18 of 270
# updates; docs/benchmarks.md). (The espeak-ng-only corpus of 1,111 needed ~1,650.)
SCRATCH_REFERENCE = Reference(4860, 0.10, "the default recipe")
# The pretrained recipe (--encoder whisper-tiny.en, frozen, last layer) on the four-engine
# default corpus: val CER <= 0.05 at epoch 13 of 267 updates in both seeds of
# bench/time_to_cer.py (docs/benchmarks.md, "Pretrained encoders").
PRETRAINED_REFERENCE = Reference(3471, 0.05, "a frozen Whisper tiny.en (--encoder)")


def budget_forecast(budget_s: float, elapsed_s: float, updates: int, updates_per_epoch: int,
                    before_s: float = 0.0, reference: Reference = SCRATCH_REFERENCE) -> str:
    """After the first epoch (`elapsed_s` of training, `before_s` spent before it within the
    budget: a pretrained encoder's states): how far the time budget will get on this machine."""
    rate = updates / max(elapsed_s, 1e-9)  # updates per second, validation included
    left = max(0.0, budget_s - before_s - elapsed_s)
    total = updates + rate * left
    text = (f"this machine: {elapsed_s:.0f} s for the first epoch ({updates} updates)"
            + (f" after {before_s:.0f} s computing the encoder's states" if before_s >= 1 else "")
            + f"; the {budget_s / 60:g}-minute budget will reach about {total:,.0f} updates "
            f"({total / max(1, updates_per_epoch):.0f} epochs)")
    ref = reference.updates
    at = (before_s + ref / rate) / 60  # minutes into the budget
    recipe = reference.recipe
    if total >= ref:
        return (f"{text}. {recipe[0].upper()}{recipe[1:]} reached val CER {reference.cer:g} "
                f"after about {ref:,} updates on the default corpus: minute {at:.0f} here.")
    return (f"{text}, fewer than the ~{ref:,} {recipe} needed to reach val CER "
            f"{reference.cer:g} on the default corpus: expect a higher CER, or give "
            f"--max-minutes {math.ceil(at)}.")
