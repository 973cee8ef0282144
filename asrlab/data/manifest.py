"""Manifests: JSON Lines, one utterance a line (NeMo's convention).

    {"audio_filepath": "wavs/a.wav", "duration": 2.31, "text": "hello world", ...}

Relative paths resolve from the manifest's folder; extra keys are kept in `Utterance.extra`.
Reading validates every line and reports each bad one with its line number, so a user fixes a
manifest in one pass instead of one error at a time.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Iterable, Sequence, TypeVar

from asrlab.data.text import TextNormalizer

REQUIRED = ("audio_filepath", "duration", "text")


@dataclass(frozen=True)
class Utterance:
    id: str
    audio_filepath: Path  # absolute
    duration: float  # seconds
    text: str
    extra: dict = field(default_factory=dict, compare=False)
    source: str = ""  # "manifest.jsonl:LINE", for messages
    # the transcript as the manifest has it, once `text` holds the model's normalized text
    # (asrlab.data.text.read_transcripts); None: `text` is the manifest's own
    raw_text: str | None = field(default=None, compare=False)

    @property
    def original_text(self) -> str:
        """The transcript as written in the manifest (for messages and evidence)."""
        return self.text if self.raw_text is None else self.raw_text

    @property
    def offset(self) -> float:
        """Start of the utterance in its file, seconds (Kaldi segments); 0 for whole files."""
        return float(self.extra.get("offset", 0.0))

    @property
    def span(self) -> float | None:
        """Seconds to read from `offset`: the duration for a segment, None (the whole file)."""
        return self.duration if "offset" in self.extra else None

    def to_json(self, relative_to: Path | None = None) -> dict:
        path = self.audio_filepath
        if relative_to is not None:
            try:
                path = Path(os.path.relpath(path, relative_to))
            except ValueError:  # different drive (Windows)
                pass
        return {"audio_filepath": str(path), "duration": round(self.duration, 4), "text": self.text,
                **self.extra}


@dataclass(frozen=True)
class Skipped:
    """One item left out, and why: the one record for everything not used (nothing is dropped
    silently). A bad manifest line (`read_manifest`: `line` set), an utterance a split leaves
    out (asrlab.data.scan -> RUN/skipped.jsonl, with `split`, and `text` for a text reason), a
    corpus item `asrlab prepare` does not write (M.skipped.jsonl), audio that evaluate or
    tune-lm cannot read (their reports). `to_dict` has split (when set), id, source, reason and
    text (when set): the keys each of those files had."""
    id: str
    source: str  # where: "manifest.jsonl:LINE", or a corpus file (and line)
    reason: str
    split: str | None = None
    text: str | None = None  # the manifest's transcript, when the reason is about the text
    line: int | None = None  # the manifest line number of a bad manifest line

    def to_dict(self) -> dict:
        d = {} if self.split is None else {"split": self.split}
        d.update(id=self.id, source=self.source, reason=self.reason)
        return d if self.text is None else {**d, "text": self.text}

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


def write_skipped(path: str | Path, items: Iterable[Skipped]) -> Path:
    """The one writer of skipped-item lists (RUN/skipped.jsonl, M.skipped.jsonl): a JSON line
    of `to_dict()` per item, UTF-8, written to PATH.tmp and renamed (a reader never sees half)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for s in items:
            f.write(json.dumps(s.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def bad_line(path: Path, line: int, message: str) -> Skipped:
    """A manifest line that cannot be read, as a Skipped: str() is "PATH:LINE: message"."""
    return Skipped(f"{path.name}:{line}", f"{path}:{line}", message, line=line)


class ManifestError(ValueError):
    """A manifest has bad lines; `problems` lists every one of them."""

    def __init__(self, path: Path, problems: list[Skipped]):
        self.path = Path(path)
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(
            f"{path}: {len(problems)} bad line(s); each line must be a JSON object with "
            f"audio_filepath (string), duration (seconds, > 0) and text (string):\n{shown}{more}")


def parse_line(raw: str, lineno: int, path: Path) -> Utterance:
    """Parse one manifest line; raises ValueError with a readable reason."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise ValueError(f"missing key(s) {', '.join(missing)}")
    audio, duration, text = obj["audio_filepath"], obj["duration"], obj["text"]
    if not isinstance(audio, str) or not audio:
        raise ValueError("audio_filepath must be a non-empty string")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) \
            or not math.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    offset = obj.get("offset", 0.0)
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) \
            or not math.isfinite(offset) or offset < 0:
        raise ValueError(f"offset must be a number of seconds >= 0, got {offset!r}")
    audio_path = Path(audio)
    if not audio_path.is_absolute():
        audio_path = (path.parent / audio_path).resolve()
    extra = {k: v for k, v in obj.items() if k not in REQUIRED}
    utt_id = str(extra.get("id") or audio_path.stem)
    return Utterance(utt_id, audio_path, float(duration), text, extra, f"{path}:{lineno}")


def read_manifest(path: str | Path, strict: bool = True) -> tuple[list[Utterance], list[Skipped]]:
    """Read every line of a manifest.

    strict=True raises ManifestError naming all bad lines; strict=False returns them instead so
    the caller can skip and list them. Blank lines are ignored. Duplicate ids get a `#N` suffix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    utts: list[Utterance] = []
    problems: list[Skipped] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # -sig: a BOM is no error
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                utt = parse_line(raw, lineno, path)
            except ValueError as e:
                problems.append(bad_line(path, lineno, str(e)))
                continue
            if utt.id in seen:
                seen[utt.id] += 1
                utt = Utterance(f"{utt.id}#{seen[utt.id]}", utt.audio_filepath, utt.duration,
                                utt.text, utt.extra, utt.source)
            else:
                seen[utt.id] = 0
            utts.append(utt)
    if strict and problems:
        raise ManifestError(path, problems)
    return utts, problems


def load_manifest(path: str | Path) -> list[Utterance]:
    """Read a manifest that must be clean (raises ManifestError otherwise)."""
    return read_manifest(path, strict=True)[0]


def write_manifest(path: str | Path, utterances: Iterable[Utterance | dict]) -> Path:
    """Write utterances as JSON Lines with paths relative to the manifest's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for u in utterances:
            obj = u.to_json(base) if isinstance(u, Utterance) else dict(u)
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


# ---- transcripts: a manifest as a model sees it ---------------------------------------------

U = TypeVar("U")


def normalize_utterances(utts: Sequence[U], normalizer: TextNormalizer
                         ) -> tuple[list[U], dict[str, int]]:
    """Utterances (any dataclass with `text`, e.g. manifest.Utterance) with normalized text,
    in the same order, and {character: times removed}. A dataclass with a `raw_text` field
    keeps the text it had before (the first normalization's input: applying this twice does
    not lose the manifest's text)."""
    texts, removed = normalizer.normalize_counted([u.text for u in utts])
    out = []
    for u, t in zip(utts, texts):
        keep_raw = "raw_text" in {f.name for f in fields(u)} and u.raw_text is None
        out.append(replace(u, text=t, raw_text=u.text) if keep_raw else replace(u, text=t))
    return out, removed


@dataclass
class Transcripts:
    """A manifest as a model sees it: utterances whose `text` is normalized (the manifest's
    own text in `raw_text`), the manifest's bad lines, and {character: times removed}."""
    utterances: list = field(default_factory=list)  # manifest.Utterance
    problems: list = field(default_factory=list)  # manifest.Skipped (bad lines)
    removed: dict[str, int] = field(default_factory=dict)

    def emptied(self) -> list:
        """Utterances with a transcript that normalizes to nothing (e.g. "..." or "?!")."""
        return [u for u in self.utterances if not u.text and (u.raw_text or "").strip()]


def read_transcripts(path: str | Path, normalizer: TextNormalizer,
                     strict: bool = True) -> Transcripts:
    """THE way asrlab reads transcripts: a manifest's utterances with the model's text rules
    applied. Every verb that reads transcripts (check, train, evaluate, diagnose, tune-lm)
    calls this with the normalizer of the model it works for: the
    checkpoint's (`Recognizer.text_normalizer`, from the ONNX metadata for an .onnx) when there
    is a model, the config's otherwise. `asrlab lm build` applies the same normalizer to its
    text (`asrlab.decode.lm.read_sentences`).

    strict=True raises manifest.ManifestError naming every bad line; strict=False returns them
    in `problems` for the caller to skip and list."""
    utts, problems = read_manifest(path, strict=strict)
    utts, removed = normalize_utterances(utts, normalizer)
    return Transcripts(utts, problems, removed)
