"""Voices the model never heard: leave-one-engine-out on synthetic speech, and FSDD
leave-one-speaker-out with synthetic pretraining + fine-tuning (`asrlab train --init-from`).

(a) engines: one multi-engine corpus (`asrlab synth`, every installed engine: espeak, flite,
    festival, piper); for each engine E, train on the other engines' voices and test on E's test
    utterances (CER/WER greedy and with a word bigram LM on the training transcripts), beside
    the seen engines' test utterances.
(b) fsdd: for each FSDD speaker held out (bench/fsdd.py's splits, 4 folds), two pipelines with
    the same features and model (bench/fsdd.py's FSDD_SETTINGS, 8 kHz features):
      scratch   train on the three real speakers alone (bench/fsdd.py's recipe);
      finetune  pretrain once on synthetic speech of every engine (the (a) corpus's sentences
                plus --digit-strings synthetic digit strings), then fine-tune on the three real
                speakers (--init-from, lr 5e-4, warmup 0.2 epochs).
    Greedy and with the digit bigram LM. bench/fsdd_reference.py (PocketSphinx) scores the same
    held-out files when pocketsphinx is installed.

Training lengths are fixed in epochs (no time budget), so results do not depend on how much
CPU the run got; wall times are reported beside them. Runs that do not depend on each other (one
per seed and held-out engine, or per seed, fold and pipeline once the pretraining is there) run
--jobs at a time, each in its own process with --threads torch threads.

Augmentation ablations: each --variant NAME=KEY=VALUE[,KEY=VALUE...] (asrlab `--set` keys; NAME=
alone is the default recipe) trains every held-out engine of (a) once more with those settings,
one table row each, e.g. `--variant base= --variant reverb=augment.reverb_prob=0.3`.

    python bench/held_out_voices.py --out /tmp/voices --quick          # smoke run, minutes
    python bench/held_out_voices.py --out /tmp/voices --part engines --seeds 0,1 --threads 1
    python bench/held_out_voices.py --out /tmp/voices --part fsdd --seeds 0,1
    python bench/held_out_voices.py --out /tmp/voices --part pretrain --seeds 0,1   # (b)'s first half

Writes OUT/results.json and OUT/results.md (medians over seeds) and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from copy import copy
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

from bench_results import write_results  # bench/bench_results.py
from fsdd import (FSDD_SETTINGS, NARROWBAND, RECORDINGS, SPEAKERS, checked,  # bench/fsdd.py
                  digit_lm, pct, read_rows, run_speaker, tts_corpus, write_rows)
from recipe_sweep import parse_variant  # bench/recipe_sweep.py

# Quick mode: a tiny corpus and model, one epoch each: checks that every path runs.
QUICK_MODEL = ["model.hidden=48", "model.layers=1", "model.conv_channels=8"]
FINETUNE_SETTINGS = ["train.lr=0.0005", "train.warmup_epochs=0.2"]  # config.FINETUNE_TRAIN


@dataclass
class EngineResult:
    seed: int
    held_out: str
    n: int
    cer: float
    wer: float
    cer_lm: float | None  # None with --no-lm
    wer_lm: float | None
    seen_cer: float  # the training engines' own test utterances
    seen_wer: float
    val_cer: float
    epochs: int
    updates: int
    train_minutes: float
    variant: str = "default"


def parallel(fn, units: list[tuple], args) -> list:
    """fn(*unit) for each unit, --jobs at a time, each in a fresh (spawned) process that sets
    its own torch threads; in this process, one after another, when --jobs is 1."""
    if args.jobs <= 1:
        return [fn(*unit) for unit in units]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_in_child, [(fn, unit, args.threads) for unit in units]))


def _in_child(job):
    fn, unit, threads = job
    import torch

    torch.set_num_threads(threads)
    return fn(*unit)


def train_cli(train: Path, val: Path, run: Path, epochs: int, args, sets: list[str]) -> dict:
    """`asrlab train` for a fixed number of epochs (no time budget); returns its metrics. Quick
    mode forces past the doctor's data errors (a 30-sentence split can miss a letter)."""
    from asrlab.cli import main as asrlab

    cmd = ["train", "--train", str(train), "--val", str(val), "--out", str(run), "--epochs",
           str(epochs), "--max-minutes", "0", "--threads", str(args.threads), "--seed",
           str(args.seed), "--no-progress"] + (["--force"] if args.quick else [])
    for item in sets + list(args.set):
        cmd += ["--set", item]
    print("asrlab " + " ".join(cmd), flush=True)
    if asrlab(cmd) != 0:
        raise RuntimeError(f"training failed: see {run}/train.log")
    return read_rows(run / "metrics.jsonl")


def synthetic_corpus(args) -> dict[str, Path]:
    """The multi-engine sentence corpus (made once for every seed), manifests with absolute
    paths so that subsets can be written anywhere."""
    from asrlab.synth import available_engines, synthesize_corpus

    folder = args.corpus_dir or args.out / "corpus"
    if not (folder / "corpus.json").is_file():
        engines = tuple(args.engines.split(",")) if args.engines else tuple(available_engines())
        t0 = time.time()
        synthesize_corpus(folder, *args.corpus, seed=args.corpus_seed, engines=engines,
                          n_speakers=args.speakers, progress=False)
        print(f"synthesized {sum(args.corpus)} utterances with {', '.join(engines)} in "
              f"{time.time() - t0:.0f} s", flush=True)
    out = {}
    for split in ("train", "val", "test"):
        rows = [{**r, "audio_filepath": str((folder / r["audio_filepath"]).resolve())}
                for r in read_rows(folder / f"{split}.jsonl")]
        out[split] = write_rows(args.out / f"corpus_{split}_abs.jsonl", rows)
    return out


def held_out_engine(corpus: dict[str, Path], engine: str, folder: Path, args,
                    variant: str = "default", sets: tuple[str, ...] = ()) -> EngineResult:
    rows = {split: read_rows(path) for split, path in corpus.items()}
    seen = lambda split: [r for r in rows[split] if r["engine"] != engine]  # noqa: E731
    train = write_rows(folder / "train.jsonl", seen("train"))
    val = write_rows(folder / "val.jsonl", seen("val"))
    test = write_rows(folder / "test.jsonl", [r for r in rows["test"] if r["engine"] == engine])
    test_seen = write_rows(folder / "test_seen.jsonl", seen("test"))
    t0 = time.time()
    metrics = train_cli(train, val, folder / "run", args.epochs, args,
                        args.engine_sets + list(sets))
    minutes = (time.time() - t0) / 60
    from asrlab.evaluate import evaluate

    run = folder / "run"
    greedy = checked(evaluate(run, test, folder / "test.report.json"))
    lm = None if args.no_lm else checked(evaluate(run, test, None, digit_lm(train, folder)))
    other = checked(evaluate(run, test_seen, None))
    result = EngineResult(args.seed, engine, greedy.n, greedy.cer, greedy.wer,
                          lm and lm.cer, lm and lm.wer,  # a word bigram LM of the training text
                          other.cer, other.wer, min(m["val_cer"] for m in metrics), len(metrics),
                          metrics[-1]["step"], round(minutes, 2), variant)
    (folder / "result.json").write_text(json.dumps(asdict(result)))  # kept if a later run fails
    return result


def engines_part(args, seeds: list[int]) -> list[EngineResult]:
    corpus = synthetic_corpus(args)
    # the test split names every engine (a trimmed copy of a corpus may hold one engine's
    # training audio only where it is needed)
    engines = sorted({r["engine"] for r in read_rows(corpus["test"])})
    if len(engines) < 2:
        sys.exit(f"leave-one-engine-out needs two engines or more; the corpus has {engines}. "
                 f"Install flite and festival: sudo apt-get install -y flite festival "
                 f"festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts")
    if args.held_out_engines:
        engines = [e for e in engines if e in args.held_out_engines.split(",")]
    units = []
    for seed in seeds:
        for name, sets in args.variants:
            for engine in engines:
                ns = copy(args)
                ns.seed = seed
                folder = args.out / f"seed{seed}" / "engines" / (
                    f"held_out_{engine}" if name == "default" else f"{name}_held_out_{engine}")
                units.append((corpus, engine, folder, ns, name, tuple(sets)))
    results = parallel(held_out_engine, units, args)
    for r in results:
        print(engines_markdown([r]), flush=True)
    return results


def pretrain_run(args, seed: int) -> Path:
    return args.out / f"seed{seed}" / "fsdd" / "pretrain" / "run"


def pretrain_corpora(args) -> tuple[dict[str, Path], Path]:
    """The sentences and the digit strings (made once, before runs in parallel read them)."""
    from asrlab.synth import available_engines

    engines = tuple(args.engines.split(",")) if args.engines else tuple(available_engines())
    return synthetic_corpus(args), tts_corpus(args.out, args.digit_strings,
                                              args.corpus_seed + 7, engines)


def pretrain(args, seed: int) -> Path:
    """One model on synthetic sentences + digit strings of every engine, at FSDD's features
    (kept: a run folder with best.pt is used as it is, the corpus not even looked at)."""
    run = pretrain_run(args, seed)
    if (run / "best.pt").is_file():
        return run
    corpus, digits = pretrain_corpora(args)
    train = write_rows(run.parent / "train.jsonl", read_rows(corpus["train"]) + read_rows(digits))
    ns = copy(args)
    ns.seed = seed
    train_cli(train, corpus["val"], run, args.pretrain_epochs, ns,
              FSDD_SETTINGS + NARROWBAND + args.model_sets)
    return run


def pretrain_seeds(args, seeds: list[int]) -> list[Path]:
    """One pretraining per seed, those not yet made in parallel, after the corpora they share."""
    missing = [s for s in seeds if not (pretrain_run(args, s) / "best.pt").is_file()]
    if missing:
        pretrain_corpora(args)
        parallel(pretrain, [(args, s) for s in missing], args)
    return [pretrain_run(args, s) for s in seeds]


def fsdd_part(args, seeds: list[int]) -> dict[int, dict[str, list]]:
    from asrlab.data.prepare import prepare

    prep = prepare("fsdd", args.recordings, args.out / "fsdd_all.jsonl")
    all_rows = read_rows(prep.manifest)
    pretrain_seeds(args, seeds)  # first; then every fold and pipeline at once
    units = []
    for seed in seeds:
        for spk in args.held_out:
            for pipeline in args.pipelines:
                ns = copy(args)
                ns.seed = seed
                ns.out = args.out / f"seed{seed}" / "fsdd" / pipeline
                ns.minutes, ns.narrowband, ns.lm, ns.tts, ns.tts_flite = 0, True, not args.no_lm, 0, 0
                ns.model, ns.tokenizer, ns.utterance_mean, ns.speed_perturb, ns.vtlp = \
                    None, "char", False, False, None
                ns.set = args.model_sets + list(args.set)
                ns.epochs = args.scratch_epochs
                if pipeline == "finetune":
                    ns.set = ns.set + [f"train.init_from={pretrain_run(args, seed)}"] + \
                        FINETUNE_SETTINGS
                    ns.epochs = args.finetune_epochs
                units.append((all_rows, spk, ns.out, ns))
    results = parallel(fold, units, args)
    out: dict[int, dict[str, list]] = {s: {p: [] for p in args.pipelines} for s in seeds}
    for (_, _, _, ns), r in zip(units, results):
        out[ns.seed][ns.out.name].append(asdict(r))
    return out


def fold(all_rows: list[dict], speaker: str, out: Path, args):
    """One FSDD fold and pipeline (bench/fsdd.py's run_speaker); its result also goes to the
    fold's result.json, so a later failure does not lose it."""
    result = run_speaker(all_rows, speaker, out, args)
    (out / f"held_out_{speaker}" / "result.json").write_text(json.dumps(asdict(result)))
    return result


def reference(args) -> None:
    """PocketSphinx on the same held-out files (made by whichever pipeline ran), when
    installed."""
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        print("reference: pocketsphinx is not installed (pip install 'asrlab[bench]'); "
              "docs/benchmarks.md has its FSDD numbers (27.8% single-digit WER)", flush=True)
        return
    import fsdd_reference

    fsdd_reference.main(["--fsdd-out", str(args.out / f"seed{args.seed}" / "fsdd" /
                                            args.pipelines[0]),
                         "--held-out", ",".join(args.held_out)])


# ---- tables ---------------------------------------------------------------------------------

def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def engines_markdown(results: list[EngineResult]) -> str:
    lines = ["| variant | held-out engine | seeds | n | CER | WER | CER, LM | WER, LM "
             "| seen engines CER / WER | val CER | epochs / updates | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    variants = list(dict.fromkeys(r.variant for r in results))  # in the order given
    for variant, engine in [(v, e) for v in variants for e in sorted({r.held_out for r in results})]:
        rs = [r for r in results if r.held_out == engine and r.variant == variant]
        if not rs:
            continue
        m = lambda name: median(getattr(r, name) for r in rs)  # noqa: E731
        lines.append(f"| {variant} | {engine} | {','.join(str(r.seed) for r in rs)} | {rs[0].n} | "
                     f"{pct(m('cer'))} | {pct(m('wer'))} | {pct(m('cer_lm'))} | "
                     f"{pct(m('wer_lm'))} | {pct(m('seen_cer'))} / {pct(m('seen_wer'))} | "
                     f"{pct(m('val_cer'))} | {rs[0].epochs} / {rs[0].updates} | "
                     f"{m('train_minutes'):.1f} |")
    return "\n".join(lines)


def fsdd_markdown(runs: dict[int, dict[str, list]]) -> str:
    """Per pipeline: the mean over folds of each seed, then the median over seeds."""
    keys = ("single_wer", "single_wer_lm", "strings_wer", "strings_wer_lm", "val_cer")
    lines = ["| pipeline | seeds | folds | WER single digits | WER single, LM | WER strings "
             "| WER strings, LM | val CER (seen speakers) |", "|---|---|---|---|---|---|---|---|"]
    for pipeline in ("scratch", "finetune"):
        if not any(by_pipeline.get(pipeline) for by_pipeline in runs.values()):
            continue  # not run (--pipelines)
        per_seed = {k: [] for k in keys}
        folds = set()
        for by_pipeline in runs.values():
            rows = by_pipeline.get(pipeline, [])
            folds |= {r["held_out"] for r in rows}
            for k in keys:
                vals = [r[k] for r in rows if r[k] is not None]
                if vals:
                    per_seed[k].append(sum(vals) / len(vals))
        lines.append(f"| {pipeline} | {','.join(map(str, runs))} | {len(folds)} | " +
                     " | ".join(pct(median(per_seed[k])) for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/held_out_voices"))
    p.add_argument("--part", choices=["engines", "fsdd", "both", "pretrain"], default="both",
                   help="pretrain: only (b)'s synthetic pretraining, one per seed")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds (median reported)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    p.add_argument("--jobs", type=int, default=1, help="training runs at once (processes)")
    p.add_argument("--no-lm", action="store_true",
                   help="greedy only (no KenLM needed, e.g. on a box without the kenlm module)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE,...",
                   help="(a) a recipe variant for every held-out engine (ablations)")
    p.add_argument("--corpus-dir", type=Path,
                   help="(a)/(b) an existing corpus folder (corpus.json, train/val/test.jsonl) "
                        "instead of OUT/corpus")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny corpus and model, 1 epoch each, one FSDD fold")
    p.add_argument("--engines", help="TTS engines for the corpus (default: every installed one)")
    p.add_argument("--corpus", type=int, nargs=3, default=[1111, 99, 300],
                   metavar=("TRAIN", "VAL", "TEST"), help="synthetic sentence corpus sizes")
    p.add_argument("--corpus-seed", type=int, default=0)
    p.add_argument("--speakers", type=int, default=64)
    p.add_argument("--epochs", type=int, default=40, help="(a) epochs per held-out engine")
    p.add_argument("--held-out-engines", metavar="LIST",
                   help="(a) hold out only these engines (default: each in turn)")
    p.add_argument("--recordings", type=Path, default=RECORDINGS)
    p.add_argument("--held-out", default=",".join(SPEAKERS), help="(b) FSDD speakers, one fold each")
    p.add_argument("--strings", type=int, default=600, help="(b) joined FSDD digit strings")
    p.add_argument("--digit-strings", type=int, default=1500,
                   help="(b) synthetic digit strings added to the pretraining sentences")
    p.add_argument("--pipelines", default="scratch,finetune",
                   help="(b) which pipelines to run (comma-separated)")
    p.add_argument("--pretrain-epochs", type=int, default=20)
    p.add_argument("--finetune-epochs", type=int, default=15)
    p.add_argument("--scratch-epochs", type=int, default=30)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config overrides for every training run (e.g. augmentation ablations)")
    args = p.parse_args(argv)
    args.held_out = [s.strip() for s in args.held_out.split(",") if s.strip()]
    args.pipelines = [s.strip() for s in args.pipelines.split(",") if s.strip()]
    if not set(args.pipelines) <= {"scratch", "finetune"}:
        p.error(f"--pipelines: scratch and/or finetune, not {args.pipelines}")
    args.engine_sets, args.model_sets = [], []
    args.variants = [parse_variant(v) for v in args.variant] or [("default", [])]
    if args.quick:
        args.corpus, args.speakers, args.strings, args.digit_strings = [45, 9, 30], 12, 30, 30
        args.epochs = args.pretrain_epochs = args.finetune_epochs = args.scratch_epochs = 1
        args.held_out = args.held_out[:1]
        args.engine_sets = args.model_sets = QUICK_MODEL

    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    engine_results: list[EngineResult] = []
    fsdd_runs: dict[int, dict[str, list]] = {}
    seeds = [int(s) for s in args.seeds.split(",")]
    args.seed = seeds[0]
    if args.part == "pretrain":
        for run in pretrain_seeds(args, seeds):
            print(f"pretrained: {run}")
        return 0
    if args.part in ("engines", "both"):
        engine_results = engines_part(args, seeds)
        save(args, engine_results, fsdd_runs)
    if args.part in ("fsdd", "both"):
        fsdd_runs = fsdd_part(args, seeds)
    print(save(args, engine_results, fsdd_runs))
    for seed in seeds if fsdd_runs else []:  # after saving: the reference may fail on its own
        args.seed = seed
        reference(args)
    return 0


def save(args, engine_results: list[EngineResult], fsdd_runs: dict) -> str:
    tables = []
    if engine_results:
        tables.append("(a) held-out engine\n\n" + engines_markdown(engine_results))
    if fsdd_runs:
        tables.append("(b) FSDD held-out speaker\n\n" + fsdd_markdown(fsdd_runs))
    return write_results(args.out, {"engines": engine_results, "fsdd": fsdd_runs},
                         "\n\n".join(tables))


if __name__ == "__main__":
    sys.exit(main())
