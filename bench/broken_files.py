"""Does a run with broken files train to the same quality as the clean files alone?

From a corpus made by `asrlab synth`, a fraction (default 10%) of the training lines are
replaced by broken items, cycling through the kinds below: files missing, not audio, empty,
silent or NaN; transcripts empty; audio longer than train.max_duration; manifest lines that are
not JSON or have the wrong types. Two runs train with the same seed and settings:

    clean:  the untouched 90% of the lines only
    mixed:  the same 90% plus the broken 10% (with --force, as a user with such data would)

then both are evaluated on the corpus's test split. The script checks that the mixed run's
RUN/skipped.jsonl lists every broken item and nothing else, and that RUN/data.json adds up
(read = used + skipped). A fixed number of epochs (not a time budget) keeps the comparison
independent of machine load.

    python bench/broken_files.py --data DATA --out bench/out/broken --epochs 20

Writes OUT/results.json and OUT/results.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

# kind -> what its reason in skipped.jsonl must say
KINDS = {"missing": "file not found", "not_audio": "cannot be read as audio",
         "zero_bytes": "cannot be read as audio", "empty_audio": "empty audio",
         "silent": "silence", "nan": "NaN", "empty_text": "empty transcript",
         "too_long": "longer than train.max_duration", "not_json": "not valid JSON",
         "wrong_type": "duration must be"}


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def absolute(row: dict, folder: Path) -> dict:
    return {**row, "audio_filepath": str((folder / row["audio_filepath"]).resolve())}


def broken_line(kind: str, row: dict, folder: Path) -> str:
    """One manifest line of this kind of breakage, made from a good row."""
    path = folder / f"{row['id']}_{kind}.wav"
    rate = 16000
    if kind == "missing":
        path = folder / f"{row['id']}_does_not_exist.wav"
    elif kind == "not_audio":
        path.write_text("<html>a download error page, not audio</html>")
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "empty_audio":
        sf.write(path, np.zeros(0, np.float32), rate)
    elif kind == "silent":
        sf.write(path, np.zeros(rate * 2, np.float32), rate)
    elif kind == "nan":
        wave, rate = sf.read(row["audio_filepath"], dtype="float32")
        wave[len(wave) // 3: len(wave) // 2] = np.nan
        sf.write(path, wave, rate, subtype="FLOAT")
    elif kind == "too_long":  # the utterance's audio repeated past 30 s, its text once
        wave, rate = sf.read(row["audio_filepath"], dtype="float32")
        sf.write(path, np.tile(wave, int(np.ceil(31 * rate / len(wave)))), rate)
    elif kind == "not_json":
        return '{"audio_filepath": "' + row["audio_filepath"] + '", "duration": 3.1, "text": "cut'
    elif kind == "wrong_type":
        return json.dumps({**row, "duration": "three seconds"})
    else:
        path = Path(row["audio_filepath"])
    text = "" if kind == "empty_text" else row["text"]
    return json.dumps({**row, "audio_filepath": str(path), "text": text})


def make_manifests(data: Path, out: Path, fraction: float, seed: int):
    """clean.jsonl (90%), mixed.jsonl (the same lines + broken ones in place of the other
    10%); returns their paths and, for the mixed manifest, {expected skipped id: kind}: an
    utterance id, or "mixed.jsonl:LINE" for a line that is not a valid record."""
    rows = [absolute(r, data) for r in read_rows(data / "train.jsonl")]
    rng = np.random.default_rng(seed)
    broken = set(rng.choice(len(rows), size=round(fraction * len(rows)), replace=False).tolist())
    audio = (out / "broken_audio").resolve()  # absolute: the manifest lives elsewhere
    audio.mkdir(parents=True, exist_ok=True)
    clean, mixed, expected = [], [], {}
    for i, row in enumerate(rows):
        if i not in broken:
            clean.append(json.dumps(row))
            mixed.append(json.dumps(row))
            continue
        kind = list(KINDS)[len(expected) % len(KINDS)]
        mixed.append(broken_line(kind, row, audio))
        expected[f"mixed.jsonl:{len(mixed)}" if kind in ("not_json", "wrong_type")
                 else row["id"]] = kind
    paths = out / "clean.jsonl", out / "mixed.jsonl"
    for path, lines in zip(paths, (clean, mixed)):
        path.write_text("\n".join(lines) + "\n")
    return paths, expected, len(rows)


def train_and_test(manifest: Path, data: Path, run: Path, args) -> dict:
    cmd = [sys.executable, "-m", "asrlab", "train", "--train", str(manifest), "--val",
           str(data / "val.jsonl"), "--out", str(run), "--seed", str(args.seed), "--epochs",
           str(args.epochs), "--max-minutes", "0", "--no-progress", "--force"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "asrlab", "evaluate", "--model", str(run), "--data",
                    str(data / "test.jsonl"), "--out", str(run / "test.json")], check=True,
                   stdout=subprocess.DEVNULL)
    report = json.loads((run / "test.json").read_text())
    metrics = read_rows(run / "metrics.jsonl")
    return {"val_cer": min(m["val_cer"] for m in metrics), "test_cer": report["cer"],
            "test_wer": report["wer"], "epochs": len(metrics),
            "data": json.loads((run / "data.json").read_text())["train"],
            "skipped": {r["id"]: r["reason"] for r in read_rows(run / "skipped.jsonl")
                        if r["split"] == "train"}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="corpus folder from asrlab synth")
    p.add_argument("--out", type=Path, default=Path("bench/out/broken"))
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (clean, mixed), expected, total = make_manifests(args.data.resolve(), args.out,
                                                     args.fraction, args.seed)
    runs = {name: train_and_test(path, args.data.resolve(), args.out / name, args)
            for name, path in (("clean", clean), ("mixed", mixed))}
    listed = set(runs["mixed"]["skipped"])
    reasons = {}  # kind -> the reason given for its first item
    for item, kind in expected.items():
        reasons.setdefault(kind, runs["mixed"]["skipped"].get(item))
    checks = {"every broken item listed": listed == set(expected),
              "nothing else listed": listed <= set(expected),
              "each skipped for its own reason": all(
                  KINDS[kind] in runs["mixed"]["skipped"].get(item, "")
                  for item, kind in expected.items()),
              "clean run skipped nothing": runs["clean"]["data"]["skipped"] == 0,
              "read = used + skipped": all(r["data"]["read"] == r["data"]["used"]
                                           + r["data"]["skipped"] for r in runs.values()),
              "same utterances used": runs["clean"]["data"]["used"]
              == runs["mixed"]["data"]["used"]}
    result = {"lines": total, "broken": len(expected), "reasons": reasons, "runs": runs,
              "checks": checks, "missing_from_skipped": sorted(set(expected) - listed),
              "unexpected_in_skipped": sorted(listed - set(expected))}
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    table = ["| run | train lines | used | skipped | best val CER | test CER | test WER |",
             "|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        d = r["data"]
        table.append(f"| {name} | {d['read']} | {d['used']} | {d['skipped']} | "
                     f"{r['val_cer']:.3f} | {r['test_cer']:.3f} | {r['test_wer']:.3f} |")
    table += ["", "| broken kind | reason in skipped.jsonl (first item) |", "|---|---|"]
    table += [f"| {kind} | {reason} |" for kind, reason in reasons.items()]
    table += ["", "checks: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items())]
    (args.out / "results.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
