"""Corpus layouts -> asrlab manifests (JSON Lines), with every skipped item listed.

    asrlab prepare librispeech LibriSpeech/dev-clean --out dev.jsonl
    asrlab prepare commonvoice cv/en/train.tsv --out cv_train.jsonl
    asrlab prepare kaldi data/train --out train.jsonl
    asrlab prepare csv metadata.csv --audio-column file --text-column transcript --out m.jsonl
    asrlab prepare fsdd recordings --speakers george,jackson --out fsdd.jsonl

Each reader turns its layout into `Candidate`s (id, audio path, text, where it was found) or
`Skipped`s (what was wrong with a line of the source). Then one shared step checks every
candidate's audio header with soundfile (duration, readability) and writes the manifest, plus
`M.skipped.jsonl` beside it with id, source and reason for each item not written, so that
`read == written + skipped` always holds and nothing disappears without a trace.

Transcripts are written as found (only stripped): normalization belongs to the model
(`asrlab.data.text.TextNormalizer`, saved in the checkpoint), so one manifest serves any model.
Audio paths are written relative to the manifest's folder when the audio lies under it, absolute
otherwise (a relative path that climbs out with `..` breaks when the manifest moves).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import soundfile as sf

from asrlab.audio import UNKNOWN_LENGTH, AudioError, audio_duration
from asrlab.data.manifest import Skipped, write_manifest, write_skipped

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SEGMENT_TOLERANCE_S = 0.05  # a segment may end this far past the end of its recording


# ---- types ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """One utterance a reader found; its audio is not checked yet."""
    id: str
    audio: Path  # absolute
    text: str
    source: str  # where it was found, "file:line" or a file
    speaker: str | None = None
    offset: float | None = None  # seconds into the recording (Kaldi segments)
    duration: float | None = None  # known length: a segment, or a CSV duration column


@dataclass
class PrepareResult:
    manifest: Path
    skipped_path: Path
    written: int
    skipped: list[Skipped]
    not_selected: int = 0  # items filtered out on purpose (e.g. other FSDD speakers)
    notes: list[str] = field(default_factory=list)

    @property
    def read(self) -> int:
        return self.written + len(self.skipped)

    def summary(self) -> str:
        line = f"read {self.read}, written {self.written}, skipped {len(self.skipped)}"
        if self.not_selected:
            line += f" ({self.not_selected} not selected)"
        return line


@dataclass(frozen=True)
class PrepareOptions:
    speakers: tuple[str, ...] | None = None  # keep only these speakers (any layout with speakers)
    exclude_speakers: tuple[str, ...] | None = None  # leave these speakers out
    audio_column: str | None = None  # csv
    text_column: str | None = None  # csv
    duration_column: str | None = None  # csv: trust this column instead of reading headers
    delimiter: str | None = None  # csv: None sniffs it
    root: Path | None = None  # resolve relative audio paths from here
    split: str = "train"  # commonvoice: SRC/<split>.tsv when SRC is a folder


Item = Candidate | Skipped


# ---- shared helpers ---------------------------------------------------------------------

def mp3_supported() -> bool:
    """libsndfile decodes MP3 from version 1.1 on; older builds cannot."""
    return "MP3" in sf.available_formats()


def mp3_unsupported_reason(path: Path) -> str:
    return (f"{path}: MP3 cannot be decoded by this soundfile (libsndfile "
            f"{sf.__libsndfile_version__}; MP3 needs >= 1.1): upgrade with "
            "`pip install -U soundfile`, or convert the clips to WAV/FLAC "
            "(ffmpeg -i clip.mp3 -ar 16000 clip.wav)")


def resolve(path_text: str, root: Path) -> Path:
    p = Path(path_text).expanduser()
    return p if p.is_absolute() else (root / p).resolve()


def _split_key(line: str) -> tuple[str, str]:
    """'KEY rest of line' -> (KEY, rest); Kaldi and LibriSpeech files use this layout."""
    parts = line.strip().split(maxsplit=1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their numbers; a BOM or CRLF line ends (Windows editors) are fine."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield lineno, line.rstrip("\r\n")


def _keyed_table(path: Path) -> tuple[dict[str, tuple[str, str]], list[Skipped]]:
    """A Kaldi-style 'KEY VALUE' file -> ({key: (value, source)}, duplicate keys as skipped)."""
    table, dups = {}, []
    for lineno, line in _read_lines(path):
        key, value = _split_key(line)
        source = f"{path}:{lineno}"
        if key in table:
            dups.append(Skipped(key, source, f"duplicate key in {path.name} "
                                f"(first at {table[key][1]}; the first is used)"))
        else:
            table[key] = (value, source)
    return table, dups


# ---- readers ----------------------------------------------------------------------------

def read_librispeech(src: Path, opts: PrepareOptions) -> Iterator[Item]:
    """SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt lines 'SPEAKER-CHAPTER-UTT TEXT', audio
    SPEAKER-CHAPTER-UTT.flac beside it. Audio with no transcript line is listed as skipped."""
    transcripts = sorted(src.rglob("*.trans.txt"))
    if not transcripts:
        raise FileNotFoundError(f"{src}: no *.trans.txt found; expected the LibriSpeech "
                                "layout SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt and "
                                "SPEAKER-CHAPTER-UTT.flac")
    for trans in transcripts:
        seen = set()
        for lineno, line in _read_lines(trans):
            uid, text = _split_key(line)
            seen.add(uid)
            audio = trans.parent / f"{uid}.flac"
            if not audio.exists() and (trans.parent / f"{uid}.wav").exists():
                audio = trans.parent / f"{uid}.wav"
            yield Candidate(uid, audio.resolve(), text, f"{trans}:{lineno}", uid.split("-")[0])
        for audio in sorted(trans.parent.glob("*.flac")):
            if audio.stem not in seen:
                yield Skipped(audio.stem, str(audio), f"no transcript line in {trans.name}")


def read_commonvoice(src: Path, opts: PrepareOptions) -> Iterator[Item]:
    """A Common Voice TSV (columns path, sentence, client_id...), clips in clips/ beside it."""
    tsv = src if src.is_file() else src / f"{opts.split}.tsv"
    if not tsv.is_file():
        raise FileNotFoundError(f"{tsv}: no such TSV; give the .tsv file (e.g. cv/en/train.tsv) "
                                "or its folder with --split NAME")
    clips = opts.root or tsv.parent / "clips"
    with open(tsv, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        _require_columns(tsv, reader.fieldnames, ["path", "sentence"])
        for lineno, row in enumerate(reader, start=2):
            source = f"{tsv}:{lineno}"
            name = row.get("path")
            if not name:
                yield Skipped(f"line{lineno}", source, "empty 'path' field")
                continue
            if None in row.values() or None in row:
                yield Skipped(Path(name).stem, source,
                              "row has a different number of fields than the header")
                continue
            yield Candidate(Path(name).stem, resolve(name, clips), row["sentence"], source,
                            row.get("client_id") or None)


def read_kaldi(src: Path, opts: PrepareOptions) -> Iterator[Item]:
    """A Kaldi data folder: wav.scp (plain paths only) + text, optional segments and utt2spk.
    Relative paths resolve from --root (default: the current folder, Kaldi's recipe folder)."""
    for name in ("wav.scp", "text"):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src}: no {name}; a Kaldi data folder needs wav.scp and text")
    root = opts.root or Path.cwd()
    wavs, bad_wavs, wav_dups = _kaldi_wav_scp(src / "wav.scp", root)
    texts, text_dups = _keyed_table(src / "text")
    yield from wav_dups + text_dups
    spk = {k: v for k, (v, _) in _keyed_table(src / "utt2spk")[0].items()} \
        if (src / "utt2spk").is_file() else {}
    if (src / "segments").is_file():
        yield from _kaldi_segments(src / "segments", wavs, bad_wavs, texts, spk)
        return
    for rec, (text, source) in texts.items():
        if rec in bad_wavs:
            yield Skipped(rec, bad_wavs[rec][0], bad_wavs[rec][1])
        elif rec not in wavs:
            yield Skipped(rec, source, "no wav.scp entry for this utterance")
        else:
            yield Candidate(rec, wavs[rec][0], text, source, spk.get(rec))
    for rec, (path, source) in wavs.items():
        if rec not in texts:
            yield Skipped(rec, source, "no transcript for this recording in text")


def _kaldi_wav_scp(path: Path, root: Path) -> tuple[dict, dict, list[Skipped]]:
    """-> ({rec: (audio, source)}, {rec: (source, reason)}, duplicates); pipes are rejected."""
    wavs, bad = {}, {}
    table, dups = _keyed_table(path)
    for rec, (value, source) in table.items():
        if "|" in value:
            bad[rec] = (source, f"wav.scp entry is a command pipe ({value!r}); asrlab reads "
                        "plain audio files only: run the command once to write a WAV "
                        "(e.g. `sph2pipe -f wav x.sph x.wav`) and list that file instead")
        elif not value:
            bad[rec] = (source, "wav.scp entry has no path")
        else:
            wavs[rec] = (resolve(value, root), source)
    return wavs, bad, dups


def _kaldi_segments(path: Path, wavs: dict, bad_wavs: dict, texts: dict, spk: dict
                    ) -> Iterator[Item]:
    seen = set()
    for lineno, line in _read_lines(path):
        source = f"{path}:{lineno}"
        fields = line.split()
        seg = fields[0]
        seen.add(seg)
        try:
            rec, start, end = fields[1], float(fields[2]), float(fields[3])
        except (IndexError, ValueError):
            yield Skipped(seg, source, "segments line must be 'SEGMENT RECORDING START END'")
            continue
        if seg not in texts:
            yield Skipped(seg, source, "no transcript for this segment in text")
        elif rec in bad_wavs:
            yield Skipped(seg, bad_wavs[rec][0], bad_wavs[rec][1])
        elif rec not in wavs:
            yield Skipped(seg, source, f"recording {rec!r} has no wav.scp entry")
        elif not (0 <= start < end):
            yield Skipped(seg, source, f"segment times must satisfy 0 <= start < end, "
                          f"got {start} {end}")
        else:
            yield Candidate(seg, wavs[rec][0], texts[seg][0], source, spk.get(seg),
                            offset=start, duration=end - start)
    for seg, (_, source) in texts.items():
        if seg not in seen:
            yield Skipped(seg, source, "no segments line for this utterance")


def read_csv(src: Path, opts: PrepareOptions) -> Iterator[Item]:
    """Any delimited table: --audio-column and --text-column name the columns."""
    if not opts.audio_column or not opts.text_column:
        raise ValueError("csv needs --audio-column and --text-column (the header names)")
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file")
    root = opts.root or src.parent
    with open(src, encoding="utf-8-sig", errors="replace", newline="") as f:
        delimiter = opts.delimiter or sniff_delimiter(src, f.read(64 * 1024))
        f.seek(0)
        reader = csv.DictReader(f, delimiter=delimiter)
        wanted = [c for c in (opts.audio_column, opts.text_column, opts.duration_column) if c]
        _require_columns(src, reader.fieldnames, wanted, delimiter)
        for row in reader:
            yield _csv_row(row, f"{src}:{reader.line_num}", root, opts)


def _csv_row(row: dict, source: str, root: Path, opts: PrepareOptions) -> Item:
    name = (row.get(opts.audio_column) or "").strip()
    if not name:
        return Skipped(source.rsplit(":", 1)[-1], source, f"empty {opts.audio_column!r} field")
    uid = Path(name).stem
    text = row.get(opts.text_column)
    if text is None:
        return Skipped(uid, source, f"row has no {opts.text_column!r} field")
    duration = None
    if opts.duration_column:
        try:
            duration = float(row.get(opts.duration_column) or "")
        except ValueError:
            return Skipped(uid, source, f"{opts.duration_column!r} is not a number: "
                           f"{row.get(opts.duration_column)!r}")
        if not duration > 0:
            return Skipped(uid, source, f"{opts.duration_column!r} must be > 0, got {duration}")
    return Candidate(uid, resolve(name, root), text, source, duration=duration)


def sniff_delimiter(path: Path, sample: str) -> str:
    """The delimiter of a table: csv.Sniffer over , tab ; |, else by extension."""
    try:
        return csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",\t;|").delimiter
    except csv.Error:
        return "\t" if path.suffix.lower() == ".tsv" else ","


def _require_columns(path: Path, header: list[str] | None, wanted: list[str],
                     delimiter: str = "\t") -> None:
    missing = [c for c in wanted if c not in (header or [])]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing} in the header {header} "
                         f"(delimiter {delimiter!r}; set it with --delimiter if it is wrong)")


FSDD_NAME = re.compile(r"^(\d)_([A-Za-z0-9]+)_(\d+)$")


def read_fsdd(src: Path, opts: PrepareOptions) -> Iterator[Item]:
    """Free Spoken Digit Dataset: {digit}_{speaker}_{index}.wav; text is the digit's word."""
    files = sorted(src.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"{src}: no .wav files (expected FSDD's recordings/ folder)")
    present = {m.group(2) for f in files if (m := FSDD_NAME.match(f.stem))}
    if opts.speakers:
        unknown = sorted(set(opts.speakers) - present)
        if unknown:
            raise ValueError(f"--speakers: no files of {unknown} in {src}; "
                             f"speakers present: {sorted(present)}")
    for path in files:
        m = FSDD_NAME.match(path.stem)
        if m is None:
            yield Skipped(path.stem, str(path),
                          "file name is not {digit}_{speaker}_{index}.wav")
        elif opts.speakers and m.group(2) not in opts.speakers:
            yield NotSelected(path.stem)
        else:
            yield Candidate(path.stem, path.resolve(), DIGIT_WORDS[int(m.group(1))], str(path),
                            m.group(2))


@dataclass(frozen=True)
class NotSelected:
    """An item left out on purpose (an option filtered it); counted, not an error."""
    id: str


@dataclass(frozen=True)
class Reader:
    """A corpus layout: its reader, what SRC is, and where relative audio paths resolve from
    without --root (None: the layout has none); `asrlab prepare -h` says both."""
    read: Callable[[Path, PrepareOptions], Iterable[Item | NotSelected]]
    src: str
    root: str | None = None


READERS: dict[str, Reader] = {
    "librispeech": Reader(read_librispeech, "a folder such as LibriSpeech/dev-clean"),
    "commonvoice": Reader(read_commonvoice, "a .tsv (or its folder, with --split)",
                          "clips/ beside the TSV"),
    "kaldi": Reader(read_kaldi, "a data folder (wav.scp, text, [segments, utt2spk])",
                    "the current folder"),
    "csv": Reader(read_csv, "the table", "the table's folder"),
    "fsdd": Reader(read_fsdd, "recordings/"),
}


# ---- audio check and writing ------------------------------------------------------------

def probe(c: Candidate) -> tuple[float | None, str | None]:
    """(duration in seconds, None) or (None, why the audio is unusable). Reads headers only."""
    if not c.audio.is_file():
        return None, f"audio file not found: {c.audio}"
    if c.duration is not None and c.offset is None:
        return c.duration, None  # a trusted duration column: no header read
    if c.audio.suffix.lower() == ".mp3" and not mp3_supported():
        return None, mp3_unsupported_reason(c.audio)
    try:
        info = sf.info(str(c.audio))
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        return None, f"{c.audio}: cannot read the audio header ({e})"
    if info.frames <= 0 or info.samplerate <= 0:
        return None, f"{c.audio}: empty audio (0 samples)"
    length = info.frames / info.samplerate
    if info.frames >= UNKNOWN_LENGTH:  # no length in the header (streamed FLAC): count it
        try:
            length = audio_duration(c.audio)
        except AudioError as e:
            return None, str(e)
    if c.offset is None:
        return length, None
    if c.offset + c.duration > length + SEGMENT_TOLERANCE_S:
        return None, (f"segment {c.offset:.2f}-{c.offset + c.duration:.2f}s ends after the end "
                      f"of {c.audio.name} ({length:.2f}s)")
    return c.duration, None


def manifest_row(c: Candidate, duration: float, base: Path) -> dict:
    row = {"audio_filepath": _path_for(c.audio, base), "duration": round(duration, 4),
           "text": c.text.strip(), "id": c.id}
    if c.speaker:
        row["speaker"] = c.speaker
    if c.offset is not None:
        row["offset"] = round(c.offset, 4)
    return row


def _path_for(audio: Path, base: Path) -> str:
    """Relative to the manifest's folder when inside it, else absolute."""
    try:
        return audio.relative_to(base).as_posix()
    except ValueError:
        return str(audio)


def skipped_path_for(out: Path) -> Path:
    name = out.name[:-len(".jsonl")] if out.name.endswith(".jsonl") else out.stem
    return out.with_name(f"{name}.skipped.jsonl")


def prepare(fmt: str, src: str | Path, out: str | Path, opts: PrepareOptions | None = None
            ) -> PrepareResult:
    """Read corpus `src` in layout `fmt`, write manifest `out` and `out`.skipped.jsonl."""
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}: use one of {sorted(READERS)}")
    src, out, opts = Path(src), Path(out), opts or PrepareOptions()
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    base = out.parent.resolve()
    rows, skipped, not_selected, first_seen = [], [], 0, {}
    seen_speakers: set[str] = set()
    for item in READERS[fmt].read(src, opts):
        if isinstance(item, NotSelected):
            not_selected += 1
            continue
        if isinstance(item, Skipped):
            skipped.append(item)
            continue
        if item.speaker:
            seen_speakers.add(item.speaker)
        if not speaker_selected(item, opts):
            not_selected += 1
            continue
        reason = _text_problem(item, first_seen)
        duration = None
        if reason is None:
            duration, reason = probe(item)
        if reason is not None:
            skipped.append(Skipped(item.id, item.source, reason))
            continue
        first_seen[item.id] = item.source
        rows.append(manifest_row(item, duration, base))
    check_speakers(fmt, src, opts, seen_speakers)
    write_manifest(out, rows)
    skipped_path = skipped_path_for(out)
    write_skipped(skipped_path, skipped)
    notes = [] if rows else [f"no utterance written: see {skipped_path} for the reasons"]
    return PrepareResult(out, skipped_path, len(rows), skipped, not_selected, notes)


def speaker_selected(c: Candidate, opts: PrepareOptions) -> bool:
    """--speakers keeps only those speakers, --exclude-speakers leaves those out."""
    if opts.speakers is not None and c.speaker not in opts.speakers:
        return False
    return not (opts.exclude_speakers and c.speaker in opts.exclude_speakers)


def check_speakers(fmt: str, src: Path, opts: PrepareOptions, seen: set[str]) -> None:
    """A speaker named in --speakers / --exclude-speakers that the corpus lacks is a typo:
    refuse (before writing anything) and list the speakers there are."""
    named = set(opts.speakers or ()) | set(opts.exclude_speakers or ())
    if not named:
        return
    if not seen:
        raise ValueError(f"--speakers/--exclude-speakers: {fmt} at {src} gives no speaker for "
                         "its utterances (LibriSpeech: the folder names; Common Voice: "
                         "client_id; Kaldi: utt2spk; FSDD: the file names)")
    unknown = sorted(named - seen)
    if unknown:
        shown = sorted(seen)
        raise ValueError(f"--speakers/--exclude-speakers: no utterance of {unknown} in {src}; "
                         f"speakers present: {shown[:30]}" + (" ..." if len(shown) > 30 else ""))


def _text_problem(c: Candidate, first_seen: dict[str, str]) -> str | None:
    if c.id in first_seen:
        return f"duplicate id {c.id!r} (first at {first_seen[c.id]})"
    if not c.text.strip():
        return "empty transcript"
    return None
