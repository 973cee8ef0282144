"""A `Diagnosis` as RUN/diagnosis.md, RUN/diagnosis.html (self-contained: plots embedded as
base64 PNG, made with matplotlib's Agg backend) and RUN/diagnosis.json."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from asrlab.doctor.diagnose import Diagnosis
from asrlab.doctor.findings import Finding

SEVERITY_COLOR = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
BLANK_LABEL = "∅"


# ---- plots ------------------------------------------------------------------------------

def _figure(*args, **kw):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kw)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _mark_findings(ax, diag: Diagnosis) -> None:
    """A vertical line where the blank-phase judgement was made."""
    for f in diag.findings:
        if f.code in ("BLANK_COLLAPSE", "DIVERGENCE") and isinstance(f.evidence.get("updates"), int):
            ax.axvline(f.evidence["updates"], color=SEVERITY_COLOR[f.severity], ls="--", lw=1)


def plot_loss(diag: Diagnosis) -> str | None:
    if not diag.metrics and not diag.step_losses:
        return None
    fig, ax = _figure(figsize=(6.4, 3.4))
    if diag.step_losses:
        s, v = zip(*diag.step_losses)
        ax.plot(s, v, color="#90a4ae", lw=0.7, label="train (per update)")
    if diag.metrics:
        steps = [m["step"] for m in diag.metrics]
        ax.plot(steps, [m["train_loss"] for m in diag.metrics], "o-", label="train (epoch mean)")
        ax.plot(steps, [m["val_loss"] for m in diag.metrics], "s-", label="val")
    ax.set_ylabel("CTC loss per token")
    ax.set_yscale("log")
    return _over_updates(fig, ax, "Loss")


def plot_error_rates(diag: Diagnosis) -> str | None:
    if not diag.metrics:
        return None
    fig, ax = _figure(figsize=(6.4, 3.4))
    steps = [m["step"] for m in diag.metrics]
    ax.plot(steps, [m["val_cer"] for m in diag.metrics], "o-", label="val CER")
    ax.plot(steps, [m["val_wer"] for m in diag.metrics], "s-", label="val WER")
    ax.set_ylim(0, max(1.05, max(m["val_wer"] for m in diag.metrics) + 0.05))
    return _over_updates(fig, ax, "Validation error rates")


def _over_updates(fig, ax, title: str) -> str:
    """Finish a one-axes plot over training updates: labels, legend, grid; the PNG."""
    ax.set_xlabel("updates")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_blank(diag: Diagnosis) -> str | None:
    obs = diag.observations
    if not obs:
        return None
    fig, (a1, a2) = _figure(2, 1, figsize=(11, 5.6), sharex=True)
    for source, marker in (("train", "."), ("val", "o")):
        o = [x for x in obs if x.source == source]
        if not o:
            continue
        st = [x.step for x in o]
        a1.plot(st, [x.blank_ratio for x in o], marker + "-", label=f"blank wins ({source})")
        a1.plot(st, [x.empty_rate for x in o], marker + ":", label=f"empty hyps ({source})")
        a2.plot(st, [x.mean_blank_prob for x in o], marker + "-", label=f"mean P(blank) ({source})")
        a2.plot(st, [x.mean_max_nonblank_prob for x in o], marker + "--",
                label=f"mean max P(non-blank) ({source})")
    a1.set_ylim(-0.02, 1.02)
    a1.set_ylabel("share")
    a1.set_title("Blank behaviour over training")
    a2.set_ylabel("probability")
    a2.set_yscale("log")
    a2.set_xlabel("updates")
    for ax in (a1, a2):
        _mark_findings(ax, diag)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.grid(alpha=0.3)
    return _png(fig)


def plot_posteriorgram(uid: str, probs: np.ndarray, symbols: list[str]) -> str:
    """probs (T, V): heatmap of every symbol's probability per frame, and the blank vs best
    non-blank curves under it. symbols: the tokenizer's pieces (characters or BPE pieces);
    an id past them (a Diagnosis built without a tokenizer) shows as its number."""
    T, V = probs.shape
    labels = [BLANK_LABEL if i == 0 else ("␣" if s == " " else s)
              for i, s in enumerate((symbols + [str(i) for i in range(len(symbols), V)])[:V])]
    fig, (a1, a2) = _figure(2, 1, figsize=(9, 4.6), sharex=True,
                            gridspec_kw={"height_ratios": [3, 1.2]})
    a1.imshow(probs.T, aspect="auto", origin="lower", cmap="magma", vmin=0, vmax=1,
              interpolation="nearest")
    a1.set_yticks(range(V))
    a1.set_yticklabels(labels, fontsize=6)
    a1.set_title(f"Posteriorgram: {uid}", fontsize=10)
    nonblank = np.delete(probs, 0, axis=1).max(axis=1) if V > 1 else np.zeros(T)
    a2.plot(probs[:, 0], label="P(blank)", color="#37474f")
    a2.plot(nonblank, label="max P(non-blank)", color="#d84315")
    a2.set_ylim(0, 1.02)
    a2.set_xlabel("encoder frame")
    a2.legend(fontsize=7, loc="upper right")
    a2.grid(alpha=0.3)
    return _png(fig)


# ---- text -------------------------------------------------------------------------------

def verdict(diag: Diagnosis) -> str:
    top = diag.findings[0] if diag.findings else None
    if top is None or top.severity == "info":
        return "No problem found." + (f" Note: {top.message}" if top else "")
    return f"Most likely cause: **{top.code}**: {top.message}"


def _ev(f: Finding, limit: int = 900) -> str:
    """The evidence as JSON, cut at `limit` characters (all of it is in diagnosis.json)."""
    text = json.dumps({k: v for k, v in f.evidence.items() if k not in ("reasons",)}, default=str)
    return text if len(text) <= limit else text[:limit] + " ... (diagnosis.json has it all)"


def markdown(diag: Diagnosis) -> str:
    lines = [f"# Diagnosis of {diag.run_dir}", "",
             f"- checkpoint: `{diag.checkpoint}`", f"- data: `{diag.data}`", "",
             verdict(diag), "", "## Findings (most likely cause first)", ""]
    if not diag.findings:
        lines.append("None.")
    for i, f in enumerate(diag.findings, 1):
        lines += [f"{i}. **{f.severity.upper()} {f.code}**: {f.message}",
                  f"   - fix: {f.remedy}", f"   - evidence: `{_ev(f)}`"]
    tr = diag.stats.get("training", {})
    if tr:
        lines += ["", "## Training", "", "| " + " | ".join(tr) + " |",
                  "|" + "---|" * len(tr), "| " + " | ".join(str(v) for v in tr.values()) + " |"]
    em = diag.stats.get("emissions")
    if em:
        lines += ["", "## Model output on the data", "",
                  "| " + " | ".join(em) + " |", "|" + "---|" * len(em),
                  "| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v)
                                    for v in em.values()) + " |"]
    pe = diag.stats.get("blank_penalty_effect")
    if pe:
        lines += ["", f"With `--blank-penalty {pe['blank_penalty']}`: empty hypotheses "
                      f"{pe['empty']} -> {pe['empty_with_penalty']}, CER {pe['cer']} -> "
                      f"{pe['cer_with_penalty']}. {same_text_note(pe)}"]
    if diag.utterances:
        lines += ["", "## Reference vs prediction", "",
                  f"| id | reference | prediction | with blank penalty {diag.blank_penalty:g} | "
                  "frames | blank wins | P(blank) mean [min-max] | max P(non-blank) mean/max | "
                  "unique ids | all blank |", "|---|---|---|---|---|---|---|---|---|---|"]
        for u in diag.utterances[:diag.samples]:
            lines.append(f"| {u.id} | {u.ref} | {_plain(u.hyp)} | "
                         f"{_plain(u.hyp_penalized)} | {u.frames} | {u.blank_wins:.0%} | "
                         f"{u.blank_prob_mean:.3f} [{u.blank_prob_min:.3f}-{u.blank_prob_max:.3f}]"
                         f" | {u.max_nonblank_mean:.3f}/{u.max_nonblank_max:.3f} | "
                         f"{_ids(u.unique_ids)} | {u.all_blank} |")
    lines += ["", "Plots: see diagnosis.html beside this file.", ""]
    return "\n".join(lines)


def same_text_note(pe: dict) -> str:
    """When most penalized hypotheses are the same text, the output ignores the input."""
    n, total = pe.get("most_common_count", 0), pe.get("utterances", 0)
    if total >= 3 and n >= 0.8 * total:
        return (f"{n} of {total} utterances then decode to the same text "
                f"({pe['most_common_with_penalty']!r}): the output does not depend on the input.")
    return ""


def _plain(text: str) -> str:
    return text if text.strip() else ("(empty)" if not text else f"({len(text)} spaces only)")


def _ids(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:12])) + (" ..." if len(ids) > 12 else "")


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1180px;color:#212121;line-height:1.45}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;width:100%;font-size:0.86em;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f5f5f5}.sev{color:#fff;font-weight:600;border-radius:3px;padding:1px 6px}
.verdict{background:#fff8e1;border-left:4px solid #ef6c00;padding:8px 12px}
.ok{background:#e8f5e9;border-left-color:#2e7d32}
.ev{font-family:ui-monospace,monospace;font-size:0.85em;color:#555;word-break:break-all}
.plots img{max-width:100%;margin:6px 0}.grid{display:flex;flex-wrap:wrap;gap:8px}
.grid img{width:49%;min-width:420px}code{background:#f3f3f3;padding:0 3px}
.empty{color:#999;font-style:italic}
"""


def html_report(diag: Diagnosis) -> str:
    e = html.escape
    top = diag.findings[0] if diag.findings else None
    ok = top is None or top.severity == "info"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Diagnosis: "
             f"{e(str(diag.run_dir))}</title><style>{CSS}</style></head><body>",
             f"<h1>Diagnosis of <code>{e(str(diag.run_dir))}</code></h1>",
             f"<p>checkpoint <code>{e(diag.checkpoint)}</code> &middot; data "
             f"<code>{e(str(diag.data))}</code></p>",
             f"<div class='verdict{' ok' if ok else ''}'>"
             + ("<b>No problem found.</b>" if top is None else
                f"<b>{'Note' if ok else 'Most likely cause'}: {e(top.code)}</b>: {e(top.message)}"
                f"<br><b>Fix:</b> {e(top.remedy)}") + "</div>",
             "<h2>Findings, most likely cause first</h2>"]
    if diag.findings:
        rows = "".join(
            f"<tr><td>{i}</td><td><span class='sev' style='background:{SEVERITY_COLOR[f.severity]}'>"
            f"{f.severity}</span></td><td><b>{e(f.code)}</b></td><td>{e(f.message)}"
            f"<div class='ev'>{e(_ev(f))}</div></td><td>{e(f.remedy)}</td></tr>"
            for i, f in enumerate(diag.findings, 1))
        parts.append("<table><tr><th>#</th><th>severity</th><th>code</th><th>what</th>"
                     f"<th>fix</th></tr>{rows}</table>")
    else:
        parts.append("<p>None.</p>")
    plots = [p for p in (plot_loss(diag), plot_error_rates(diag)) if p]
    if plots:
        parts.append("<h2>Training curves</h2><div class='grid plots'>" + "".join(
            f"<img alt='training curve' src='data:image/png;base64,{p}'>" for p in plots) + "</div>")
    blank = plot_blank(diag)
    if blank:
        parts.append("<h2>Blank ratio over time</h2><div class='plots'>"
                     f"<img alt='blank behaviour' src='data:image/png;base64,{blank}'></div>")
    parts += _stats_html(diag)
    if diag.utterances:
        parts.append(f"<h2>Reference vs prediction ({min(diag.samples, len(diag.utterances))} of "
                     f"{len(diag.utterances)} utterances)</h2>")
        rows = "".join(
            f"<tr><td>{e(u.id)}</td><td>{e(u.ref)}</td><td>{_hyp(u.hyp)}</td>"
            f"<td>{_hyp(u.hyp_penalized)}</td><td>{u.cer:.2f}</td><td>{u.frames}</td>"
            f"<td>{u.blank_wins:.0%}</td><td>{u.blank_prob_mean:.3f} "
            f"[{u.blank_prob_min:.3f}&ndash;{u.blank_prob_max:.3f}]</td>"
            f"<td>{u.max_nonblank_mean:.3f} / {u.max_nonblank_max:.3f}</td>"
            f"<td>{e(_ids(u.unique_ids))}</td><td>{'yes' if u.all_blank else 'no'}</td></tr>"
            for u in diag.utterances[:diag.samples])
        parts.append("<table><tr><th>id</th><th>reference</th><th>prediction</th>"
                     f"<th>with --blank-penalty {diag.blank_penalty:g}</th><th>CER</th>"
                     "<th>frames</th><th>blank wins</th><th>P(blank) mean [min&ndash;max]</th>"
                     "<th>max P(non-blank) mean / max</th><th>unique predicted ids</th>"
                     f"<th>all blank</th></tr>{rows}</table>")
    if diag.posteriors:
        parts.append("<h2>Posteriorgrams</h2><div class='plots'>" + "".join(
            f"<img alt='posteriorgram {e(uid)}' src='data:image/png;base64,"
            f"{plot_posteriorgram(uid, p, diag.symbols)}'>" for uid, p in diag.posteriors)
            + "</div>")
    parts.append("<h2>All statistics</h2><details><summary>diagnosis.json stats</summary><pre>"
                 + e(json.dumps(diag.stats, indent=2, default=str)) + "</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _hyp(text: str) -> str:
    if not text:
        return "<span class='empty'>(empty)</span>"
    if not text.strip():
        return f"<span class='empty'>({len(text)} space{'s' if len(text) > 1 else ''} only)</span>"
    return html.escape(text)


def _stats_html(diag: Diagnosis) -> list[str]:
    out = []
    em, pe = diag.stats.get("emissions"), diag.stats.get("blank_penalty_effect")
    if em:
        out.append("<h2>Model output on the data</h2><table><tr>" + "".join(
            f"<th>{html.escape(k)}</th>" for k in em) + "</tr><tr>" + "".join(
            f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{v}</td>" for v in em.values())
            + "</tr></table>")
    if pe:
        out.append(f"<p>Decoding with <code>--blank-penalty {pe['blank_penalty']:g}</code>: empty "
                   f"hypotheses {pe['empty']} &rarr; {pe['empty_with_penalty']}, CER {pe['cer']} "
                   f"&rarr; {pe['cer_with_penalty']}, WER {pe['wer']} &rarr; "
                   f"{pe['wer_with_penalty']}. {html.escape(same_text_note(pe))}</p>")
    return out


def write_reports(diag: Diagnosis, out_dir: str | Path | None = None) -> dict[str, Path]:
    out_dir = Path(out_dir or diag.run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "diagnosis.md", "html": out_dir / "diagnosis.html",
             "json": out_dir / "diagnosis.json"}
    paths["md"].write_text(markdown(diag))
    paths["html"].write_text(html_report(diag))
    paths["json"].write_text(json.dumps(diag.to_json(), indent=2, default=str))
    return paths
