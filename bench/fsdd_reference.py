"""A reference point for bench/fsdd.py: how does a recognizer trained on many speakers do on the
same held-out FSDD files?

PocketSphinx ships a speaker-independent US-English acoustic model (pip install
'asrlab[bench]', or pocketsphinx alone). Decoded with a grammar that allows only digit words (one
for single digits, one or more for digit strings), it is a closed-vocabulary recognizer that has
heard hundreds of speakers, none of them FSDD's. Its WER on a held-out speaker shows how hard
that speaker's recordings are (accent, 8 kHz band, noise floor) apart from having only three
training speakers.

Reads the held-out speakers' test manifests that bench/fsdd.py wrote:

    python bench/fsdd_reference.py --fsdd-out /tmp/fsdd_bench [--held-out george,lucas]

Writes FSDD_OUT/reference.json and FSDD_OUT/reference.md and prints the table. The model is
16 kHz: FSDD's 8 kHz audio is resampled to 16 kHz, and 0.2 s of silence is added at both ends
(PocketSphinx's endpointing wants some).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_results import write_results  # bench/bench_results.py
from fsdd import SPEAKERS, pct, read_rows  # bench/fsdd.py, beside this script

from asrlab.audio import load_audio
from asrlab.data.prepare import DIGIT_WORDS
from asrlab.metrics import error_rates

SR = 16000
PAD = np.zeros(int(0.2 * SR), np.float32)


@dataclass
class ReferenceResult:
    held_out: str
    single_wer: float
    single_n: int
    strings_wer: float
    strings_n: int


def decoder():
    try:
        from pocketsphinx import Decoder, get_model_path
    except ImportError:
        sys.exit("this benchmark needs PocketSphinx: pip install 'asrlab[bench]'")
    model = Path(get_model_path()) / "en-us"
    dec = Decoder(hmm=str(model / "en-us"), dict=str(model / "cmudict-en-us.dict"),
                  samprate=SR, loglevel="FATAL")
    one_of = " | ".join(DIGIT_WORDS)
    dec.add_jsgf_string("single", f"#JSGF V1.0;\ngrammar single;\npublic <d> = {one_of};\n")
    dec.add_jsgf_string("strings", f"#JSGF V1.0;\ngrammar strings;\npublic <d> = ({one_of})+;\n")
    return dec


def transcribe(dec, search: str, path: str) -> str:
    wave = np.concatenate([PAD, load_audio(path, SR), PAD])
    dec.activate_search(search)
    dec.start_utt()
    dec.process_raw((np.clip(wave, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
    dec.end_utt()
    return dec.hyp().hypstr if dec.hyp() else ""


def score(dec, search: str, manifest: Path) -> tuple[float, int]:
    rows = read_rows(manifest)
    hyps = [transcribe(dec, search, r["audio_filepath"]) for r in rows]
    return error_rates([r["text"] for r in rows], hyps).wer, len(rows)


def markdown(results: list[ReferenceResult]) -> str:
    lines = ["| held-out speaker | PocketSphinx WER single digits (n) | digit strings (n) |",
             "|---|---|---|"]
    lines += [f"| {r.held_out} | {pct(r.single_wer)} ({r.single_n}) | "
              f"{pct(r.strings_wer)} ({r.strings_n}) |" for r in results]
    if len(results) > 1:
        lines.append(f"| **mean** | {pct(np.mean([r.single_wer for r in results]))} | "
                     f"{pct(np.mean([r.strings_wer for r in results]))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fsdd-out", type=Path, required=True,
                   help="the --out folder of a bench/fsdd.py run (its held_out_*/ manifests)")
    p.add_argument("--held-out", default=",".join(SPEAKERS))
    args = p.parse_args(argv)
    dec = decoder()
    results = []
    for spk in [s.strip() for s in args.held_out.split(",") if s.strip()]:
        folder = args.fsdd_out / f"held_out_{spk}"
        if not (folder / "test_single.jsonl").is_file():
            sys.exit(f"{folder / 'test_single.jsonl'} is missing: run bench/fsdd.py "
                     f"--out {args.fsdd_out} --held-out {spk} first")
        single, n_single = score(dec, "single", folder / "test_single.jsonl")
        strings, n_strings = score(dec, "strings", folder / "test_strings.jsonl")
        results.append(ReferenceResult(spk, single, n_single, strings, n_strings))
        print(markdown(results[-1:]), flush=True)
    print(write_results(args.fsdd_out, results, markdown(results), name="reference"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
