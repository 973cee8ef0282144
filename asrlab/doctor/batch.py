"""The doctor for anyone's training loop: `CTCDoctor`.

    doctor = CTCDoctor(blank=0)
    for step, batch in enumerate(loader):
        log_probs = model(...)                                  # (T, N, C), as ctc_loss takes
        if step == 0:
            for f in doctor.check_batch(log_probs, input_lengths, targets, target_lengths):
                print(f)                                        # wiring mistakes, before training
        loss = F.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none")
        for f in doctor.observe(log_probs, input_lengths, losses=loss):  # new findings only
            print(f)                                        # blank phase, divergence, inf loss
    doctor.findings(final=True)                             # the state at the end

`check_batch` takes its arguments exactly as `torch.nn.functional.ctc_loss` does and finds the
mistakes that make CTC train on garbage without an error: LAYOUT_MISMATCH, NOT_LOG_PROBS,
BLANK_IN_TARGETS, BAD_INPUT_LENGTHS, INFEASIBLE_LENGTH, EMPTY_TRANSCRIPT (zero-length targets,
which ctc_loss accepts and then rewards blank on every frame) and NaN outputs as DIVERGENCE.
`observe` / `findings` run the same `HealthTracker` as asrlab's own TrainingMonitor.
"""

from __future__ import annotations

from typing import Sequence

import torch

from asrlab.ctc import frames_needed_rows, time_mask
from asrlab.doctor.findings import Finding
from asrlab.doctor.rules import HealthTracker, Observation, RunContext, Thresholds, nonfinite_cause
from asrlab.doctor.stats import EmissionStats

LOGSUMEXP_TOL = {torch.float32: 1e-3, torch.float64: 1e-6}  # |logsumexp| allowed; 16-bit: 2e-2
PADDING_RUN = 0.1  # trailing identical frames (share of T) that betray zero padding
MAX_LISTED = 20  # utterances named in evidence
EMPTY_ERROR_FRACTION = 0.1  # zero-length targets in more than this share of a batch: an error


def _as_tensor(x, dtype=torch.long) -> torch.Tensor:
    return x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=dtype)


def _names(idx: Sequence[int], ids: Sequence[str] | None) -> list:
    idx = list(idx)[:MAX_LISTED]
    return [ids[i] for i in idx] if ids is not None else idx


# ---- individual checks -----------------------------------------------------------------

def check_layout(log_probs: torch.Tensor, n: int) -> tuple[torch.Tensor | None, list[Finding]]:
    """(T, N, C) is expected. Returns the log-probs in (T, N, C) when that can be recovered
    (so the other checks can still run), or None."""
    if log_probs.dim() != 3:
        return None, [Finding("LAYOUT_MISMATCH", "error",
                              f"log_probs has shape {tuple(log_probs.shape)}; ctc_loss expects "
                              f"(T, N, C) (or (T, C) for one utterance)",
                              {"shape": list(log_probs.shape)},
                              "reshape the model output to (time, batch, vocabulary)")]
    T, N, C = log_probs.shape
    if N == n:
        return log_probs, []
    if T == n:
        return log_probs.transpose(0, 1), [Finding(
            "LAYOUT_MISMATCH", "error",
            f"log_probs has shape {tuple(log_probs.shape)}: batch-first (N, T, C) with N={n}, "
            f"but ctc_loss reads dimension 0 as time",
            {"shape": list(log_probs.shape), "batch_size": n},
            "pass log_probs.transpose(0, 1) (asrlab models return (B, T, V))")]
    return None, [Finding("LAYOUT_MISMATCH", "error",
                          f"log_probs has shape {tuple(log_probs.shape)} but there are {n} "
                          f"input lengths: no dimension matches the batch size",
                          {"shape": list(log_probs.shape), "batch_size": n},
                          "pass one input length per utterance and log_probs as (T, N, C)")]


def check_log_probs(lp: torch.Tensor, lengths: torch.Tensor) -> list[Finding]:
    """lp (T, N, C) must be finite (-inf allowed) and log-softmax over C on the real frames."""
    T, N, C = lp.shape
    x = lp.detach().float() if lp.dtype in (torch.float16, torch.bfloat16) else lp.detach()
    tol = LOGSUMEXP_TOL.get(lp.dtype, 2e-2)
    valid = time_mask(lengths.clamp(max=T).to(x.device), T).T  # (T, N)
    frames = x[valid]  # (frames, C)
    if frames.numel() == 0:
        return []
    if bool(torch.isnan(frames).any() | torch.isposinf(frames).any()):
        bad = (torch.isnan(x) | torch.isposinf(x)).any(dim=2).any(dim=0).nonzero().flatten()
        return [Finding("DIVERGENCE", "error", "log_probs contain NaN/+inf: the model's "
                        "weights or inputs are not finite", {"kind": "nan",
                                                            "utterances": bad.tolist()[:MAX_LISTED]},
                        "check the inputs for NaN (asrlab check: BAD_AUDIO) and lower the "
                        "learning rate (--lr)")]
    lse = torch.logsumexp(frames, dim=-1)
    if float(lse.abs().max()) <= tol:
        return []
    ev = {"logsumexp_min": round(float(lse.min()), 4), "logsumexp_max": round(float(lse.max()), 4),
          "value_min": round(float(frames.min()), 4), "value_max": round(float(frames.max()), 4)}
    fix = "apply log_softmax over the vocabulary axis: logits.log_softmax(dim=-1)"
    if float(frames.min()) >= 0 and float((frames.sum(-1) - 1).abs().max()) <= max(tol, 1e-3):
        return [Finding("NOT_LOG_PROBS", "error", "log_probs are probabilities (softmax output): "
                        "ctc_loss needs log-probabilities", {**ev, "kind": "softmax"},
                        "use log_softmax(dim=-1) instead of softmax")]
    for dim, name in ((0, "time"), (1, "batch")):
        if float(torch.logsumexp(x, dim=dim).abs().max()) <= tol:
            return [Finding("NOT_LOG_PROBS", "error", f"log_probs are normalized over the {name} "
                            f"axis (dim {dim}), not the vocabulary axis", {**ev, "kind": f"dim{dim}"},
                            fix)]
        s = x.sum(dim=dim)
        if float(x.min()) >= 0 and float((s - 1).abs().max()) <= max(tol, 1e-3):
            return [Finding("NOT_LOG_PROBS", "error", f"log_probs are a softmax over the {name} "
                            f"axis (dim {dim}): wrong axis, and probabilities, not logs",
                            {**ev, "kind": f"softmax-dim{dim}"}, fix)]
    return [Finding("NOT_LOG_PROBS", "error",
                    f"log_probs are not normalized (logsumexp over the vocabulary ranges "
                    f"{ev['logsumexp_min']:.2f}..{ev['logsumexp_max']:.2f}, should be 0): raw logits?",
                    {**ev, "kind": "logits"}, fix)]


def split_targets(targets: torch.Tensor, target_lengths: torch.Tensor, n: int
                  ) -> tuple[list[torch.Tensor] | None, list[Finding]]:
    """Padded (N, S) or concatenated 1-D targets -> one 1-D tensor per utterance."""
    bad = lambda msg, ev: (None, [Finding(  # noqa: E731
        "BAD_INPUT_LENGTHS", "error", msg, {"kind": "target_lengths", **ev},
        "pass target_lengths = the number of labels of each utterance")])
    if len(target_lengths) != n:
        return bad(f"{len(target_lengths)} target lengths for {n} utterances", {})
    if targets.dim() == 2:
        if targets.shape[0] != n:
            return bad(f"targets have {targets.shape[0]} rows for {n} utterances", {})
        over = (target_lengths > targets.shape[1]).nonzero().flatten().tolist()
        if over:
            return bad(f"target lengths exceed the padded target width {targets.shape[1]}",
                       {"utterances": over[:MAX_LISTED]})
        return [targets[i, :int(target_lengths[i])] for i in range(n)], []
    if int(target_lengths.sum()) != targets.numel():
        return bad(f"concatenated targets hold {targets.numel()} labels but target_lengths "
                   f"sum to {int(target_lengths.sum())}", {})
    return list(torch.split(targets, target_lengths.tolist())), []


def check_targets(rows: list[torch.Tensor], blank: int, vocab: int, ids=None) -> list[Finding]:
    with_blank = [i for i, r in enumerate(rows) if bool((r == blank).any())]
    outside = [i for i, r in enumerate(rows) if r.numel() and bool(((r < 0) | (r >= vocab)).any())]
    empty = [i for i, r in enumerate(rows) if r.numel() == 0]
    out = []
    if empty:
        frac = len(empty) / len(rows)
        out.append(Finding(
            "EMPTY_TRANSCRIPT", "error" if frac > EMPTY_ERROR_FRACTION else "warning",
            f"{len(empty)} of {len(rows)} target sequence(s) have length 0: ctc_loss accepts "
            f"them and then rewards blank on every frame of those utterances",
            {"kind": "zero-length-target", "utterances": _names(empty, ids),
             "fraction": round(frac, 4)},
            "drop utterances without transcript (or whose transcript the text normalization "
            "empties) before batching; if all targets are empty, check that target_lengths "
            "are the label counts"))
    if with_blank:
        tail = all(bool((rows[i][int((rows[i] == blank).nonzero()[0]):] == blank).all())
                   for i in with_blank)
        hint = ("the blanks sit at the end of each target: target_lengths count the padding"
                if tail else "the tokenizer maps a symbol to the blank id")
        out.append(Finding("BLANK_IN_TARGETS", "error",
                           f"{len(with_blank)} target sequence(s) contain the blank id {blank}: "
                           f"{hint}", {"kind": "blank", "blank": blank, "utterances":
                                       _names(with_blank, ids), "fraction": len(with_blank) / len(rows)},
                           "reserve the blank for CTC (asrlab's tokenizers use id 0) and pass "
                           "the real target lengths"))
    if outside:
        hi = max(int(rows[i].max()) for i in outside)
        out.append(Finding("BLANK_IN_TARGETS", "error",
                           f"{len(outside)} target sequence(s) hold ids outside the vocabulary "
                           f"of {vocab} (largest {hi}): the output layer is smaller than the "
                           f"tokenizer", {"kind": "out-of-vocab", "vocab": vocab, "max_id": hi,
                                          "utterances": _names(outside, ids)},
                           "size the output layer to the tokenizer's vocab_size"))
    return out


def check_input_lengths(lp: torch.Tensor, lengths: torch.Tensor, ids=None) -> list[Finding]:
    T, N, _ = lp.shape
    over = (lengths > T).nonzero().flatten().tolist()
    if over:
        ratio = float(lengths.max()) / T
        hint = (f" (they look like feature frames before {round(ratio)}x subsampling: use "
                f"model.output_lengths)" if ratio >= 1.8 else "")
        return [Finding("BAD_INPUT_LENGTHS", "error",
                        f"{len(over)} input length(s) exceed the {T} frames of log_probs"
                        f" (max {int(lengths.max())}){hint}",
                        {"kind": "too-long", "frames": T, "max_length": int(lengths.max()),
                         "utterances": _names(over, ids)},
                        "pass each utterance's number of output frames (after subsampling)")]
    nonpos = (lengths <= 0).nonzero().flatten().tolist()
    if nonpos:
        return [Finding("BAD_INPUT_LENGTHS", "error", f"{len(nonpos)} input length(s) are <= 0",
                        {"kind": "non-positive", "utterances": _names(nonpos, ids)},
                        "drop empty utterances or fix the length computation")]
    if N > 1 and bool((lengths == T).all()):
        padded = padding_runs(lp)
        suspects = [i for i, r in enumerate(padded) if r >= max(2, PADDING_RUN * T)]
        if suspects:
            return [Finding("BAD_INPUT_LENGTHS", "warning",
                            f"every input length equals the padded length {T}, yet "
                            f"{len(suspects)} utterance(s) end in {max(padded)} identical frames "
                            f"(padding): the loss is computed over padding",
                            {"kind": "padding-ignored", "frames": T, "utterances":
                             _names(suspects, ids), "trailing_identical_frames":
                             [padded[i] for i in suspects[:MAX_LISTED]]},
                            "pass each utterance's own length (before padding, after "
                            "subsampling), not log_probs.shape[0]")]
    return []


def padding_runs(lp: torch.Tensor, eps: float = 1e-4) -> list[int]:
    """Per utterance, how many frames at the end are identical to the frame before them: a
    model's output over zero padding is constant (or nearly so)."""
    same = ((lp[1:] - lp[:-1]).abs().amax(dim=-1) < eps)  # (T-1, N)
    run = same.flip(0).to(torch.int32).cumprod(dim=0).sum(dim=0)  # trailing Trues
    return run.tolist()


def check_feasible(lengths: torch.Tensor, rows: list[torch.Tensor], ids=None) -> list[Finding]:
    need = frames_needed_rows(rows).cpu()
    bad = (lengths.cpu() < need).nonzero().flatten().tolist()
    if not bad:
        return []
    return [Finding("INFEASIBLE_LENGTH", "error",
                    f"{len(bad)} utterance(s) have fewer output frames than labels + repeated "
                    f"labels: CTC cannot align them (loss inf)",
                    {"utterances": _names(bad, ids), "frames": [int(lengths[i]) for i in bad][:MAX_LISTED],
                     "needed": [int(need[i]) for i in bad][:MAX_LISTED],
                     "fraction": len(bad) / len(rows)},
                    "drop them, subsample less in time, or use shorter target units")]


def frames_per_label(input_lengths, targets, target_lengths) -> float | None:
    """Median output frames per needed frame (labels + repeats) over a batch: the measure
    `asrlab check` reports as median_frames_per_label. None when it cannot be computed."""
    lengths = _as_tensor(input_lengths).long().reshape(-1)
    tlens = _as_tensor(target_lengths).long().reshape(-1)
    rows, problems = split_targets(_as_tensor(targets).cpu(), tlens.cpu(), len(lengths))
    if rows is None or problems:
        return None
    need = frames_needed_rows(rows).cpu().float()
    ok = need > 0
    if not bool(ok.any()):
        return None
    return float((lengths.cpu().float()[ok] / need[ok]).median())


def check_batch(log_probs: torch.Tensor, input_lengths, targets, target_lengths, blank: int = 0,
                ids: Sequence[str] | None = None) -> list[Finding]:
    """Arguments as `torch.nn.functional.ctc_loss` takes them; returns what is wrong."""
    lengths = _as_tensor(input_lengths).long().reshape(-1)
    tlens = _as_tensor(target_lengths).long().reshape(-1)
    targets = _as_tensor(targets)
    if log_probs.dim() == 2:  # one utterance, (T, C)
        log_probs = log_probs.unsqueeze(1)
        targets = targets.reshape(1, -1) if targets.dim() == 1 else targets
    lp, findings = check_layout(log_probs.detach(), len(lengths))
    if lp is None:
        return findings
    findings += check_log_probs(lp, lengths)
    rows, problems = split_targets(targets.cpu(), tlens.cpu(), len(lengths))
    findings += problems
    findings += check_input_lengths(lp, lengths, ids)
    if rows is not None:
        findings += check_targets(rows, blank, lp.shape[2], ids)
        findings += check_feasible(lengths.clamp(max=lp.shape[0]), rows, ids)
    return findings


# ---- the doctor object -----------------------------------------------------------------

class CTCDoctor:
    """Batch checks plus the training monitor's judgement, for any PyTorch CTC loop.

    `batch_first=False` (default): log-probs are (T, N, C) as ctc_loss takes them; True for
    (N, T, C). Observations close every `every` calls of `observe` (one call = one update)."""

    def __init__(self, blank: int = 0, batch_first: bool = False, every: int = 25,
                 thresholds: Thresholds | None = None, context: RunContext | None = None,
                 lr: float | None = None, precision: str | None = None):
        self.blank, self.batch_first, self.every = blank, batch_first, max(1, every)
        ctx = context or RunContext(lr=lr, loop="torch", precision=precision)
        self.tracker = HealthTracker(thresholds, ctx)
        self.step = 0
        self._window = EmissionStats()
        self._window_losses: list[float] = []
        self._calls = 0

    def check_batch(self, log_probs, input_lengths, targets, target_lengths,
                    blank: int | None = None, ids: Sequence[str] | None = None) -> list[Finding]:
        """`check_batch` (see there). The first batch checked also tells the doctor the data's
        output frames per label (unless the context gave it), so that its blank-phase
        judgement is relative to the units (BPE and word units leave more frames blank)."""
        if self.batch_first and log_probs.dim() == 3:
            log_probs = log_probs.transpose(0, 1)
        if self.tracker.ctx.frames_per_label is None:
            fpl = frames_per_label(input_lengths, targets, target_lengths)
            if fpl is not None:
                self.tracker.set_frames_per_label(fpl)
        return check_batch(log_probs, input_lengths, targets, target_lengths,
                           self.blank if blank is None else blank, ids)

    @torch.no_grad()
    def observe(self, log_probs: torch.Tensor, lengths, losses: torch.Tensor | None = None,
                ids: Sequence[str] | None = None, targets=None, target_lengths=None,
                step: int | None = None) -> list[Finding]:
        """Record one update's emissions (and per-utterance losses, when given). Returns the
        findings that are new since the last call."""
        if step is not None:
            self.step = step
        lp = log_probs.detach()
        self.note_precision(lp.dtype)
        btc = lp if self.batch_first else lp.transpose(0, 1)  # (N, T, C)
        lens = _as_tensor(lengths).long().reshape(-1)
        self._window.add(btc, lens, self.blank)
        if losses is not None:
            losses = losses.detach().reshape(-1)
            bad = (~torch.isfinite(losses)).nonzero().flatten().tolist()
            rows = None
            if bad and targets is not None and target_lengths is not None:
                rows, _ = split_targets(_as_tensor(targets).cpu(),
                                        _as_tensor(target_lengths).long().cpu(), len(lens))
            if losses.numel() == len(lens):
                causes = {i: nonfinite_cause(btc[i], int(lens[i]), rows[i] if rows else None)
                          for i in bad}
                self.tracker.observe_losses(self.step, losses, list(ids) if ids else None, causes)
            else:  # a reduced (scalar) loss: the batch is the unit, named by its update
                causes = {0: self._batch_cause(btc, lens, rows)} if bad else {}
                self.tracker.observe_losses(self.step, losses[:1], [f"batch@{self.step}"],
                                            causes)
        self._calls += 1
        if self._calls % self.every == 0:
            self.tracker.observe(Observation.from_stats(self.step, "train", self._window))
            self._window = EmissionStats()
        self.step += 1
        return self.tracker.new_findings()

    def note_precision(self, dtype: torch.dtype) -> None:
        """The precision the model computes in, from the dtype of its output (or autocast being
        on where `observe` is called), unless the context gave it: fp16 overflow is then the
        likely cause of NaN."""
        if self.tracker.ctx.precision is not None:
            return
        if dtype == torch.float16 or dtype == torch.bfloat16:
            precision = "fp16" if dtype == torch.float16 else "bf16"
        else:
            fast = [torch.get_autocast_dtype(d) for d in ("cpu", "cuda")
                    if torch.is_autocast_enabled(d)]
            if not fast:
                return
            precision = "fp16" if torch.float16 in fast else "bf16"
        self.tracker.update_context(precision=precision)

    @staticmethod
    def _batch_cause(btc: torch.Tensor, lens: torch.Tensor, rows) -> str:
        """Why a batch's reduced loss is inf/NaN: NaN outputs, else its infeasible utterances."""
        causes = [nonfinite_cause(btc[i], int(lens[i]), rows[i] if rows else None)
                  for i in range(len(lens))]
        for prefix in ("model output", "infeasible"):
            hit = [(i, c) for i, c in enumerate(causes) if c.startswith(prefix)]
            if hit:
                return f"{hit[0][1]} (utterance {hit[0][0]} of the batch" + (
                    f", {len(hit) - 1} more)" if len(hit) > 1 else ")")
        return causes[0]

    def findings(self, final: bool = False) -> list[Finding]:
        """What is wrong now (all of it, not only what is new)."""
        return self.tracker.findings(final)

    def new_findings(self, final: bool = False) -> list[Finding]:
        return self.tracker.new_findings(final)

    @property
    def history(self) -> list[Observation]:
        return list(self.tracker.observations)
