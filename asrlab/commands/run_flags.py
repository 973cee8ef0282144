"""The flags that decide a run's config, and so what its pre-flight checks, defined once for
`asrlab train` and `asrlab check` (the same flags give the same config:
asrlab.preflight.resolve_config)."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from asrlab.config import Config, ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="default",
                   help="named recipe: default, finetune (what --init-from fills in), seed-crnn, "
                        "seed-report (the original failing run)")
    p.add_argument("--config", type=Path, help="YAML config; applied over the preset")
    p.add_argument("--model", help="model name: crnn-sub4 (default), seed-crnn, conformer (its "
                                   "time subsampling decides CTC feasibility)")
    p.add_argument("--encoder", metavar="NAME_OR_DIR",
                   help="train on a pretrained speech encoder: a bundle name (`asrlab encoders` "
                        "lists them: whisper-tiny.en, whisper-base) or a folder (CTranslate2 "
                        "Whisper; transformers Whisper, wav2vec2, HuBERT, WavLM)")
    p.add_argument("--encoder-layers-trained", type=int, metavar="N",
                   help="with --encoder: 0 keeps it frozen (default: its outputs are computed "
                        "once), N trains its top N layers (at a tenth of the rate, after a "
                        "frozen epoch), -1 all of it")
    p.add_argument("--tokenizer", choices=["char", "bpe"])
    p.add_argument("--vocab-size", type=int, help="BPE vocabulary size")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="any config value, e.g. --set augment.freq_masks=0 (YAML syntax)")
    p.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT",
                   help="fine-tune: start from this trained model's weights (same architecture; "
                        "its model and feature settings are taken unless you set them), in a new "
                        "run folder with a fresh optimizer; fine-tuning defaults (lr 5e-4, "
                        "warmup 0.2 epochs, 20 epochs, early stop 6) fill what you do not set")
    p.add_argument("--recompute-cmvn", action="store_true", default=None,
                   help="with --init-from: estimate the feature statistics on this training set "
                        "(default: keep the source model's)")


def put(o: dict, section: str, key: str, value) -> None:
    """Set o[section][key] when the flag was given (not None)."""
    if value is not None:
        o.setdefault(section, {})[key] = value


def overrides(args, flags: dict | None = None) -> dict:
    """The shared flags -> {"section": {"key": value}}, only those given: --model, the verb's
    own `flags` (overrides already), --tokenizer, --vocab-size, then the --set items (over any
    of those), then --recompute-cmvn. Not --init-from: resolve_config takes it apart."""
    o: dict = {}
    put(o, "model", "name", args.model)
    if getattr(args, "encoder", None):
        o.setdefault("model", {})["name"] = "pretrained"
        o["model"].setdefault("pretrained", {})["source"] = args.encoder
    if getattr(args, "encoder_layers_trained", None) is not None:
        o.setdefault("model", {}).setdefault("pretrained", {})["layers_trained"] = \
            args.encoder_layers_trained
    for section, values in (flags or {}).items():
        o.setdefault(section, {}).update(values)
    if args.tokenizer:
        o["tokenizer"] = args.tokenizer
    if args.vocab_size:
        o["vocab_size"] = args.vocab_size
    apply_sets(o, args.set)
    put(o, "train", "recompute_cmvn", args.recompute_cmvn)
    return o


def apply_sets(o: dict, items: list[str]) -> None:
    """--set SECTION.KEY=VALUE (or KEY=VALUE for a top-level key, SECTION.PART.KEY=VALUE for a
    nested one: model.pretrained.stack=2) items into `o`, in order; values in YAML."""
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not all(key.split(".")):
            raise ConfigError(f"--set {item!r}: use SECTION.KEY=VALUE, e.g. --set train.lr=1e-4")
        *parents, name = key.split(".")
        node = o
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is a value, not a section")
        node[name] = yaml.safe_load(value)


def config_from_args(args, user: dict | None = None) -> Config:
    """The config the flags resolve to (not validated). `user`: the verb's overrides from every
    flag it was given (default: the shared flags', `overrides(args)`)."""
    from asrlab.preflight import resolve_config  # here: --help does not load torch

    return resolve_config(args.preset, args.config, overrides(args) if user is None else user,
                          args.init_from)
