"""The doctor's vocabulary: every check yields `Finding(code, severity, message, evidence, remedy)`.

Codes are fixed (other tools match on them); see docs/doctor.md for how each is detected.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

SEVERITIES = ("error", "warning", "info")

CODES = {
    "BLANK_COLLAPSE": "outputs are (nearly) all blank while the loss still falls or has flattened",
    "UNDERTRAINED": "still in the normal early blank phase: too few updates so far",
    "INFEASIBLE_LENGTH": "encoder frames < target length + repeated adjacent labels",
    "FEATURE_MISMATCH": "feature statistics of train and val (or inference input) differ",
    "SAMPLE_RATE_MISMATCH": "audio rates differ between splits or from the model's",
    "OOV_CHARACTERS": "transcript characters the vocabulary lacks",
    "EMPTY_TRANSCRIPT": "utterances with empty text (or text the text rules reduce to nothing)",
    "BAD_AUDIO": "unreadable, empty, silent, NaN or clipped audio",
    "NONFINITE_LOSS": "inf/NaN losses",
    "DIVERGENCE": "loss rising or oscillating",
    "LAYOUT_MISMATCH": "log-probs given as (N,T,C) where (T,N,C) is expected, or the reverse",
    "NOT_LOG_PROBS": "emissions are not log-softmax over the vocabulary axis",
    "BLANK_IN_TARGETS": "targets contain the blank id or ids outside the vocabulary",
    "BAD_INPUT_LENGTHS": "input lengths exceed the frames or ignore padding",
    "DURATION_OUTLIER": "utterances far longer or shorter than the rest, or than their manifest says",
    "BAD_MANIFEST": "manifest lines that cannot be read",
    "SEEN_SPEAKERS": "every validation speaker also speaks in training: val CER is seen-speaker",
    "INPUT_SCALE": "waveforms not at the scale the encoder takes (int16 range, not normalized "
                   "its way)",
    "BLANK_MISMATCH": "the CTC blank id is not the tokenizer's pad / blank token but a real symbol",
    "SPAN_MASK_TOO_LONG": "utterances with fewer encoder frames than the time-mask span",
    "GROUPED_REFERENCES": "references decoded with CTC grouping: doubled letters lost, WER wrong",
    "TRIMMED_AUDIO": "clips cut while the speech is still loud, unpadded into a Whisper encoder",
}

# Most likely root cause first when several findings are present (`rank`): failures that make
# the model output meaningless, then data problems that explain them, then symptoms and notes.
CAUSE_ORDER = (
    "NONFINITE_LOSS", "DIVERGENCE", "BLANK_COLLAPSE", "LAYOUT_MISMATCH", "NOT_LOG_PROBS",
    "BLANK_MISMATCH", "BLANK_IN_TARGETS", "BAD_INPUT_LENGTHS", "INPUT_SCALE", "FEATURE_MISMATCH",
    "INFEASIBLE_LENGTH", "SPAN_MASK_TOO_LONG", "SAMPLE_RATE_MISMATCH", "BAD_MANIFEST",
    "BAD_AUDIO", "EMPTY_TRANSCRIPT", "OOV_CHARACTERS", "GROUPED_REFERENCES", "UNDERTRAINED",
    "DURATION_OUTLIER", "TRIMMED_AUDIO", "SEEN_SPEAKERS",
)
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # error | warning | info
    message: str
    evidence: dict = field(default_factory=dict)  # numbers and utterance ids behind it
    remedy: str = ""  # a concrete next step

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    @property
    def log_level(self) -> int:
        """The severity as a logging level: error, warning, else info."""
        return {"error": logging.ERROR, "warning": logging.WARNING}.get(self.severity, logging.INFO)

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "evidence": self.evidence, "remedy": self.remedy}

    @classmethod
    def from_dict(cls, d: dict) -> "Finding":
        return cls(d["code"], d["severity"], d["message"], d.get("evidence", {}),
                   d.get("remedy", ""))

    def __str__(self) -> str:
        return f"[{self.severity.upper()}] {self.code}: {self.message}" + \
            (f"\n    fix: {self.remedy}" if self.remedy else "")


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def rank(findings: Iterable[Finding]) -> list[Finding]:
    """Most likely cause first: by severity, then by `CAUSE_ORDER`, then by the share of the
    data affected (`evidence["fraction"]`, when a check records it)."""
    def key(f: Finding):
        order = CAUSE_ORDER.index(f.code) if f.code in CAUSE_ORDER else len(CAUSE_ORDER)
        return SEVERITY_ORDER[f.severity], order, -float(f.evidence.get("fraction", 0.0) or 0.0)
    return sorted(findings, key=key)


def read_findings(path: str | Path) -> list[Finding]:
    """Findings from a `{"findings": [...]}` JSON file or a findings.jsonl (one per line);
    [] when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [Finding.from_dict(json.loads(line)) for line in text.splitlines() if line.strip()]
    return [Finding.from_dict(d) for d in json.loads(text).get("findings", [])]


def write_findings_json(path: str | Path, findings: Iterable[Finding], **extra) -> Path:
    path = Path(path)
    path.write_text(json.dumps({"findings": [f.to_dict() for f in findings], **extra}, indent=2))
    return path
