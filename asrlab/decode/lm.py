"""Word n-gram language models in KenLM's formats: estimate an ARPA file, load it for decoding.

    report = build_lm(["train.jsonl"], order=3, out="lm.arpa")   # + lm.bin if build_binary exists
    lm = load_lm("lm.arpa")                                      # kenlm.Model + unigram list

Estimation is interpolated modified Kneser-Ney, the same model KenLM's `lmplz` estimates
(Chen & Goodman 1998; Heafield et al. 2013: adjusted continuation counts, three discounts per
order from counts-of-counts, unigrams interpolated with the uniform distribution). It is written
here in Python because `lmplz` needs Boost and a C++ build, and transcripts of a training set are
small enough that pure Python takes seconds. The ARPA file it writes loads in `kenlm.Model` (the
tests check that, and that every context's probabilities sum to one). A KenLM binary is also
written when KenLM's `build_binary` is on PATH (or named by $KENLM_BUILD_BINARY).

Text: one sentence a line, or a manifest (.jsonl, its `text` fields). Each sentence goes through
the acoustic model's text rules (`asrlab.data.text.TextNormalizer`: the same normalization its
training transcripts had), then words are split on whitespace: the LM must see words exactly as
the model spells them ("DON'T" in a LibriSpeech transcript is "don't" to a lowercase model).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from asrlab.data.text import TextNormalizer

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LOG10_ZERO = -99.0  # how ARPA files write log10(0) (the probability of predicting <s>)
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # when counts-of-counts are too sparse to estimate them


class LMError(ValueError):
    """A language model that cannot be built or loaded; the message says why and what to do."""


# ---- reading text ----------------------------------------------------------------------------

def read_sentences(path: str | Path, normalizer: TextNormalizer | None = None
                   ) -> Iterator[list[str]]:
    """Sentences (lists of words) from a text file (one a line) or a manifest (.jsonl: `text`),
    each normalized by `normalizer` (None: words as they are).

    A manifest line without a string `text` raises LMError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such text file or manifest")
    manifest = path.suffix in (".jsonl", ".json")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if manifest:
                try:
                    text = json.loads(line)["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise LMError(f"{path}:{lineno}: expected a JSON object with a \"text\" field "
                                  f"({type(e).__name__}: {e})") from None
                if not isinstance(text, str):
                    raise LMError(f"{path}:{lineno}: \"text\" must be a string")
            else:
                text = line
            words = (normalizer.normalize(text) if normalizer is not None else text).split()
            if words:
                yield words


# ---- estimation ------------------------------------------------------------------------------

Ngram = tuple[str, ...]


@dataclass
class NgramModel:
    """Per order n (1..N): {ngram: (log10 prob, log10 backoff or None)}."""
    order: int
    grams: dict[int, dict[Ngram, tuple[float, float | None]]]
    discounts: dict[int, tuple[float, float, float]]
    notes: list[str] = field(default_factory=list)

    @property
    def vocabulary(self) -> list[str]:
        return [g[0] for g in self.grams[1]]


def count_ngrams(sentences: Iterable[list[str]], order: int) -> dict[int, Counter]:
    """Raw counts of every n-gram (n <= order) in `<s> words </s>` (one <s>, as lmplz pads)."""
    counts: dict[int, Counter] = {n: Counter() for n in range(1, order + 1)}
    for words in sentences:
        padded = [BOS, *words, EOS]
        for n in range(1, order + 1):
            c = counts[n]
            for i in range(len(padded) - n + 1):
                c[tuple(padded[i:i + n])] += 1
    return counts


def adjusted_counts(raw: dict[int, Counter], order: int) -> dict[int, Counter]:
    """Kneser-Ney's counts: the highest order and n-grams starting with <s> keep their raw
    count; every other lower-order n-gram counts the distinct words seen to its left."""
    adj: dict[int, Counter] = {order: Counter(raw[order])}
    for n in range(order - 1, 0, -1):
        left = Counter(g[1:] for g in raw[n + 1])  # distinct left extensions of each n-gram
        adj[n] = Counter({g: (c if g[0] == BOS else left[g]) for g, c in raw[n].items()})
    return adj


def kn_discounts(counts: Counter) -> tuple[tuple[float, float, float], str | None]:
    """Modified KN discounts D1, D2, D3+ from counts-of-counts (Chen & Goodman's estimate).

    Tiny corpora can lack 2-, 3- or 4-counts; then fixed discounts are used and a note says so
    (lmplz refuses such data; a toy LM is still useful for checking a decoder)."""
    t = Counter(v for v in counts.values() if v <= 4)
    t1, t2, t3, t4 = (t[k] for k in (1, 2, 3, 4))
    if min(t1, t2, t3, t4) > 0:
        y = t1 / (t1 + 2 * t2)
        d = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
        if all(0 < dk < k for dk, k in zip(d, (1, 2, 3))):
            return d, None
    return FALLBACK_DISCOUNTS, (f"counts-of-counts {t1, t2, t3, t4} too sparse for modified KN "
                                f"discounts; used fixed {FALLBACK_DISCOUNTS}")


def estimate(sentences: Iterable[list[str]], order: int = 3) -> NgramModel:
    """Interpolated modified Kneser-Ney; returns ARPA-ready log10 probabilities and backoffs.

    p(w|h) = (a(hw) - D(a(hw))) / sum_v a(hv) + gamma(h) p(w|h'),
    gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / sum_v a(hv), and gamma is h's backoff.
    Unigrams interpolate with the uniform distribution over the vocabulary (<unk> included,
    <s> excluded: it is never predicted)."""
    if not 1 <= order <= 6:
        raise LMError(f"order {order}: use 1 to 6 (KenLM's default build supports up to 6)")
    raw = count_ngrams(sentences, order)
    if not raw[1]:
        raise LMError("no words in the text: nothing to build a language model from")
    adj = adjusted_counts(raw, order)
    notes: list[str] = []
    discounts = {}
    for n in range(1, order + 1):
        d, note = kn_discounts(adj[n])
        discounts[n] = d
        if note:
            notes.append(f"order {n}: {note}")

    # unigrams (a(<s>) is excluded from the distribution; <unk> gets only the uniform share)
    uni = {g: a for g, a in adj[1].items() if g != (BOS,)}
    vocab = [g for g in uni] + ([(UNK,)] if (UNK,) not in uni else [])
    interp, gamma_mass = _discounted(uni, discounts[1])
    uniform = 1.0 / len(vocab)
    probs: dict[int, dict[Ngram, float]] = {
        1: {g: interp.get(g, 0.0) + gamma_mass * uniform for g in vocab}}
    backoffs: dict[int, dict[Ngram, float]] = {}

    for n in range(2, order + 1):
        by_context: dict[Ngram, dict[Ngram, int]] = defaultdict(dict)
        for g, a in adj[n].items():
            by_context[g[:-1]][g] = a
        probs[n] = {}
        backoffs[n - 1] = {}
        for h, grams in by_context.items():
            interp, gamma = _discounted(grams, discounts[n])
            backoffs[n - 1][h] = gamma
            lower = probs[n - 1]
            for g, p in interp.items():
                probs[n][g] = p + gamma * lower[g[1:]]

    grams: dict[int, dict[Ngram, tuple[float, float | None]]] = {}
    for n in range(1, order + 1):
        bo = backoffs.get(n, {})
        table = {}
        if n == 1:
            table[(BOS,)] = (LOG10_ZERO, _log10(bo[(BOS,)]) if (BOS,) in bo else None)
        for g, p in probs[n].items():
            table[g] = (_log10(p), _log10(bo[g]) if g in bo else None)
        grams[n] = table
    return NgramModel(order, grams, discounts, notes)


def _discounted(grams: dict[Ngram, int], d: tuple[float, float, float]
                ) -> tuple[dict[Ngram, float], float]:
    """One context's discounted probabilities and the mass (gamma) left for the lower order."""
    total = sum(grams.values())
    disc = {g: d[min(a, 3) - 1] for g, a in grams.items()}
    probs = {g: (a - disc[g]) / total for g, a in grams.items()}
    return probs, sum(disc.values()) / total


def _log10(p: float) -> float:
    return math.log10(p) if p > 0 else LOG10_ZERO


def write_arpa(model: NgramModel, path: str | Path) -> Path:
    """ARPA text: the \\data\\ header, then one section per order, `log10p<TAB>words[<TAB>bo]`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for n in range(1, model.order + 1):
            f.write(f"ngram {n}={len(model.grams[n])}\n")
        for n in range(1, model.order + 1):
            f.write(f"\n\\{n}-grams:\n")
            for g, (lp, bo) in sorted(model.grams[n].items()):
                words = " ".join(g)
                f.write(f"{lp:.6f}\t{words}\t{bo:.6f}\n" if bo is not None and n < model.order
                        else f"{lp:.6f}\t{words}\n")
        f.write("\n\\end\\\n")
    os.replace(tmp, path)
    return path


def write_unigrams(model: NgramModel, path: str | Path) -> Path:
    """The word list beam search needs beside a binary LM (an ARPA file carries its own)."""
    words = sorted(w for w in model.vocabulary if w not in (BOS, EOS, UNK))
    Path(path).write_text("".join(w + "\n" for w in words), encoding="utf-8")
    return Path(path)


# ---- building (the `asrlab lm build` command) ------------------------------------------------

@dataclass
class BuildReport:
    arpa: Path
    binary: Path | None
    unigrams: Path
    order: int
    sentences: int
    words: int
    vocabulary: int
    ngrams: dict[int, int]
    discounts: dict[int, tuple[float, float, float]]
    notes: list[str]
    text: dict | None = None  # the text rules the sentences went through (TextNormalizer)

    def summary(self) -> dict:
        return {"arpa": str(self.arpa), "binary": str(self.binary) if self.binary else None,
                "unigrams": str(self.unigrams), "order": self.order, "sentences": self.sentences,
                "words": self.words, "vocabulary": self.vocabulary,
                "ngrams": {str(k): v for k, v in self.ngrams.items()},
                "discounts": {str(k): [round(x, 4) for x in v] for k, v in self.discounts.items()},
                "text": self.text, "notes": self.notes}


def lm_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """OUT (with or without .arpa) -> (OUT.arpa, OUT.bin, OUT.unigrams.txt)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".arpa", ".bin", ".binary") else out
    return (stem.with_name(stem.name + ".arpa"), stem.with_name(stem.name + ".bin"),
            stem.with_name(stem.name + ".unigrams.txt"))


def build_lm(texts: list[str | Path], order: int, out: str | Path, binary: bool = True,
             normalizer: TextNormalizer | None = None) -> BuildReport:
    """Estimate an LM from `texts`, normalized by the acoustic model's text rules (None: as
    they are; `asrlab lm build` always passes the model's or the config's)."""
    sentences = [s for t in texts for s in read_sentences(t, normalizer)]
    if not sentences:
        raise LMError(f"{', '.join(map(str, texts))}: no sentences found")
    model = estimate(sentences, order)
    arpa, bin_path, uni = lm_paths(out)
    write_arpa(model, arpa)
    write_unigrams(model, uni)
    notes = list(model.notes)
    built = None
    if binary:
        built, note = build_binary(arpa, bin_path)
        if note:
            notes.append(note)
    return BuildReport(arpa, built, uni, order, len(sentences), sum(map(len, sentences)),
                       len(model.grams[1]), {n: len(g) for n, g in model.grams.items()},
                       model.discounts, notes,
                       normalizer.to_dict() if normalizer is not None else None)


def build_binary(arpa: Path, out: Path) -> tuple[Path | None, str | None]:
    """KenLM's binary format via its `build_binary` tool when installed (faster to load);
    the ARPA file works everywhere the binary does, so its absence is only a note."""
    tool = os.environ.get("KENLM_BUILD_BINARY") or shutil.which("build_binary")
    if not tool:
        return None, ("KenLM's build_binary is not installed: wrote ARPA only (loads in "
                      "kenlm.Model as is; install KenLM's tools for the faster binary)")
    proc = subprocess.run([tool, str(arpa), str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"build_binary failed ({proc.stderr.strip()[-300:]}): wrote ARPA only"
    return out, None


# ---- loading for decoding --------------------------------------------------------------------

@dataclass
class LoadedLM:
    path: Path
    model: object  # kenlm.Model
    unigrams: list[str]

    @property
    def order(self) -> int:
        return int(self.model.order)


_CACHE: dict[Path, LoadedLM] = {}


def load_lm(path: str | Path) -> LoadedLM:
    """A KenLM model (ARPA or binary) and its word list; cached, since the server, tune-lm and
    evaluate may ask for the same one many times. A binary needs OUT.unigrams.txt or OUT.arpa
    beside it (written by `asrlab lm build`) for its word list."""
    path = Path(path).resolve()
    if path in _CACHE:
        return _CACHE[path]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such language model (build one with "
                                f"`asrlab lm build --text TRAIN.jsonl --order 3 --out lm.arpa`)")
    try:
        import kenlm
    except ImportError:
        raise LMError("the kenlm module is not installed: pip install kenlm") from None
    try:
        model = kenlm.Model(str(path))
    except (OSError, RuntimeError) as e:
        raise LMError(f"{path}: not a KenLM ARPA or binary language model ({e})") from None
    lm = LoadedLM(path, model, read_unigrams(path))
    _CACHE[path] = lm
    return lm


def read_unigrams(path: Path) -> list[str]:
    arpa, _, uni = lm_paths(path)
    if path.suffix == ".arpa" or (not uni.is_file() and arpa.is_file()):
        return sorted(arpa_unigrams(path if path.suffix == ".arpa" else arpa))
    if uni.is_file():
        return [w for w in uni.read_text(encoding="utf-8").split() if w]
    raise LMError(f"{path}: a binary LM needs its word list: {uni} or {arpa} beside it")


def arpa_unigrams(path: Path) -> set[str]:
    words: set[str] = set()
    with open(path, encoding="utf-8") as f:
        inside = False
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                inside = True
            elif inside and (line.startswith("\\") or not line):
                if words:
                    break
            elif inside:
                parts = line.split("\t")
                if len(parts) >= 2 and parts[1] not in (BOS, EOS, UNK):
                    words.add(parts[1])
    if not words:
        raise LMError(f"{path}: no unigrams found; is it an ARPA file?")
    return words
