"""Evaluate a model on a manifest: corpus WER/CER (jiwer), empty hypotheses, per-utterance rows.

The model is a run folder or checkpoint (PyTorch) or an exported .onnx (onnxruntime only: no
torch import). Audio goes the way `asrlab transcribe` reads it (`Transcriber.file_log_probs`):
files of at most one window read whole and batched, longer ones in overlapping 30 s windows read
from the file (memory flat with the file's length), so both verbs give the same text for the
same file and model.

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from asrlab.audio import AudioError, AudioLimits
from asrlab.data.manifest import Skipped, Utterance, read_transcripts
from asrlab.decode import DecoderOptions, describe_decoder
from asrlab.metrics import error_rates, utterance_errors
from asrlab.transcribe import AudioSpan, Emissions, Transcriber


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


def utterance_log_probs(tr: Transcriber, utts: list[Utterance]
                        ) -> Iterator[tuple[Utterance, Emissions | Skipped]]:
    """Each utterance's log-probs, its audio read as `asrlab transcribe` reads files
    (`Transcriber.file_log_probs`), or the Skipped record saying why it cannot be used."""
    spans = (AudioSpan(u.audio_filepath, u.offset, u.span) for u in utts)
    for u, result in zip(utts, tr.file_log_probs(spans)):
        yield u, (Skipped(u.id, u.source, str(result)) if isinstance(result, AudioError)
                  else result)


def evaluate(model_path: Path, data_path: Path, out: Path | None = None,
             options: DecoderOptions | None = None, limits: AudioLimits = AudioLimits(),
             threads: int | None = None) -> EvalReport:
    """`model_path`: run folder, checkpoint or .onnx; `options`: the decoder (None: greedy);
    `threads`: CPU threads for the acoustic model. `decode_seconds` counts reading the audio,
    features, the model and the decoder."""
    tr = Transcriber.load(model_path, options or DecoderOptions(), threads, limits)
    utts = read_transcripts(data_path, tr.rec.text_normalizer).utterances  # the model's rules
    kept, hyps, skipped, samples = [], [], [], 0
    t0 = time.perf_counter()
    for u, result in utterance_log_probs(tr, utts):  # one at a time: memory flat
        if isinstance(result, Skipped):
            skipped.append(result)
            continue
        kept.append(u)
        hyps.append(tr.decoder.decode(result.log_probs).text)
        samples += result.samples
    elapsed = time.perf_counter() - t0
    if not kept:  # a WER of 0.0 over nothing would look like success
        reasons = "; ".join(str(x) for x in skipped[:3])
        raise ValueError(f"{data_path}: none of its {len(utts)} utterance(s) could be read "
                         f"({reasons})")
    rates = error_rates([u.text for u in kept], hyps)
    report = EvalReport(rates.wer, rates.cer, rates.n, rates.empty, str(model_path),
                        str(data_path), skipped, describe_decoder(tr.decoder),
                        samples / tr.sample_rate, elapsed)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        report.utterances_path = out.with_suffix(".utterances.jsonl")
        with open(report.utterances_path, "w") as f:
            for u, hyp in zip(kept, hyps):
                e = utterance_errors(u.text, hyp)
                f.write(json.dumps({"id": u.id, "ref": u.text, "hyp": hyp,
                                    "word_errors": e.word_errors, "words": e.words,
                                    "char_errors": e.char_errors, "chars": e.chars},
                                   ensure_ascii=False) + "\n")
        out.write_text(json.dumps({**report.summary(),
                                   "skipped_items": [s.to_dict() for s in skipped]}, indent=2))
    return report
