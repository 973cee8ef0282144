"""`asrlab tune-lm`: grid-search the LM weight (alpha) and word score (beta) on a validation set.

The acoustic model runs once; every (alpha, beta) pair only re-runs beam search on the stored
log-probs. Prints a WER table and writes the best pair (with the greedy WER for reference) to
JSON; use them as `--lm-weight A --word-score B` for evaluate, transcribe and serve.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from asrlab.commands.transcribe import add_audio_limit_arguments, audio_limits

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_BETAS = (-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="run folder, checkpoint or model.onnx")
    p.add_argument("--data", required=True, type=Path,
                   help="validation manifest (never the test set)")
    p.add_argument("--lm", required=True, type=Path, help="KenLM model (.arpa or .bin)")
    p.add_argument("--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS),
                   help=f"LM weights to try (default {' '.join(map(str, DEFAULT_ALPHAS))})")
    p.add_argument("--betas", type=float, nargs="+", default=list(DEFAULT_BETAS),
                   help=f"word scores to try (default {' '.join(map(str, DEFAULT_BETAS))})")
    p.add_argument("--beam", type=int, default=32, help="beam width (default 32)")
    p.add_argument("--blank-penalty", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the acoustic model")
    add_audio_limit_arguments(p, seconds=3600)
    p.add_argument("--out", type=Path, help="JSON result (default: beside the model, "
                                           "tune_lm_<data>.json)")


@dataclass
class GridPoint:
    lm_weight: float
    word_score: float
    wer: float
    cer: float


@dataclass
class TuneResult:
    best: GridPoint
    greedy_wer: float
    greedy_cer: float
    utterances: int
    skipped: list  # asrlab.data.manifest.Skipped
    grid: list[GridPoint] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"lm_weight": self.best.lm_weight, "word_score": self.best.word_score,
                "wer": self.best.wer, "cer": self.best.cer, "greedy_wer": self.greedy_wer,
                "greedy_cer": self.greedy_cer, "utterances": self.utterances,
                "skipped": [s.to_dict() for s in self.skipped], "seconds": round(self.seconds, 1),
                "grid": [asdict(g) for g in self.grid]}


def grid_search(log_probs: list, refs: list[str], decoder, alphas, betas, on_point=None
                ) -> list[GridPoint]:
    """Decode every utterance at every (alpha, beta); the decoder is reused (LM loaded once)."""
    from asrlab.metrics import error_rates

    points = []
    for a in alphas:
        for b in betas:
            decoder.set_weights(a, b)
            rates = error_rates(refs, [decoder.decode(lp).text for lp in log_probs])
            points.append(GridPoint(a, b, rates.wer, rates.cer))
            if on_point:
                on_point(points[-1])
    return points


def load_log_probs(tr, data: Path) -> tuple[list, list[str], list]:
    """Run the acoustic model once, reading the audio as evaluate and transcribe do (the
    limits, empty and NaN/inf audio refused, long files in windows); unusable audio is listed,
    not dropped silently. `tr`: an asrlab.transcribe.Transcriber."""
    from asrlab.data.manifest import Skipped
    from asrlab.data.manifest import read_transcripts
    from asrlab.evaluate import utterance_log_probs

    utts = read_transcripts(data, tr.rec.text_normalizer).utterances  # the model's text rules
    log_probs, refs, skipped = [], [], []
    for u, result in utterance_log_probs(tr, utts):
        if isinstance(result, Skipped):
            skipped.append(result)
            continue
        log_probs.append(result.log_probs)
        refs.append(u.text)
    if not log_probs:
        raise ValueError(f"{data}: no readable utterances to tune on")
    return log_probs, refs, skipped


def run(args) -> int:
    from asrlab.decode import DecoderOptions, make_decoder
    from asrlab.metrics import error_rates
    from asrlab.transcribe import Transcriber

    t0 = time.perf_counter()
    tr = Transcriber.load(args.model, DecoderOptions(blank_penalty=args.blank_penalty),
                          args.threads, audio_limits(args))  # greedy, for the reference WER
    log_probs, refs, skipped = load_log_probs(tr, args.data)
    for s in skipped:
        print(f"asrlab tune-lm: skipped {s}", file=sys.stderr)
    greedy = error_rates(refs, [tr.decoder.decode(lp).text for lp in log_probs])
    decoder = make_decoder(DecoderOptions(blank_penalty=args.blank_penalty, beam=args.beam,
                                          lm=str(args.lm)), tr.rec.tokenizer)
    print(f"greedy: WER {greedy.wer:.4f} CER {greedy.cer:.4f} on {len(refs)} utterances")
    print("| lm_weight | word_score | WER | CER |\n|---:|---:|---:|---:|")
    grid = grid_search(log_probs, refs, decoder, args.alphas, args.betas,
                       on_point=lambda g: print(f"| {g.lm_weight:g} | {g.word_score:g} | "
                                                f"{g.wer:.4f} | {g.cer:.4f} |", flush=True))
    # ties: the smaller LM weight, then the word score closest to 0 (least intrusive)
    best = min(grid, key=lambda g: (g.wer, g.cer, g.lm_weight, abs(g.word_score)))
    result = TuneResult(best, greedy.wer, greedy.cer, len(refs), skipped, grid,
                        time.perf_counter() - t0)
    out = args.out or default_out(args.model, args.data)
    out.write_text(json.dumps({"model": str(args.model), "data": str(args.data),
                               "lm": str(args.lm), "beam": args.beam, **result.to_dict()},
                              indent=2))
    print(f"best: --lm-weight {best.lm_weight:g} --word-score {best.word_score:g} "
          f"(WER {best.wer:.4f} vs greedy {greedy.wer:.4f}); written to {out}")
    return 0


def default_out(model: Path, data: Path) -> Path:
    folder = model if model.is_dir() else model.parent
    return folder / f"tune_lm_{data.stem}.json"
