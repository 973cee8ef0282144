"""Evaluate a model on a manifest: corpus WER/CER (jiwer), empty hypotheses, per-utterance rows.

Writes `report.json` (`{"wer", "cer", "n", "empty", ...}`) and, beside it,
`<report>.utterances.jsonl` with reference, hypothesis and error counts for every utterance.
Utterances whose audio cannot be used (missing, unreadable, over the `AudioLimits`, empty or
NaN/inf, as the server refuses them) are listed in the report under `skipped_items`, never
dropped silently; `asrlab evaluate` exits non-zero when any were skipped, unless
--allow-missing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from asrlab.audio import AudioError, AudioLimits, check_samples, load_audio
from asrlab.data.manifest import Skipped
from asrlab.data.text import read_transcripts
from asrlab.decode import DecoderOptions, describe_decoder, make_decoder
from asrlab.inference import Recognizer
from asrlab.metrics import error_rates, utterance_errors


@dataclass
class EvalReport:
    wer: float
    cer: float
    n: int
    empty: int
    model: str
    data: str
    skipped: list[Skipped] = field(default_factory=list)
    decoder: dict = field(default_factory=dict)  # which decoder and weights produced these rates
    audio_seconds: float = 0.0
    decode_seconds: float = 0.0
    utterances_path: Path | None = None

    def summary(self) -> dict:
        return {"wer": self.wer, "cer": self.cer, "n": self.n, "empty": self.empty,
                "skipped": len(self.skipped), "model": self.model, "data": self.data,
                "decoder": self.decoder,
                "audio_seconds": round(self.audio_seconds, 2),
                "decode_seconds": round(self.decode_seconds, 3),
                "rtf": round(self.decode_seconds / max(self.audio_seconds, 1e-9), 5)}


def evaluate(model_path: Path, data_path: Path, out: Path | None = None,
             options: DecoderOptions | None = None, limits: AudioLimits = AudioLimits()
             ) -> EvalReport:
    """`options`: the decoder (None: greedy)."""
    rec = Recognizer.from_path(model_path)
    decoder = make_decoder(options, rec.tokenizer)
    utts = read_transcripts(data_path, rec.text_normalizer).utterances  # the model's text rules
    waves, kept, skipped = [], [], []
    for u in utts:
        try:
            wave = load_audio(u.audio_filepath, rec.sample_rate, u.offset, u.span, limits)
            check_samples(wave, f"{u.audio_filepath}: ")
            waves.append(wave)
            kept.append(u)
        except AudioError as e:
            skipped.append(Skipped(u.id, u.source, str(e)))
    if not kept:  # a WER of 0.0 over nothing would look like success
        reasons = "; ".join(str(x) for x in skipped[:3])
        raise ValueError(f"{data_path}: none of its {len(utts)} utterance(s) could be read "
                         f"({reasons})")
    t0 = time.perf_counter()
    hyps = [decoder.decode(lp) for lp in rec.log_probs(waves)]
    elapsed = time.perf_counter() - t0
    refs = [u.text for u in kept]
    rates = error_rates(refs, [h.text for h in hyps])
    report = EvalReport(rates.wer, rates.cer, rates.n, rates.empty, str(model_path),
                        str(data_path), skipped, describe_decoder(decoder),
                        sum(len(w) for w in waves) / rec.sample_rate, elapsed)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        report.utterances_path = out.with_suffix(".utterances.jsonl")
        with open(report.utterances_path, "w") as f:
            for u, h in zip(kept, hyps):
                e = utterance_errors(u.text, h.text)
                f.write(json.dumps({"id": u.id, "ref": u.text, "hyp": h.text,
                                    "word_errors": e.word_errors, "words": e.words,
                                    "char_errors": e.char_errors, "chars": e.chars},
                                   ensure_ascii=False) + "\n")
        out.write_text(json.dumps({**report.summary(), "skipped_items": [s.to_dict() for s in skipped]}, indent=2))
    return report
