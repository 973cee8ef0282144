"""A reference point for the pretrained-encoder benchmarks: the full Whisper model (its own
decoder, no CTC head, not trained on the task) on the same held-out files.

    python bench/whisper_reference.py --model whisper-tiny.en --data HELD_OUT.jsonl [...] \
        --out /tmp/whisper_ref.json [--compute-type int8] [--beam 5]

Each manifest's audio is read at 16 kHz by asrlab's loader, turned into Whisper's log-mel by
asrlab.features.WhisperLogMel, padded to 30 s as Whisper expects, and decoded by CTranslate2's
Whisper (the bundle `asrlab encoders` lists, pip install "asrlab[whisper]"); the text is
normalized as the benchmarks' references are (numbers read aloud: Whisper writes "3" for
"three") and scored with asrlab.metrics. Writes OUT (JSON: per manifest WER/CER and every
hypothesis) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from asrlab.audio import load_audio
from asrlab.config import FeatureConfig, WHISPER_FEATURES
from asrlab.data.manifest import read_manifest
from asrlab.data.text import TextNormalizer
from asrlab.features import front_end
from asrlab.metrics import error_rates
from asrlab.pretrained import resolve_encoder

SR = 16000
N_FRAMES = 3000  # Whisper's 30 s window
NORMALIZER = TextNormalizer(numbers="read")


def ct2_folder(source, tmp: Path) -> Path:
    """A folder CTranslate2 can open: the bundle's own, or (a model.bin in parts) a joined copy."""
    if len(source.files) == 1 and source.files[0].name == "model.bin":
        return source.files[0].parent
    folder = tmp / "model"
    folder.mkdir()
    with open(folder / "model.bin", "wb") as out:
        for part in source.files:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        found = next((p.parent / name for p in source.files if (p.parent / name).is_file()), None)
        if found is not None:
            shutil.copy(found, folder / name)
    return folder


def prompt(multilingual: bool) -> list[str]:
    return (["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
            if multilingual else ["<|startoftranscript|>", "<|notimestamps|>"])


def transcribe(model, tokenizer, logmel, paths: list[Path], beam: int,
               batch: int = 8) -> list[str]:
    import ctranslate2

    out = []
    for start in range(0, len(paths), batch):
        mels = []
        for path in paths[start:start + batch]:
            wave = load_audio(path, SR)[:30 * SR]
            padded = np.concatenate([wave, np.zeros(30 * SR - len(wave) + 160, np.float32)])
            mels.append(logmel(padded)[:N_FRAMES].T)  # (80, 3000): Whisper pads the audio
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(mels)))
        results = model.generate(features, [prompt(model.is_multilingual)] * len(mels),
                                 beam_size=beam, max_length=200)
        out += [tokenizer.decode(r.sequences_ids[0]) for r in results]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="whisper-tiny.en", help="bundle name or CTranslate2 folder")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="manifests to score")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--compute-type", default="int8")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import ctranslate2
    from tokenizers import Tokenizer

    source = resolve_encoder(args.model)
    logmel = front_end(FeatureConfig(kind="whisper", **WHISPER_FEATURES))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = ct2_folder(source, Path(tmp))
        model = ctranslate2.models.Whisper(str(folder), device="cpu",
                                           compute_type=args.compute_type,
                                           intra_threads=args.threads)
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        for manifest in args.data:
            utts, _ = read_manifest(manifest)
            t0 = time.time()
            hyps = transcribe(model, tokenizer, logmel, [u.audio_filepath for u in utts],
                              args.beam)
            refs = [NORMALIZER.normalize(u.text) for u in utts]
            hyps = [NORMALIZER.normalize(h) for h in hyps]
            rates = error_rates(refs, hyps)
            results[str(manifest)] = {
                "wer": rates.wer, "cer": rates.cer, "utterances": len(utts),
                "seconds": round(time.time() - t0, 1),
                "rows": [{"id": u.id, "ref": r, "hyp": h} for u, r, h in zip(utts, refs, hyps)]}
            print(f"{manifest}: WER {rates.wer:.3f} CER {rates.cer:.3f} ({len(utts)} utterances)",
                  file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "sha256": source.sha256,
                                    "compute_type": args.compute_type, "beam": args.beam,
                                    "results": results}, indent=1))
    print("| data | utterances | WER | CER |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['utterances']} | {100 * r['wer']:.1f}% | {100 * r['cer']:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
