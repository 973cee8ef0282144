"""The corpus writer: sentences per split, every utterance planned from the seed, the audio made
(asrlab.synth.scheduler), utterances too dense for the model's CTC spoken again slower, then the
manifests and corpus.json.

Output layout (paths in manifests are relative to `out_dir`):

    out_dir/{train,val,test}.jsonl   audio_filepath, duration, text, id, speaker, engine, voice,
                                      rate, pitch, gain_db
    out_dir/wavs/{split}/*.wav        16 kHz mono PCM16, edge silence trimmed to 0.1 s
    out_dir/corpus.json               seed, counts, hours, speakers, engines, versions, CTC limit
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from asrlab.config import Config
from asrlab.data.manifest import Utterance, write_manifest
from asrlab.frames import output_frame_rate
from asrlab.synth.base import SAMPLE_RATE, Speaker, SynthError
from asrlab.synth.engines import engine_versions
from asrlab.synth.piper import PIPER_SHIFT_JITTER
from asrlab.synth.scheduler import Job, execute
from asrlab.synth.sentences import GENERATOR_VERSION, generate_sentences, read_text_file
from asrlab.synth.speakers import make_speakers

log = logging.getLogger(__name__)

SYNTH_VERSION = "synth-4"  # 4: utterances too dense for CTC spoken again, slower; HTS rates
SPLITS = ("train", "val", "test")
UTT_JITTER = 0.1  # each utterance: rate and pitch times U(1 - j, 1 + j) of its speaker's
UTT_GAIN_DB = (-12.0, 0.0)  # each utterance's level, from a 0.9 peak
# CTC needs an output frame per character and one more between repeated ones (ctc_labels). The
# limit follows the model the corpus is built for (max_labels_per_s): the default model
# (crnn-sub4: 10 ms hops, 4x subsampling) has 25 frames/s, 22.7 under the 1.1x speed
# perturbation of the default recipe, and DENSE_MARGIN of that is 21.0 labels/s; festival's
# fastest speakers said 1.4% of a three-engine corpus faster than that (the doctor's
# INFEASIBLE_LENGTH / NONFINITE_LOSS in every run). An utterance needing more than the limit is
# synthesized again at a rate that brings it to DENSE_TARGET of the limit (up to DENSE_PASSES
# times; what is left is logged, and the doctor names it before training).
DENSE_MARGIN = 0.924  # room for the frames lost at the edges (window, strides' rounding)
DENSE_TARGET = 0.9
DENSE_PASSES = 3


def _sentences(counts: dict[str, int], seed: int,
               text_file: str | Path | None) -> tuple[dict[str, list[str]], dict | None]:
    """Distinct sentences per split, from the generator or from the user's file, and for a
    file a summary of what was kept and dropped."""
    total = sum(counts.values())
    summary = None
    if text_file is None:
        pool = generate_sentences(total, seed)
    else:
        pool, summary = _sentences_from_file(text_file, counts, seed)
    out, start = {}, 0
    for split, n in counts.items():
        out[split] = pool[start:start + n]
        start += n
    _assert_disjoint(out)
    return out, summary


def _sentences_from_file(text_file: str | Path, counts: dict[str, int],
                         seed: int) -> tuple[list[str], dict]:
    """As many sentences as counts needs from load_text_file's reading, shuffled by seed."""
    total = sum(counts.values())
    report = read_text_file(text_file)
    (log.warning if report.dropped else log.info)("%s", report.summary())
    if len(report.sentences) < total:
        wanted = ", ".join(f"{split} {n}" for split, n in counts.items())
        raise SynthError(f"{text_file} has {len(report.sentences)} usable distinct sentences "
                         f"but the corpus needs {total} ({wanted}); add sentences or ask "
                         f"for fewer utterances")
    summary = {"path": str(text_file), "mode": report.mode, "read": report.segments,
               "kept": len(report.sentences), "dropped": dict(report.dropped)}
    return random.Random(f"asrlab-text/{seed}").sample(report.sentences, total), summary


def _assert_disjoint(splits: dict[str, list[str]]) -> None:
    owner: dict[str, str] = {}
    for split, sentences in splits.items():
        for s in sentences:
            if owner.setdefault(s, split) != split:
                raise AssertionError(f"sentence in both {owner[s]} and {split}: {s!r}")


def _plan(out_dir: Path, texts: dict[str, list[str]], speakers: list[Speaker],
          seed: int) -> list[Job]:
    """Fix every utterance's id, speaker, prosody and path. Speakers are dealt evenly in each
    split; rate, pitch and volume are drawn per utterance from (seed, id)."""
    jobs: list[Job] = []
    for split, sentences in texts.items():
        order = random.Random(f"asrlab-deal/{seed}/{split}").sample(speakers, len(speakers))
        folder = out_dir / "wavs" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(sentences):
            utt_id = f"{split}_{i:05d}"
            speaker = order[i % len(order)]
            rng = random.Random(f"asrlab-prosody/{seed}/{utt_id}")
            rate = round(speaker.rate * rng.uniform(1 - UTT_JITTER, 1 + UTT_JITTER))
            pitch = speaker.pitch
            if pitch is not None:
                jitter = PIPER_SHIFT_JITTER if speaker.engine == "piper" else UTT_JITTER
                pitch = round(pitch * rng.uniform(1 - jitter, 1 + jitter))
                pitch = min(pitch, 99) if speaker.engine == "espeak" else pitch
            jobs.append(Job(len(jobs), split, utt_id, text, speaker,
                            str(folder / f"{utt_id}.wav"), rate, pitch,
                            round(rng.uniform(*UTT_GAIN_DB), 1)))
    return jobs


def _prepare_out_dir(out_dir: Path) -> None:
    """Create out_dir; a previous corpus there is replaced, anything else is left alone."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SynthError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / "corpus.json").is_file():
            raise SynthError(f"{out_dir} is not empty and holds no synthetic corpus (no "
                             f"corpus.json); choose a new or empty folder")
        shutil.rmtree(out_dir / "wavs", ignore_errors=True)
        for name in [f"{s}.jsonl" for s in SPLITS] + ["corpus.json"]:
            (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def synthesize_corpus(out_dir: str | Path, n_train: int = 1111, n_val: int = 99, n_test: int = 300,
                      seed: int = 0, text_file: str | Path | None = None,
                      engines: Sequence[str] = ("espeak",), jobs: int = 2, progress: bool = True,
                      n_speakers: int = 64, config: Config | None = None) -> dict[str, Path]:
    """Synthesize train/val/test speech into out_dir; returns {split: manifest path}.

    Sentences come from generate_sentences(seed) or, with text_file, from load_text_file
    (shuffled by seed). The same arguments give the same texts, speakers and audio whatever
    `jobs` is. `config` is the training config the corpus is for (default: Config()): no
    utterance needs more CTC labels a second than its model can align (max_labels_per_s).
    Raises EngineUnavailable for a missing engine, SynthError for a text file with too few
    sentences or failed utterances (all named).
    """
    counts = {"train": n_train, "val": n_val, "test": n_test}
    if any(n < 0 for n in counts.values()) or sum(counts.values()) == 0:
        raise ValueError(f"split sizes must be >= 0 and not all zero, got {counts}")
    engines = tuple(dict.fromkeys(engines))
    if not engines:
        raise ValueError("name at least one engine")
    speakers = make_speakers(n_speakers, seed, engines)  # checks the engines first
    texts, text_report = _sentences(counts, seed, text_file)
    out_dir = Path(out_dir).resolve()
    _prepare_out_dir(out_dir)
    config = config or Config()
    limit = max_labels_per_s(config)
    plan = _plan(out_dir, texts, speakers, seed)
    durations = execute(plan, max(1, jobs), engines, progress)
    plan, durations = _slow_down_dense(plan, durations, max(1, jobs), engines, limit)
    manifests = _write_manifests(out_dir, plan, durations)
    _write_corpus_json(out_dir, plan, durations, speakers, seed, engines, text_report,
                       {"model": config.model.name, "max_labels_per_s": round(limit, 3)})
    return manifests


def ctc_labels(text: str) -> int:
    """Output frames a character-level CTC model needs for text: characters + adjacent repeats."""
    return len(text) + sum(a == b for a, b in zip(text, text[1:]))


def max_labels_per_s(config: Config) -> float:
    """The most CTC labels (ctc_labels) a second of audio may need for config's model: its output
    frames a second (asrlab.frames) over the fastest speed-perturbation factor (a 1.1x copy is
    1/1.1 as long), times DENSE_MARGIN. 21.0 for the default config; crnn-sub2, twice the
    frames, twice the limit."""
    return output_frame_rate(config) / max(config.augment.speed_perturb) * DENSE_MARGIN


def _slow_down_dense(plan: list[Job], durations: list[float], n_jobs: int,
                     engines: Sequence[str], limit: float) -> tuple[list[Job], list[float]]:
    """Speak again, slower, each utterance whose characters come faster than limit a second
    (its rate scaled by how far it is over, to DENSE_TARGET of the limit). Deterministic: a
    function of the first pass's audio, which is itself fixed by the seed."""
    plan, durations = list(plan), list(durations)
    for _ in range(DENSE_PASSES):
        dense = [j for j in plan
                 if ctc_labels(j.text) > limit * durations[j.index]]
        if not dense:
            break
        redo = []
        for k, j in enumerate(dense):
            factor = DENSE_TARGET * limit * durations[j.index] / ctc_labels(j.text)
            rate = j.rate or j.speaker.rate
            redo.append(replace(j, index=k, rate=max(1, min(rate - 1, int(rate * factor)))))
        log.info("%d utterance(s) too fast for CTC at %.0f characters/s: speaking them again "
                 "slower", len(dense), limit)
        for j, slower, duration in zip(dense, redo, execute(redo, n_jobs, engines, False)):
            plan[j.index] = replace(slower, index=j.index)
            durations[j.index] = duration
    left = [j.id for j in plan if ctc_labels(j.text) > limit * durations[j.index]]
    if left:
        log.warning("%d utterance(s) still faster than %.0f characters/s after %d slower "
                    "passes: %s", len(left), limit, DENSE_PASSES, ", ".join(left[:10]))
    return plan, durations


def _write_manifests(out_dir: Path, plan: list[Job], durations: list[float]) -> dict[str, Path]:
    out = {}
    for split in SPLITS:
        utts = [Utterance(j.id, Path(j.path), durations[j.index], j.text,
                          {"id": j.id, "speaker": j.speaker.id, "engine": j.speaker.engine,
                           "voice": j.speaker.voice, "rate": j.rate, "pitch": j.pitch,
                           "gain_db": j.gain_db})
                for j in plan if j.split == split]
        out[split] = write_manifest(out_dir / f"{split}.jsonl", utts)
    return out


def _write_corpus_json(out_dir: Path, plan: list[Job], durations: list[float],
                       speakers: list[Speaker], seed: int, engines: Sequence[str],
                       text_report: dict | None, ctc_limit: dict) -> Path:
    counts = {s: sum(j.split == s for j in plan) for s in SPLITS}
    seconds = {s: sum(durations[j.index] for j in plan if j.split == s) for s in SPLITS}
    hours = {s: round(t / 3600, 4) for s, t in seconds.items()}
    hours["total"] = round(sum(durations) / 3600, 4)
    used: dict[str, dict[str, int]] = {}
    by_engine = {e: dict.fromkeys(SPLITS, 0) for e in engines}
    for j in plan:
        used.setdefault(j.speaker.id, dict.fromkeys(SPLITS, 0))[j.split] += 1
        by_engine[j.speaker.engine][j.split] += 1
    info = {
        "generator": "asrlab.synth", "version": SYNTH_VERSION,
        "sentence_generator": GENERATOR_VERSION if text_report is None else None,
        "text_file": text_report,
        "seed": seed, "engines": list(engines), "engine_versions": engine_versions(engines),
        "engine_utterances": by_engine, "ctc_limit": ctc_limit,
        "sample_rate": SAMPLE_RATE, "counts": counts, "hours": hours,
        "manifests": {s: f"{s}.jsonl" for s in SPLITS},
        "speakers": [{**s.to_dict(), "utterances": used.get(s.id, dict.fromkeys(SPLITS, 0))}
                     for s in speakers],
    }
    path = out_dir / "corpus.json"
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return path
