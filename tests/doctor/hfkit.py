"""Tiny transformers speech models and data for the doctor's tests: nothing downloaded.

`tiny_ctc` is a randomly initialized Wav2Vec2ForCTC (about 40k parameters) with the real
architecture's frame rate: its convolutions subsample by 10 x 8 x 4 = 320 samples, 50 frames a
second at 16 kHz. `tone_items` is a task it can learn in a few hundred updates: each label is a
60 ms tone of its own frequency (3 encoder frames), in light noise, the waveform normalized.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

RATE = 16000
SEGMENT = 960  # samples per label: 3 encoder frames
FREQS = (300.0, 700.0, 1300.0, 2300.0, 3700.0)  # label 1..5
LETTERS = "abcde"  # the tone task's labels as a tokenizer spells them


def tiny_config(vocab_size: int = 6, **overrides):
    from transformers import Wav2Vec2Config

    kw = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=64, conv_dim=(32, 32, 32), conv_stride=(10, 8, 4),
              conv_kernel=(10, 8, 4), num_conv_pos_embeddings=16,
              num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
              do_stable_layer_norm=True, pad_token_id=0, mask_time_prob=0.0, layerdrop=0.0,
              ctc_loss_reduction="mean", hidden_dropout=0.0, attention_dropout=0.0,
              activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0)
    return Wav2Vec2Config(**{**kw, **overrides})


def tiny_ctc(seed: int = 0, **overrides):
    from transformers import Wav2Vec2ForCTC

    torch.manual_seed(seed)
    return Wav2Vec2ForCTC(tiny_config(**overrides))


def tone_wave(labels, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(SEGMENT) / RATE
    x = np.concatenate([np.sin(2 * np.pi * FREQS[int(k) - 1] * t + rng.uniform(0, 6))
                        for k in labels])
    x = x + 0.05 * rng.standard_normal(x.size)
    return ((x - x.mean()) / x.std()).astype(np.float32)  # as do_normalize makes it


def tone_items(n: int, seed: int = 0, informative: bool = True, labels=(2, 5)) -> list[dict]:
    """n utterances of 2-4 random labels. `informative=False`: the audio is that of other
    random labels, so it says nothing about its transcript (a pipeline pairing audio with the
    wrong transcripts, or destroying it)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lab = rng.integers(1, 6, rng.integers(*labels))
        heard = lab if informative else rng.integers(1, 6, lab.size)
        out.append({"input_values": torch.from_numpy(tone_wave(heard, rng)),
                    "labels": torch.as_tensor(lab, dtype=torch.long)})
    return out


def collate(items: list[dict], label_pad: int = -100, mask: bool = True) -> dict:
    """Zero-padded input_values (+ attention_mask) and -100 padded labels, as transformers'
    CTC examples collate them."""
    n = max(len(it["input_values"]) for it in items)
    x = torch.zeros(len(items), n)
    m = torch.zeros(len(items), n, dtype=torch.long)
    for i, it in enumerate(items):
        x[i, :len(it["input_values"])] = it["input_values"]
        m[i, :len(it["input_values"])] = 1
    labels = torch.nn.utils.rnn.pad_sequence([it["labels"] for it in items], batch_first=True,
                                             padding_value=label_pad)
    return {"input_values": x, "labels": labels, **({"attention_mask": m} if mask else {})}


def fit(model, data: list[dict], out: Path, callback, steps: int, lr: float = 1e-3,
        batch: int = 4, processing_class=None, collator=collate, trainer_cls=None, **args):
    """A real transformers Trainer on CPU (no logging, no checkpoints)."""
    from transformers import Trainer, TrainingArguments

    trainer_cls = trainer_cls or Trainer

    targs = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch,
                              learning_rate=lr, report_to=[], save_strategy="no",
                              logging_strategy="no", disable_tqdm=True, use_cpu=True,
                              dataloader_num_workers=0, seed=0, **args)
    trainer = trainer_cls(model=model, args=targs, train_dataset=data, data_collator=collator,
                          processing_class=processing_class, callbacks=[callback])
    trainer.train()
    return trainer


def char_tokenizer(folder: Path, symbols: str = LETTERS + "hlo", pad_last: bool = False):
    """A Wav2Vec2CTCTokenizer from a vocab.json written here: "<pad>" first (id 0, the blank
    of transformers' CTC heads) or, `pad_last`, after the letters, as a vocabulary built from
    the transcripts' characters and extended afterwards often has it."""
    from transformers import Wav2Vec2CTCTokenizer

    letters = list(dict.fromkeys(symbols)) + ["|"]
    specials = ["<unk>"]
    order = letters + specials + ["<pad>"] if pad_last else ["<pad>"] + letters + specials
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.json"
    path.write_text(json.dumps({t: i for i, t in enumerate(order)}))
    return Wav2Vec2CTCTokenizer(str(path), unk_token="<unk>", pad_token="<pad>",
                                word_delimiter_token="|")


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def only(findings, code: str):
    """The first finding with this code (fails the test when there is none)."""
    hits = [f for f in findings if f.code == code]
    assert hits, f"no {code} among {codes(findings)}"
    return hits[0]
