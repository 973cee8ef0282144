"""Pre-training data checks (to be completed by the doctor work)."""

from __future__ import annotations

from asrlab.doctor.findings import Finding


def check_scanned(train_scan, val_scan, config, tokenizer, pipeline) -> list[Finding]:
    findings = []
    for scan in (train_scan, val_scan):
        if scan.skipped:
            findings.append(Finding("BAD_AUDIO", "warning", f"{len(scan.skipped)} {scan.split} "
                                    "utterance(s) skipped", {"ids": [s.id for s in scan.skipped]},
                                    "see skipped.jsonl"))
    return findings
