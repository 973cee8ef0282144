"""Fine-tuning (`asrlab train --init-from RUN_OR_CHECKPOINT`): start from a trained model.

- `source_defaults`: the config a fine-tuning run resolves to takes the source's features,
  model, text rules and tokenizer settings (so that its weights fit) and `config.FINETUNE_TRAIN`
  for every key the user does not set (asrlab.preflight.resolve_config calls it);
- `load_init`: the source checkpoint, checked against this run's architecture
  (`architecture_differences`; dropout and initialization may differ);
- `init_tokenizer`: the source's vocabulary when it spells every training transcript;
- `init_model`: the source's weights, with a new output layer when the vocabulary is new
  (`vocabulary_change` says why).

The fresh optimizer and schedule, the CMVN choice (`train.recompute_cmvn`) and the encoder
freeze (`callbacks.EncoderFreeze`) are the trainer's and the pre-flight's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import yaml

from asrlab.checkpoint import Checkpoint
from asrlab.checkpoint import load as load_checkpoint
from asrlab.config import FINETUNE_TRAIN, Config, ConfigError, deep_merge, key_paths
from asrlab.data.manifest import read_transcripts
from asrlab.data.tokenizer import Tokenizer
from asrlab.models import build_model

# Settings that do not change the network's shape: they may differ from the source model.

class InitFromError(ValueError):
    """The --init-from model cannot start this run (unreadable, or another architecture); the
    message says what to do. The pre-flight turns it into a refusal to train."""


def source_defaults(init_from: str | Path, user: Mapping, config_file: Path | None = None,
                    preset_name: str = "default") -> dict:
    """Overrides ({"section": {"key": value}}) for a run fine-tuned from `init_from`: the
    source's features, model, text rules and tokenizer settings, and FINETUNE_TRAIN under the
    default preset, for every key neither `user` (flags, --set) nor the `config_file` sets,
    beside the user's values."""
    try:
        source = load_checkpoint(init_from).config.to_dict()
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"--init-from {init_from}: {e}") from None
    user_file = yaml.safe_load(Path(config_file).read_text()) or {} if config_file else {}
    defaults = {"features": source["features"], "model": source["model"],
                "text": source["text"], "tokenizer": source["tokenizer"],
                "vocab_size": source["vocab_size"]}
    if preset_name == "default":
        defaults["train"] = FINETUNE_TRAIN
    return under_user(defaults, user, user_file)


def under_user(defaults: Mapping, user: Mapping, user_file: Mapping = {}) -> dict:
    """`user`'s overrides, plus each value of `defaults` that neither `user` nor `user_file`
    sets (nor a section above it: a user's {"text": {...}} keeps all of its own)."""
    taken = key_paths(user) | key_paths(user_file)
    o = deep_merge({}, user)
    for path in sorted(key_paths(defaults)):
        if any(path[:n] in taken for n in range(1, len(path) + 1)):
            continue
        node, value = o, defaults
        for part in path[:-1]:
            node, value = node.setdefault(part, {}), value[part]
        node[path[-1]] = value[path[-1]]
    return o


def architecture_differences(cfg: Config, source: Config) -> list[str]:
    """'section.key: source A, this run B' for every feature or model setting that would make
    the source's weights meaningless here (Config.architecture: dropout, initialization and
    how much of a pretrained encoder trains may differ)."""
    mine, theirs = cfg.architecture(), source.architecture()
    return [f"{key}: source {theirs.get(key)!r}, this run {mine.get(key)!r}"
            for key in dict.fromkeys([*theirs, *mine]) if mine.get(key) != theirs.get(key)]


def load_init(cfg: Config, device: str | torch.device = "cpu") -> Checkpoint:
    """The --init-from checkpoint, checked against this run's architecture."""
    path = cfg.train.init_from
    try:
        source = load_checkpoint(path, device=device)
    except (FileNotFoundError, ValueError) as e:
        raise InitFromError(f"--init-from {path}: {e}") from None
    differ = architecture_differences(cfg, source.config)
    if differ:
        raise InitFromError(
            f"--init-from {path}: the model to fine-tune has another architecture than this "
            f"run:\n  " + "\n  ".join(differ) + "\nDrop the settings that change it (with "
            "--init-from, asrlab train takes the source's model and features by default), or "
            "train from scratch without --init-from.")
    return source


def init_tokenizer(cfg: Config, source: Checkpoint, train_path) -> Tokenizer | None:
    """The source's vocabulary when it can spell every training transcript (and the tokenizer
    settings agree); None otherwise: a new vocabulary and a new output layer."""
    if cfg.tokenizer != source.config.tokenizer or (
            cfg.tokenizer == "bpe" and cfg.vocab_size != source.config.vocab_size):
        return None
    utts = read_transcripts(train_path, cfg.text, strict=False).utterances
    if any(source.tokenizer.oov(u.text) for u in utts):
        return None
    return source.tokenizer


def init_model(cfg: Config, source: Checkpoint, tokenizer: Tokenizer
               ) -> tuple[torch.nn.Module, str]:
    """A model with the source's weights; the output layer is new when the vocabulary is.
    Returns (model, what was done, for the log and the console)."""
    model = build_model(cfg, tokenizer.vocab_size)
    weights = source.model.state_dict()
    same = tokenizer.to_dict() == source.tokenizer.to_dict()
    if same:
        model.load_state_dict(weights)
        return model, (f"initialized from {source.path}: every weight, vocabulary of "
                       f"{tokenizer.vocab_size} symbols kept")
    head = {k for k in weights if k.startswith("head.")}
    model.load_state_dict({k: v for k, v in weights.items() if k not in head}, strict=False)
    return model, (f"initialized from {source.path}: encoder weights kept; output layer "
                   f"re-initialized because the vocabulary differs (source "
                   f"{source.tokenizer.vocab_size} symbols, this run {tokenizer.vocab_size}: "
                   f"{vocabulary_change(source.tokenizer, tokenizer)})")


def vocabulary_change(old: Tokenizer, new: Tokenizer) -> str:
    if old.kind != new.kind:
        return f"{old.kind} -> {new.kind} tokenizer"
    added = [s for s in new.to_dict().get("symbols", []) if s not in set(old.to_dict().get(
        "symbols", []))]
    return f"new symbols {''.join(added)!r}" if added else "different symbols"
