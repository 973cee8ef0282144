"""Real-time factor and WER on one CPU thread: PyTorch vs ONNX Runtime, greedy vs beam + LM.

    python bench/decode_rtf.py --model runs/default --data data/test.jsonl --lm lm.arpa \
        [--onnx model.onnx] [--lm-weight A --word-score B] [--beam 32] [--limit N]

Each utterance is processed alone (batch of one, as a transcription request would be), audio
already in memory. "acoustic" = features + network; "decode" = the decoder on the log-probs.
RTF = processing seconds / audio seconds; "x real time" = 1 / RTF. Prints a markdown table, and
whether ONNX and PyTorch transcripts agree utterance by utterance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch/onnxruntime load

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class Row:
    backend: str
    decoder: str
    acoustic_s: float
    decode_s: float
    audio_s: float
    wer: float
    cer: float
    texts: list[str]

    @property
    def rtf(self) -> float:
        return (self.acoustic_s + self.decode_s) / self.audio_s

    def markdown(self) -> str:
        return (f"| {self.backend} | {self.decoder} | {self.acoustic_s / self.audio_s:.4f} | "
                f"{self.decode_s / self.audio_s:.4f} | {self.rtf:.4f} | {1 / self.rtf:.0f}x | "
                f"{self.wer:.4f} | {self.cer:.4f} |")


def acoustic_pass(rec, waves) -> tuple[list, float]:
    """Log-probs one utterance at a time; returns them and the seconds spent."""
    t0 = time.perf_counter()
    out = [rec.log_probs([w])[0] for w in waves]
    return out, time.perf_counter() - t0


def decode_pass(decoder, log_probs) -> tuple[list[str], float]:
    t0 = time.perf_counter()
    texts = [decoder.decode(lp).text for lp in log_probs]
    return texts, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="run folder or checkpoint")
    p.add_argument("--data", required=True, type=Path, help="test manifest")
    p.add_argument("--onnx", type=Path, help="exported model (default: export to a temp file)")
    p.add_argument("--lm", type=Path, help="KenLM model for beam + LM rows")
    p.add_argument("--lm-weight", type=float, default=0.5)
    p.add_argument("--word-score", type=float, default=1.5)
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--limit", type=int, help="first N utterances only")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    from asrlab.data.manifest import read_transcripts
    from asrlab.decode import GreedyDecoder
    from asrlab.decode.beam import BeamDecoder
    from asrlab.inference import Recognizer
    from asrlab.metrics import error_rates
    from asrlab.onnx_infer import OnnxRecognizer

    pt = Recognizer.from_path(args.model)
    utts = read_transcripts(args.data, pt.text_normalizer).utterances[: args.limit]
    onnx_path = args.onnx
    if onnx_path is None:
        from asrlab.export import export_onnx

        onnx_path = Path(tempfile.mkdtemp()) / "model.onnx"
        export_onnx(args.model, onnx_path, data=args.data, utterances=4)
    ox = OnnxRecognizer(onnx_path, threads=1)
    if ox.meta.get("checkpoint_meta") != pt.ckpt.meta:
        print(f"WARNING: {onnx_path} was exported from another checkpoint than {args.model} "
              f"({ox.meta.get('checkpoint_meta')} vs {pt.ckpt.meta}): re-export it",
              file=sys.stderr)
    waves = [pt.load(u.audio_filepath, u.offset, u.span) for u in utts]
    refs = [u.text for u in utts]
    audio_s = sum(len(w) for w in waves) / pt.sample_rate

    decoders = {"greedy": GreedyDecoder(pt.tokenizer)}
    if args.lm:
        decoders[f"beam {args.beam} + LM"] = BeamDecoder(
            pt.tokenizer, beam=args.beam, lm=args.lm, lm_weight=args.lm_weight,
            word_score=args.word_score)
    rows: list[Row] = []
    for backend, rec in (("PyTorch", pt), ("ONNX Runtime", ox)):
        acoustic_pass(rec, waves[:3])  # warm-up (allocations, lazy init)
        log_probs, acoustic_s = acoustic_pass(rec, waves)
        for name, dec in decoders.items():
            texts, decode_s = decode_pass(dec, log_probs)
            rates = error_rates(refs, texts)
            rows.append(Row(backend, name, acoustic_s, decode_s, audio_s, rates.wer, rates.cer,
                            texts))

    print(f"{len(utts)} utterances, {audio_s:.1f} s of audio ({args.data}); 1 CPU thread; "
          f"LM {args.lm or '-'} (alpha {args.lm_weight}, beta {args.word_score})\n")
    print("| backend | decoder | RTF acoustic | RTF decode | RTF total | speed | WER | CER |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(r.markdown())
    agreement = {}
    for name in decoders:
        a, b = (next(r for r in rows if r.backend == be and r.decoder == name)
                for be in ("PyTorch", "ONNX Runtime"))
        differ = [u.id for u, x, y in zip(utts, a.texts, b.texts) if x != y]
        agreement[name] = differ
        print(f"\nONNX vs PyTorch transcripts, {name}: {len(utts) - len(differ)}/{len(utts)} "
              f"identical" + (f"; differ: {differ[:10]}" if differ else ""))
    if args.json:
        args.json.write_text(json.dumps({
            "utterances": len(utts), "audio_seconds": audio_s, "lm": str(args.lm),
            "lm_weight": args.lm_weight, "word_score": args.word_score, "beam": args.beam,
            "rows": [{"backend": r.backend, "decoder": r.decoder, "rtf": r.rtf,
                      "rtf_acoustic": r.acoustic_s / audio_s, "rtf_decode": r.decode_s / audio_s,
                      "wer": r.wer, "cer": r.cer} for r in rows],
            "onnx_differs": agreement}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
