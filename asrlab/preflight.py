"""The pre-flight: what `asrlab train` does before its first step and `asrlab check` does
instead of training, one code path for both (so `check` judges the run `train` would start).

- `resolve_config(preset_name, config_file, overrides, init_from)`: the run's config (the
  preset, the --config file's keys, the flags and --set items, and with --init-from the source
  model's settings and the fine-tuning defaults; asrlab.finetune.source_defaults);
- `scan_data(cfg, train_path, val_path, ...)` -> `DataScan`: both manifests read through the
  model's text rules, bad lines refused or skipped, the tokenizer (built, or the resumed or
  --init-from model's), every utterance of both splits loaded once (`data.scan.scan_split`),
  and the CMVN statistics the model will be normalized with;
- `check_data(cfg, data)`: the doctor's findings on that scan (`doctor.checks.run_checks`),
  ranked; `check_manifests` is `asrlab check`'s whole path, `precheck` train's refusal.

Every refusal is a `TrainingRefused` whose message says what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from asrlab.checkpoint import Checkpoint
from asrlab.config import PRETRAINED_RECIPE, Config, preset
from asrlab.data.manifest import ManifestError, Transcripts, read_transcripts
from asrlab.data.scan import ScanResult, problem_skipped, scan_split
from asrlab.data.tokenizer import Tokenizer, build_tokenizer
from asrlab.doctor.checks import (CheckReport, DataThresholds, bad_manifest_finding,
                                  no_transcript_finding, run_checks)
from asrlab.doctor.display import evidence_line
from asrlab.doctor.findings import Finding, has_errors, rank, write_findings_json
from asrlab.features import FeaturePipeline, FeatureStats, front_end
from asrlab.finetune import (InitFromError, init_tokenizer, load_init, source_defaults,
                             under_user)
from asrlab.pretrained import with_encoder

log = logging.getLogger("asrlab.train")  # the run's log (RUN/train.log)


class TrainingRefused(RuntimeError):
    """Pre-training checks found errors; the message lists them and how to proceed."""


class NoTrainingText(TrainingRefused):
    """No training utterance has a transcript: there is no vocabulary to build. `findings`:
    the manifests' bad lines (BAD_MANIFEST) and EMPTY_TRANSCRIPT, for `asrlab check`."""

    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__(f"{findings[-1].message}; {findings[-1].remedy}")


# ---- the config -------------------------------------------------------------------------

def resolve_config(preset_name: str = "default", config_file: Path | None = None,
                   overrides: Mapping | None = None, init_from: str | None = None) -> Config:
    """The config a run resolves to (not validated: Config.validate): the preset, the keys the
    `config_file` sets over it, then `overrides` ({"section": {"key": value}}: flags, --set
    items); with `init_from`, the source's settings and the fine-tuning defaults under the
    user's (`run_overrides`)."""
    cfg = preset(preset_name)
    user_file: dict = {}
    if config_file is not None:  # only the keys the file sets override the preset
        Config.from_yaml(config_file)  # validates the file's keys and types, naming it
        user_file = yaml.safe_load(Path(config_file).read_text()) or {}
        cfg = cfg.merged(user_file)
    cfg = cfg.merged(run_overrides(overrides or {}, init_from, config_file, preset_name))
    if cfg.model.name != "pretrained" or init_from:  # --init-from: the source's encoder
        return cfg
    if preset_name == "default":  # a pretrained encoder's recipe under the user's values
        cfg = cfg.merged(under_user(PRETRAINED_RECIPE, overrides or {}, user_file))
    return with_encoder(cfg)


def run_overrides(overrides: Mapping, init_from: str | None = None,
                  config_file: Path | None = None, preset_name: str = "default") -> dict:
    """`overrides`, plus with `init_from` train.init_from and, under them, the source model's
    settings and the fine-tuning defaults (asrlab.finetune.source_defaults)."""
    o = {s: dict(v) if isinstance(v, dict) else v for s, v in overrides.items()}
    if not init_from:
        return o
    o.setdefault("train", {})["init_from"] = str(init_from)
    return source_defaults(init_from, o, config_file, preset_name)


# ---- the data ---------------------------------------------------------------------------

@dataclass
class DataScan:
    """Both splits as the run sees them."""
    train: ScanResult
    val: ScanResult
    tokenizer: Tokenizer
    stats: FeatureStats | None  # the CMVN statistics the model is normalized with
    source: Checkpoint | None = None  # the --init-from model, checked against the run
    notes: list[str] = field(default_factory=list)  # fine-tuning: where the statistics came from


def scan_data(cfg: Config, train_path, val_path, *, resume: Checkpoint | None = None,
              skip_bad_lines: bool = False, keep_feats: bool = False,
              device: str | torch.device = "cpu") -> DataScan:
    """Read both manifests and all audio once. A resumed run keeps its checkpoint's vocabulary
    and statistics; --init-from (cfg.train.init_from) checks the source model and keeps its
    vocabulary when it spells every training transcript. Bad manifest lines refuse the run
    unless `skip_bad_lines`; skipped, they count as read and skipped like unusable audio.
    `keep_feats`: keep the 1.0x training log-mels (the feature cache's seed)."""
    source = load_source(cfg, device) if cfg.train.init_from and resume is None else None
    known = resume.tokenizer if resume else init_tokenizer(cfg, source, train_path) if source else None
    train = read_split(train_path, cfg, skip_bad_lines)
    val = read_split(val_path, cfg, skip_bad_lines)
    if train.removed:
        log.info("text normalization removed from training transcripts: %s",
                 ", ".join(f"{ch!r} x{n}" for ch, n in list(train.removed.items())[:20]))
    tokenizer = known or make_tokenizer(cfg, train_path, train, val)
    tr = scan_split("train", train.utterances, cfg.features.sample_rate, tokenizer,
                    front_end(cfg.features), keep_feats=keep_feats, problems=train.problems,
                    duration_bounds=(cfg.train.min_duration, cfg.train.max_duration))
    va = scan_split("val", val.utterances, cfg.features.sample_rate, tokenizer,
                    problems=val.problems)
    stats, notes = model_stats(cfg, tr, resume, source, train_path)
    return DataScan(tr, va, tokenizer, stats, source, notes)


def load_source(cfg: Config, device) -> Checkpoint:
    try:
        return load_init(cfg, device)
    except InitFromError as e:
        raise TrainingRefused(str(e)) from None


def read_split(path, cfg: Config, skip_bad_lines: bool) -> Transcripts:
    """A manifest's utterances (text normalized by the model's rules) and its bad lines. Bad
    lines refuse training (all of them listed) unless skipped; skipped, they are listed in
    skipped.jsonl like any other item."""
    read = read_transcripts(path, cfg.text, strict=False)
    if read.problems and not skip_bad_lines:
        raise TrainingRefused(f"{ManifestError(path, read.problems)}\nFix these lines, or pass "
                              "--force to skip them (they are then listed in skipped.jsonl).")
    return read


def make_tokenizer(cfg: Config, train_path, train: Transcripts, val: Transcripts) -> Tokenizer:
    """The vocabulary of the training transcripts; NoTrainingText when there are none."""
    texts = [u.text for u in train.utterances if u.text.strip()]
    if not texts:
        bad = [bad_manifest_finding(split, [problem_skipped(split, p) for p in read.problems])
               for split, read in (("train", train), ("val", val)) if read.problems]
        raise NoTrainingText(bad + [no_transcript_finding(train_path, train.utterances)])
    return build_tokenizer(cfg.tokenizer, texts, cfg.vocab_size)


def model_stats(cfg: Config, tr: ScanResult, resume: Checkpoint | None,
                source: Checkpoint | None, train_path) -> tuple[FeatureStats | None, list[str]]:
    """The CMVN statistics the model is normalized with, and (fine-tuning) a note saying whose."""
    if resume is not None:
        return resume.stats, []  # the statistics the model was trained with
    stats = tr.stats.stats() if tr.used else None
    if source is None:
        return stats, []
    if cfg.train.recompute_cmvn:
        return stats, [f"feature statistics (CMVN) recomputed on {train_path}"]
    return source.stats, [f"feature statistics (CMVN) kept from {source.path} "
                          f"(--recompute-cmvn to estimate them on this training set)"]


def require_usable(data: DataScan, train_path, val_path, run_dir: Path) -> None:
    for scan, path in ((data.train, train_path), (data.val, val_path)):
        if not scan.used:
            hint = ""
            if scan.skipped and all("file not found" in s.reason for s in scan.skipped):
                hint = (f"; every audio file is missing: relative paths resolve from the "
                        f"manifest's folder {Path(path).resolve().parent}; was the manifest "
                        "moved without its audio?")
            raise TrainingRefused(f"{path}: no usable {'training' if scan is data.train else 'validation'} "
                                  f"utterance ({len(scan.skipped)} skipped; reasons in "
                                  f"{run_dir / 'skipped.jsonl'}){hint}")


# ---- the findings -----------------------------------------------------------------------

def check_data(cfg: Config, data: DataScan, thresholds: DataThresholds | None = None
               ) -> CheckReport:
    """The doctor's data checks on a scan, most likely cause first; stats per split, lengths,
    features and the vocabulary size."""
    pipeline = FeaturePipeline(cfg.features, data.stats)
    report = run_checks(data.train, data.val, cfg, data.tokenizer, pipeline, thresholds)
    report.findings = rank(report.findings)
    report.stats["vocabulary"] = data.tokenizer.vocab_size
    return report


def check_manifests(train_path, val_path, cfg: Config, thresholds: DataThresholds | None = None
                    ) -> CheckReport:
    """`asrlab check`: what `asrlab train` would check, without training. Bad manifest lines
    are skipped and reported (BAD_MANIFEST) instead of refused."""
    try:
        data = scan_data(cfg, train_path, val_path, skip_bad_lines=True)
    except NoTrainingText as e:
        return CheckReport(rank(e.findings), {})
    return check_data(cfg, data, thresholds)


def precheck(run_dir: Path, cfg: Config, data: DataScan, force: bool, write: bool = True
             ) -> list[Finding]:
    """Train's pre-flight: the findings into RUN/check.json and the log; refuse to train on
    errors unless forced."""
    findings = check_data(cfg, data).findings  # ranked, errors first
    if write:
        write_findings_json(run_dir / "check.json", findings)
    for f in findings:
        log.log(f.log_level, f"{f}\n    evidence: {evidence_line(f)}")
    if has_errors(findings) and not force:
        lines = "\n".join(f"  {f}\n    evidence: {evidence_line(f)}"
                          for f in findings if f.severity == "error")
        raise TrainingRefused(f"pre-training checks found errors (all offenders in "
                              f"{run_dir}/check.json):\n{lines}\nFix the data, or pass --force "
                              f"to train anyway.")
    return findings
