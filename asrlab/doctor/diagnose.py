"""After training: what went wrong with a run, and what to do.

`diagnose(run_dir, data)` is a progress analyzer, a prediction inspector and a model-output
debugger in one pass:

1. replays the run's history (RUN/doctor_trace.jsonl, else RUN/metrics.jsonl) through the same
   `HealthTracker` the TrainingMonitor used: BLANK_COLLAPSE / UNDERTRAINED / DIVERGENCE;
2. runs the checkpoint (`asrlab.inference.Recognizer`) on the data and dumps, per utterance,
   reference vs prediction and the per-frame behaviour: blank probability, max non-blank
   probability, unique predicted ids, the all-blank flag, and what `--blank-penalty` decoding
   would give;
3. checks the data against the model: feature statistics vs the checkpoint's, CTC
   feasibility with the model's subsampling, unusable audio, sample rates;
4. merges the run's own findings (RUN/check.json, RUN/findings.jsonl) and ranks everything,
   most likely cause first.

`asrlab.doctor.report` writes it as RUN/diagnosis.{md,html,json}.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from asrlab.doctor.findings import Finding, rank, read_findings
from asrlab.doctor.monitor import read_trace, trace_meta
from asrlab.doctor.rules import HealthTracker, Observation, RunContext
from asrlab.doctor.stats import EmissionStats
from asrlab.metrics import epoch_rank

STILL_IMPROVING = 0.05  # val CER still falling by more than this (relative) per epoch at the end


@dataclass
class UtteranceDump:
    """One utterance's reference, prediction and per-frame behaviour."""
    id: str
    ref: str
    hyp: str
    hyp_penalized: str  # greedy with the blank penalty
    cer: float
    frames: int
    blank_wins: float  # share of frames whose argmax is blank
    blank_prob_mean: float
    blank_prob_min: float
    blank_prob_max: float
    max_nonblank_mean: float
    max_nonblank_max: float
    unique_ids: list[int]
    all_blank: bool
    raw_ref: str | None = None  # the manifest's text, when the model's text rules changed it


@dataclass
class Diagnosis:
    run_dir: Path
    checkpoint: str
    data: str | None
    findings: list[Finding]
    stats: dict
    metrics: list[dict] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    step_losses: list[tuple[int, float]] = field(default_factory=list)
    utterances: list[UtteranceDump] = field(default_factory=list)
    posteriors: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (id, probs (T, V))
    symbols: list[str] = field(default_factory=list)  # tokenizer.pieces: each id's string
    blank_penalty: float = 2.0
    samples: int = 10  # utterances shown as reference vs prediction

    def to_json(self) -> dict:
        return {"findings": [f.to_dict() for f in self.findings], "stats": self.stats,
                "utterances": [asdict(u) for u in self.utterances]}


# ---- the run's history -------------------------------------------------------------------

def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def observations_from_metrics(metrics: list[dict], n_val: int | None) -> list[Observation]:
    """Per-epoch validation emissions (metrics.jsonl), for runs without a doctor trace.
    metrics.jsonl counts empty hypotheses; `n_val` (utterances) turns that into a rate."""
    return [Observation(m["step"], "val", m.get("blank_ratio", 0.0), m.get("mean_blank_prob", 0.0),
                        m.get("mean_max_nonblank_prob", 0.0),
                        min(1.0, m.get("empty_hyps", 0) / n_val) if n_val else 0.0,
                        m.get("distinct_tokens", 0), 0, epoch=m["epoch"],
                        loss=m.get("val_loss"), lr=m.get("lr")) for m in metrics]


def history_findings(run_dir: Path, ctx: RunContext, metrics: list[dict],
                     final_obs: Observation | None, n_val: int | None = None
                     ) -> tuple[list[Finding], list[Observation], list[tuple[int, float]]]:
    """Replay the run through a HealthTracker; `final_obs` (the checkpoint on the data) is
    the last observation."""
    obs, losses = read_trace(run_dir)
    if not obs:
        obs = observations_from_metrics(metrics, n_val)
    tracker = HealthTracker(context=ctx)
    tracker.replay(obs, losses)
    if final_obs is not None and (not obs or final_obs.step >= obs[-1].step):
        tracker.observe(final_obs)
    findings = [f for f in tracker.findings(final=True) if f.code != "NONFINITE_LOSS"]
    return findings + trend_findings(metrics, ctx), obs, losses


def trend_findings(metrics: list[dict], ctx: RunContext) -> list[Finding]:
    """A run out of the blank phase whose validation CER was still falling steeply when it
    stopped: more training would pay."""
    if len(metrics) < 3:
        return []
    cer = [m["val_cer"] for m in metrics]
    if min(cer) >= 0.95:  # still blank: the tracker's job
        return []
    a, b = cer[-3], cer[-1]
    per_epoch = (a - b) / max(a, 1e-9) / 2
    if per_epoch > STILL_IMPROVING:
        return [Finding("UNDERTRAINED", "info",
                        f"validation CER was still falling when training stopped ({a:.3f} -> "
                        f"{b:.3f} over the last 2 epochs, {per_epoch:.0%} per epoch)",
                        {"kind": "still-improving", "val_cer_last": [round(c, 4) for c in cer[-3:]],
                         "epochs": len(metrics)},
                        f"train longer: {ctx.resume_cmd(str(len(metrics) * 2))}")]
    return []


# ---- the model on the data ---------------------------------------------------------------

def dump_utterance(uid: str, ref: str, lp: np.ndarray, tokenizer, penalty: float) -> UtteranceDump:
    from asrlab.decode.greedy import greedy_decode
    from asrlab.metrics import utterance_errors

    probs = np.exp(lp.astype(np.float64))  # (T, V)
    blank = tokenizer.blank
    pb = probs[:, blank]
    pn = np.delete(probs, blank, axis=1).max(axis=1) if probs.shape[1] > 1 else np.zeros(len(pb))
    best = probs.argmax(axis=1)
    hyp = greedy_decode(lp, len(lp), tokenizer).text
    e = utterance_errors(ref, hyp)
    return UtteranceDump(uid, ref, hyp, greedy_decode(lp, len(lp), tokenizer, penalty).text,
                         e.char_errors / max(1, e.chars), len(lp), float((best == blank).mean()),
                         float(pb.mean()), float(pb.min()), float(pb.max()), float(pn.mean()),
                         float(pn.max()), sorted(set(best.tolist())), bool((best == blank).all()))


def model_on_data(ckpt, utts, waves, max_utts: int, penalty: float, posteriors: int):
    """Run the model; (EmissionStats over all, dumps, a few posteriorgrams)."""
    import torch

    from asrlab.inference import Recognizer

    rec = Recognizer(ckpt)
    utts, waves = utts[:max_utts], waves[:max_utts]
    lps = rec.log_probs(waves)
    stats = EmissionStats()
    dumps, posts = [], []
    for u, lp in zip(utts, lps):
        stats.add(torch.from_numpy(lp)[None], torch.tensor([len(lp)]), ckpt.tokenizer.blank)
        d = dump_utterance(u.id, u.text, lp, ckpt.tokenizer, penalty)
        if u.original_text != u.text:
            d.raw_ref = u.original_text
        dumps.append(d)
        if len(posts) < posteriors:
            posts.append((u.id, np.exp(lp)))
    return stats, dumps, posts


def data_findings(ckpt, scan, config) -> tuple[list[Finding], dict]:
    """The data against the model: unusable items, clipping, rates, feasibility, features."""
    from asrlab.doctor.checks import (DataThresholds, check_stats_against, clipping_findings,
                                      length_findings, sample_rate_findings, skipped_findings)

    th = DataThresholds()
    out = skipped_findings(scan, th) + clipping_findings([scan], th)
    out += sample_rate_findings([scan], config.features.sample_rate)
    lf, lstats = length_findings([scan], config.merged({"augment": {"speed_perturb": [1.0]}}),
                                 ckpt.tokenizer, th)
    ff, fstats = check_stats_against(ckpt.stats, scan, config, th)
    return out + lf + ff, {"lengths": lstats, "features_vs_model": fstats}


def past_findings(run_dir: Path) -> list[Finding]:
    """Pre-training checks (check.json) and the monitor's findings (findings.jsonl, latest
    of each code/kind), marked with where they came from."""
    out, latest = [], {}
    for f in read_findings(run_dir / "check.json"):
        if f.severity != "info":
            out.append(Finding(f.code, f.severity, f"[before training] {f.message}",
                               {**f.evidence, "from": "check.json"}, f.remedy))
    for f in read_findings(run_dir / "findings.jsonl"):
        if f.code == "NONFINITE_LOSS":
            latest[(f.code, f.evidence.get("kind"))] = f
    for f in latest.values():
        out.append(Finding(f.code, f.severity, f"[during training] {f.message}",
                           {**f.evidence, "from": "findings.jsonl"}, f.remedy))
    return out


def diagnose(run_dir: str | Path, data: str | Path | None = None, checkpoint: str = "last",
             max_utts: int = 200, samples: int = 10, blank_penalty: float = 2.0,
             posteriors: int = 3) -> Diagnosis:
    from asrlab.checkpoint import load
    from asrlab.data.scan import scan_split
    from asrlab.data.manifest import read_transcripts
    from asrlab.run_folder import validation_manifest

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    ckpt_path = (run_dir / f"{checkpoint}.pt" if checkpoint in ("last", "best", "average")
                 else Path(checkpoint))
    if not ckpt_path.is_file():
        ckpt_path = run_dir
    ckpt = load(ckpt_path)
    data = Path(data) if data else validation_manifest(run_dir, ckpt.meta)
    metrics = read_metrics(run_dir)
    steps = int(ckpt.meta.get("step") or (metrics[-1]["step"] if metrics else 0))
    meta = trace_meta(run_dir)
    spe = meta.get("steps_per_epoch") or _steps_per_epoch(metrics)
    ctx = RunContext.from_config(ckpt.config, spe, run_dir, meta.get("frames_per_label"))
    findings, stats = [], {"checkpoint": str(ckpt.path), "checkpoint_meta": ckpt.meta,
                           "data": str(data) if data else None}
    dumps, posts, final_obs, n_val = [], [], None, None
    if data is not None:
        utts = read_transcripts(data, ckpt.config.text).utterances  # as training read them
        scan = scan_split("data", utts, ckpt.config.features.sample_rate, ckpt.tokenizer)
        df, dstats = data_findings(ckpt, scan, ckpt.config)
        findings += df
        stats.update(dstats)
        used = scan.loaded
        n_val = len(used)
        if used:
            em, dumps, posts = model_on_data(ckpt, used, [scan.waves[u.id] for u in used],
                                             max_utts, blank_penalty, posteriors)
            stats["emissions"] = em.summary()
            stats["blank_penalty_effect"] = penalty_effect(dumps, blank_penalty)
            final_obs = Observation.from_stats(steps, "val", em, epoch=ckpt.meta.get("epoch"))
    hist, obs, losses = history_findings(run_dir, ctx, metrics, final_obs, n_val)
    hist = [with_penalty_evidence(f, stats.get("blank_penalty_effect") or {}) for f in hist]
    findings = hist + findings + past_findings(run_dir)
    stats["training"] = training_summary(metrics)
    return Diagnosis(run_dir, str(ckpt.path), str(data) if data else None, rank(dedupe(findings)),
                     stats, metrics, obs, losses, dumps, posts, list(ckpt.tokenizer.pieces),
                     blank_penalty, samples)


def _steps_per_epoch(metrics: list[dict]) -> int | None:
    return int(metrics[0]["step"]) if metrics and metrics[0].get("step") else None


def dedupe(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        key = (f.code, f.severity, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def penalty_effect(dumps: list[UtteranceDump], penalty: float) -> dict:
    """How many hypotheses are empty with and without the blank penalty, and the CER with it:
    tells whether `--blank-penalty` salvages a blank-heavy model."""
    from asrlab.metrics import error_rates

    if not dumps:
        return {}
    refs = [d.ref for d in dumps]
    plain = error_rates(refs, [d.hyp for d in dumps])
    pen = error_rates(refs, [d.hyp_penalized for d in dumps])
    texts = [d.hyp_penalized.strip() for d in dumps if d.hyp_penalized.strip()]
    common, n = Counter(texts).most_common(1)[0] if texts else ("", 0)
    return {"blank_penalty": penalty, "empty": plain.empty, "empty_with_penalty": pen.empty,
            "cer": round(plain.cer, 4), "cer_with_penalty": round(pen.cer, 4),
            "wer": round(plain.wer, 4), "wer_with_penalty": round(pen.wer, 4),
            "distinct_with_penalty": len(set(texts)), "most_common_with_penalty": common,
            "most_common_count": n, "utterances": len(dumps)}


def with_penalty_evidence(f: Finding, pe: dict) -> Finding:
    """A blank-collapse finding gains what the blank-penalty decode showed: when nearly every
    utterance then decodes to the same text, the model ignores its input."""
    n, total = pe.get("most_common_count", 0), pe.get("utterances", 0)
    if f.code != "BLANK_COLLAPSE" or total < 3 or n < 0.8 * total:
        return f
    text = pe["most_common_with_penalty"]
    return Finding(f.code, f.severity, f"{f.message}. With --blank-penalty {pe['blank_penalty']:g}, "
                   f"{n} of {total} utterances decode to the same text ({text!r}): the output "
                   f"does not depend on the input",
                   {**f.evidence, "same_text_with_penalty": n, "utterances": total}, f.remedy)


def training_summary(metrics: list[dict]) -> dict:
    if not metrics:
        return {}
    first, last = metrics[0], metrics[-1]
    best = min(metrics, key=lambda m: epoch_rank(m["val_cer"], m["val_loss"]))
    return {"epochs": last["epoch"], "updates": last["step"],
            "train_loss_first_last": [round(first["train_loss"], 4), round(last["train_loss"], 4)],
            "val_loss_first_last": [round(first["val_loss"], 4), round(last["val_loss"], 4)],
            "best_val_cer": round(best["val_cer"], 4), "best_epoch": best["epoch"],
            "last_val_cer": round(last["val_cer"], 4), "last_val_wer": round(last["val_wer"], 4),
            "last_blank_ratio": round(last.get("blank_ratio", 0.0), 4),
            "nonfinite_losses": sum(m.get("nonfinite_losses", 0) for m in metrics)}
