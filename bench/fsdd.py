"""Real-speech benchmark on the Free Spoken Digit Dataset: speaker-independent digit recognition.

For each held-out speaker: train on the other three (their FSDD test indices 0-4 held out for
validation), then measure WER on every file of the held-out speaker, and on digit strings made
by joining 2-5 of that speaker's recordings with short silences (the model also trains on such
strings from its own speakers, so it learns word boundaries).

    python bench/fsdd.py --out /tmp/fsdd_bench --minutes 4 --threads 1
    python bench/fsdd.py --out /tmp/fsdd_bench --held-out george   # one speaker only
    python bench/fsdd.py --out /tmp/fsdd_tts --tts 1500 --utterance-mean --speed-perturb
    python bench/fsdd.py --out /tmp/fsdd_noise --tts 1500 --utterance-mean --speed-perturb \
        --set augment.noise_prob=0.5 --set augment.noise_snr_db=[5,25]   # docs/benchmarks.md
    python bench/fsdd.py --out /tmp/fsdd_whisper --encoder whisper-tiny.en --minutes 0 \
        --epochs 12 --threads 2   # a pretrained encoder (asrlab train --encoder)
    python bench/fsdd.py --out /tmp/fsdd_pad --encoder whisper-tiny.en --layers-trained 2 \
        --minutes 0 --epochs 15 --set features.pad_end_s=0.4   # docs/benchmarks.md's best

`--tts N` adds N digit strings spoken by 64 synthetic voices (`asrlab synth --text`, espeak-ng)
to every training set: three real speakers are too few to learn what does not depend on the
speaker. `--tts-flite M` adds M more from flite's and festival's voices. `--utterance-mean`
removes each utterance's mean log-mel (every FSDD speaker recorded on their own microphone),
`--speed-perturb` turns the default 0.9/1.0/1.1 perturbation back on,
`--vtlp LOW,HIGH` warps each training utterance's frequency axis (augment.vtlp) so that three
speakers sound like many vocal-tract lengths. Noise augmentation (`--set augment.noise_prob=0.5`)
matters most: every FSDD speaker recorded over a different noise floor (the "dynamic range"
column). bench/fsdd_reference.py scores the same held-out files with PocketSphinx.

Writes OUT/results.json and OUT/results.md (a markdown table), and prints the table.
The corpus is made with `asrlab prepare fsdd RECORDINGS --out OUT/all.jsonl`; asrlab.audio reads
the files at the features' rate: FSDD's own 8 kHz by default, 16 kHz with --wideband.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from bench_results import write_results  # bench/bench_results.py, beside this script

from asrlab.audio import load_audio
from asrlab.data.prepare import DIGIT_WORDS
from asrlab.decode import DecoderOptions

RECORDINGS = Path("/work/shared/data/fsdd/recordings")
SPEAKERS = ("george", "jackson", "lucas", "nicolas")
VAL_INDICES = range(5)  # FSDD's own test split: indices 0-4 of every digit and speaker
SR = 8000  # joined strings are written at FSDD's own rate (the model's loader resamples)
# A smaller, faster model than the default and smaller batches: FSDD has a 10-word vocabulary,
# and on one CPU thread a 4-minute budget is about updates, not capacity. Speed perturbation is
# off for the same reason: in a trial it left seen-speaker val CER at 28% after 750 updates,
# against 10% without it (SpecAugment stays on).
FSDD_SETTINGS = ["model.hidden=160", "model.layers=2", "model.conv_channels=32",
                 "train.batch_seconds=20", "train.lr=0.003", "train.warmup_epochs=0.5",
                 "augment.speed_perturb=[1.0]"]
# FSDD is 8 kHz telephone-band speech: features at 8 kHz (40 mel bins up to 3.8 kHz) instead of
# upsampling to 16 kHz, where a quarter of the default 80 bins would hold only resampler noise.
NARROWBAND = ["features.sample_rate=8000", "features.n_fft=256", "features.fmax=3800",
              "features.n_mels=40"]


@dataclass
class SpeakerResult:
    held_out: str
    single_wer: float
    single_n: int
    strings_wer: float
    strings_cer: float
    strings_n: int
    val_cer: float
    epochs: int
    updates: int
    audio_s_per_s: float  # training throughput: how much CPU this run really got
    train_minutes: float
    dynamic_range_db: float | None = None  # held-out recordings: loudest frame over noise floor
    single_wer_lm: float | None = None  # beam search + digit bigram LM
    single_wer_padded: float | None = None  # greedy, the same files with 0.2 s silence each side
    strings_wer_lm: float | None = None


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def file_index(row: dict) -> int:
    return int(row["id"].rsplit("_", 1)[1])


def join_digits(rows: list[dict], n: int, out_dir: Path, seed: int, prefix: str,
                digits: tuple[int, int] = (2, 5), gap_s: tuple[float, float] = (0.05, 0.3)
                ) -> list[dict]:
    """n new utterances, each 2-5 random recordings of ONE speaker joined with short silences
    (plus a silence at both ends); returns their manifest rows (absolute paths)."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_speaker: dict[str, list[dict]] = {}
    for r in rows:
        by_speaker.setdefault(r["speaker"], []).append(r)
    speakers = sorted(by_speaker)
    cache: dict[str, np.ndarray] = {}
    out = []
    for k in range(n):
        spk = speakers[k % len(speakers)]
        count = int(rng.integers(digits[0], digits[1] + 1))
        picks = [by_speaker[spk][i] for i in rng.integers(len(by_speaker[spk]), size=count)]
        pieces = [silence(rng, gap_s)]
        for p in picks:
            if p["audio_filepath"] not in cache:
                cache[p["audio_filepath"]] = load_audio(p["audio_filepath"], SR)
            pieces += [cache[p["audio_filepath"]], silence(rng, gap_s)]
        wave = np.concatenate(pieces)
        path = (out_dir / f"{prefix}_{spk}_{k}.wav").resolve()
        sf.write(path, wave, SR)
        out.append({"audio_filepath": str(path), "duration": round(len(wave) / SR, 4),
                    "text": " ".join(p["text"] for p in picks), "id": path.stem, "speaker": spk})
    return out


def silence(rng: np.random.Generator, gap_s: tuple[float, float]) -> np.ndarray:
    return np.zeros(int(rng.uniform(*gap_s) * SR), np.float32)


def make_splits(all_rows: list[dict], held_out: str, folder: Path, n_strings: int, seed: int
                ) -> dict[str, Path]:
    """train/val from the other speakers (val: indices 0-4), test from the held-out one."""
    others = [r for r in all_rows if r["speaker"] != held_out]
    train = [r for r in others if file_index(r) not in VAL_INDICES]
    val = [r for r in others if file_index(r) in VAL_INDICES]
    test = [r for r in all_rows if r["speaker"] == held_out]
    strings = folder / "strings"
    train_str = join_digits(train, n_strings, strings, seed, "train")
    val_str = join_digits(val, max(30, n_strings // 10), strings, seed + 1, "val")
    test_str = join_digits(test, 200, strings, seed + 2, "test")
    return {"train": write_rows(folder / "train.jsonl", train + train_str),
            "val": write_rows(folder / "val.jsonl", val + val_str),
            "test_single": write_rows(folder / "test_single.jsonl", test),
            "test_strings": write_rows(folder / "test_strings.jsonl", test_str)}


def run_speaker(all_rows: list[dict], held_out: str, out: Path, args) -> SpeakerResult:
    from asrlab.cli import main as asrlab
    from asrlab.evaluate import evaluate

    folder = out / f"held_out_{held_out}"
    splits = make_splits(all_rows, held_out, folder, args.strings, args.seed)
    if args.tts or args.tts_flite:
        rows = read_rows(splits["train"])
        if args.tts:
            rows += read_rows(tts_corpus(args.out, args.tts, args.seed))
        if args.tts_flite:  # other strings (seed + 1) than the espeak corpus's
            rows += read_rows(tts_corpus(args.out, args.tts_flite, args.seed + 1,
                                         ("flite", "festival")))
        splits["train"] = write_rows(folder / "train_with_tts.jsonl", rows)
    run = folder / "run"
    cmd = ["train", "--train", str(splits["train"]), "--val", str(splits["val"]), "--out",
           str(run), "--epochs", str(args.epochs), "--max-minutes", str(args.minutes),
           "--threads", str(args.threads), "--no-progress", "--seed", str(args.seed)]
    if args.model:
        cmd += ["--model", args.model]
    if args.encoder:  # a pretrained encoder: its own features and the pretrained recipe
        cmd += ["--encoder", args.encoder, "--encoder-layers-trained", str(args.layers_trained)]
    if args.tokenizer == "bpe":
        cmd += ["--tokenizer", "bpe", "--vocab-size", str(args.vocab_size)]
    extra = (["features.utterance_mean=true"] if args.utterance_mean else []) + \
        (["augment.speed_perturb=[0.9,1.0,1.1]"] if args.speed_perturb else []) + \
        ([f"augment.vtlp=[{args.vtlp}]"] if args.vtlp else [])
    settings = [] if args.encoder else FSDD_SETTINGS + (NARROWBAND if args.narrowband else [])
    for item in settings + extra + list(args.set):
        cmd += ["--set", item]
    print("asrlab " + " ".join(cmd), flush=True)
    t0 = time.time()
    if asrlab(cmd) != 0:
        raise RuntimeError(f"training for held-out speaker {held_out} failed: see {run}")
    minutes = (time.time() - t0) / 60
    single = checked(evaluate(run, splits["test_single"], folder / "test_single.report.json"))
    strings = checked(evaluate(run, splits["test_strings"], folder / "test_strings.report.json"))
    metrics = read_rows(run / "metrics.jsonl")
    result = SpeakerResult(held_out, single.wer, single.n, strings.wer, strings.cer, strings.n,
                           min(m["val_cer"] for m in metrics), len(metrics), metrics[-1]["step"],
                           round(float(np.mean([m["audio_seconds_per_s"] for m in metrics])), 1),
                           round(minutes, 2))
    result.dynamic_range_db = dynamic_range_db(read_rows(splits["test_single"]))
    padded = write_rows(folder / "test_single_padded.jsonl",
                        padded_copies(read_rows(splits["test_single"]), folder / "padded"))
    result.single_wer_padded = checked(evaluate(run, padded, None)).wer
    if args.lm:
        lm_args = digit_lm(splits["train"], folder)
        result.single_wer_lm = checked(evaluate(run, splits["test_single"], None, lm_args)).wer
        result.strings_wer_lm = checked(evaluate(run, splits["test_strings"], None, lm_args)).wer
    return result


def tts_corpus(out: Path, n: int, seed: int, engines: tuple[str, ...] = ("espeak",)) -> Path:
    """N distinct strings of 2-5 digit words spoken by 64 synthetic voices of `engines` (made
    once, reused by every held-out speaker's run); returns its train manifest (absolute paths)."""
    from asrlab.synth import synthesize_corpus

    name = f"tts_{n}_seed{seed}" + ("" if engines == ("espeak",) else "_" + "+".join(engines))
    folder = out / name
    manifest = folder / "train_abs.jsonl"
    if manifest.is_file():
        return manifest
    rng = np.random.default_rng(seed)
    texts: set[str] = set()
    while len(texts) < n:
        digits = rng.integers(10, size=int(rng.integers(2, 6)))
        texts.add(" ".join(DIGIT_WORDS[d] for d in digits))
    out.mkdir(parents=True, exist_ok=True)
    text_file = out / f"{name}.txt"
    text_file.write_text("".join(t + "\n" for t in sorted(texts)))
    made = synthesize_corpus(folder, n_train=n, n_val=0, n_test=0, seed=seed,
                             text_file=text_file, engines=engines, progress=False)
    rows = [{**r, "audio_filepath": str((folder / r["audio_filepath"]).resolve())}
            for r in read_rows(made["train"])]
    return write_rows(manifest, rows)


def checked(report):
    """An evaluation that skipped utterances would report a WER over fewer files: refuse it."""
    if report.skipped or not report.n:
        raise RuntimeError(f"{report.data}: {len(report.skipped)} utterance(s) skipped, "
                           f"{report.n} scored: {report.skipped[:2]}")
    return report


def dynamic_range_db(rows: list[dict], frame_s: float = 0.025, hop_s: float = 0.01) -> float:
    """Median over files of (loudest 25 ms frame - 10th-percentile frame) in dB: how far the
    speech stands above the recording's noise floor. FSDD's speakers differ by 30 dB here."""
    win, hop = int(frame_s * SR), int(hop_s * SR)
    ranges = []
    for r in rows:
        wave = load_audio(r["audio_filepath"], SR)
        if len(wave) < win:
            continue
        frames = np.lib.stride_tricks.sliding_window_view(wave, win)[::hop]
        energy = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
        ranges.append(energy.max() - np.percentile(energy, 10))
    return round(float(np.median(ranges)), 1)


def padded_copies(rows: list[dict], out_dir: Path, seconds: float = 0.2) -> list[dict]:
    """FSDD files are trimmed tightly; a word's last letters then have few frames to be
    emitted in. The same recordings with `seconds` of silence at both ends (as any real
    recording of an isolated word has) separate that effect from recognition errors."""
    pad = np.zeros(int(seconds * SR), np.float32)
    return rewritten(rows, out_dir, lambda wave: np.concatenate([pad, wave, pad]))


def rewritten(rows: list[dict], out_dir: Path, transform) -> list[dict]:
    """Each recording of `rows` read at FSDD's rate, changed by `transform` (waveform ->
    waveform), written under out_dir with its name; the rows with the new paths and durations."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for r in rows:
        wave = transform(load_audio(r["audio_filepath"], SR))
        path = (out_dir / Path(r["audio_filepath"]).name).resolve()
        sf.write(path, wave, SR)
        out.append({**r, "audio_filepath": str(path), "duration": round(len(wave) / SR, 4)})
    return out


def digit_lm(train_manifest: Path, folder: Path) -> DecoderOptions:
    """A word bigram LM on the training transcripts, as decoder options (beam 16)."""
    from asrlab.decode.lm import build_lm

    text = folder / "lm_text.txt"
    text.write_text("".join(r["text"] + "\n" for r in read_rows(train_manifest)))
    report = build_lm([text], 2, folder / "digits", binary=False)
    return DecoderOptions(lm=str(report.arpa), beam=16)


def markdown(results: list[SpeakerResult]) -> str:
    lines = ["| held-out speaker | WER single digits (n) | WER single, padded | WER digit strings "
             "(n) | CER strings | WER single, LM | WER strings, LM | val CER (seen speakers) "
             "| epochs / updates | audio-s/s | dynamic range |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.held_out} | {pct(r.single_wer)} ({r.single_n}) | "
                     f"{pct(r.single_wer_padded)} | {pct(r.strings_wer)} ({r.strings_n}) | "
                     f"{pct(r.strings_cer)} | {pct(r.single_wer_lm)} | {pct(r.strings_wer_lm)} | "
                     f"{pct(r.val_cer)} | {r.epochs} / {r.updates} | {r.audio_s_per_s:.0f} | "
                     f"{r.dynamic_range_db} dB |")
    if len(results) > 1:
        mean = lambda name: pct(float(np.mean([getattr(r, name) for r in results]))  # noqa: E731
                                if all(getattr(r, name) is not None for r in results) else None)
        lines.append(f"| **mean** | {mean('single_wer')} | {mean('single_wer_padded')} | "
                     f"{mean('strings_wer')} | {mean('strings_cer')} | {mean('single_wer_lm')} | "
                     f"{mean('strings_wer_lm')} | {mean('val_cer')} | | | |")
    return "\n".join(lines)


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recordings", type=Path, default=RECORDINGS)
    p.add_argument("--out", type=Path, default=Path("/tmp/fsdd_bench"))
    p.add_argument("--held-out", default=",".join(SPEAKERS),
                   help="comma-separated speakers to hold out, one run each")
    p.add_argument("--minutes", type=float, default=4.0, help="training time per run")
    p.add_argument("--epochs", type=int, default=200, help="upper bound; time usually ends it")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--strings", type=int, default=600, help="joined digit strings for training")
    p.add_argument("--model", help="model name (default: the default config's)")
    p.add_argument("--encoder", metavar="NAME_OR_DIR",
                   help="train on this pretrained encoder (asrlab train --encoder) with the "
                        "pretrained recipe instead of the bench's from-scratch settings")
    p.add_argument("--layers-trained", type=int, default=0,
                   help="with --encoder: its top layers that learn (--encoder-layers-trained)")
    p.add_argument("--tokenizer", choices=["char", "bpe"], default="char",
                   help="bpe: digit words become single tokens, which CTC learns in fewer "
                        "updates than 4-6 characters each")
    p.add_argument("--vocab-size", type=int, default=40)
    p.add_argument("--wideband", dest="narrowband", action="store_false",
                   help="default 16 kHz / 80-bin features instead of 8 kHz / 40 bins")
    p.add_argument("--no-lm", dest="lm", action="store_false",
                   help="skip the extra beam + digit bigram LM evaluation")
    p.add_argument("--tts", type=int, default=0, metavar="N",
                   help="add N synthetic digit strings (64 espeak-ng voices) to training")
    p.add_argument("--tts-flite", type=int, default=0, metavar="M",
                   help="add M more synthetic digit strings from the flite and festival voices "
                        "(slt, awb, rms, kal16, kal_diphone: unit-selection and diphone speech, "
                        "closer to a person than espeak's formant synthesis)")
    p.add_argument("--utterance-mean", action="store_true",
                   help="features.utterance_mean: remove each utterance's mean log-mel")
    p.add_argument("--speed-perturb", action="store_true",
                   help="speed perturbation 0.9/1.0/1.1 (off in the bench's settings)")
    p.add_argument("--vtlp", metavar="LOW,HIGH",
                   help="vocal-tract-length perturbation range, e.g. 0.9,1.1 (augment.vtlp)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="extra config overrides passed to asrlab train (after the bench's own)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from asrlab.data.prepare import prepare

    args.out.mkdir(parents=True, exist_ok=True)
    print(f"asrlab prepare fsdd {args.recordings} --out {args.out / 'all.jsonl'}", flush=True)
    prep = prepare("fsdd", args.recordings, args.out / "all.jsonl")
    print(prep.summary(), flush=True)
    all_rows = read_rows(prep.manifest)
    results = []
    for spk in [s.strip() for s in args.held_out.split(",") if s.strip()]:
        results.append(run_speaker(all_rows, spk, args.out, args))
        print(markdown(results[-1:]), flush=True)
    print(write_results(args.out, results, markdown(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
