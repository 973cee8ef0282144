"""Summable counters over CTC emissions (icefall-style): add batches, merge across ranks, read.

The numbers that tell a model stuck on blank from one learning: how often blank wins a frame,
how sure the model is of blank, how sure it is of its best non-blank symbol, and how many
distinct symbols it emits at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from asrlab.ctc import time_mask


@dataclass
class EmissionStats:
    frames: int = 0
    blank_wins: int = 0  # frames whose argmax is blank
    blank_prob_sum: float = 0.0
    max_nonblank_prob_sum: float = 0.0
    utterances: int = 0
    all_blank_utts: int = 0  # utterances whose every frame is blank (empty hypothesis)
    token_counts: dict[int, int] = field(default_factory=dict)  # argmax non-blank ids
    # second moments, for how much the output varies from frame to frame: a model whose
    # output ignores its input (e.g. initialized with tiny weights) has ~0 spread
    blank_prob_sq_sum: float = 0.0
    max_nonblank_prob_sq_sum: float = 0.0

    @torch.no_grad()
    def add(self, log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> None:
        """log_probs (B, T, V), lengths (B,) valid frames. Works in the log domain and
        reduces before exponentiating: cheap enough to run on every batch."""
        lp = log_probs.detach()
        if lp.dtype != torch.float32 and lp.dtype != torch.float64:
            lp = lp.float()
        B, T, V = lp.shape
        mask = time_mask(lengths.to(lp.device), T)  # (B, T)
        nonblank = _without(lp, blank)  # (B, T, V-1)
        nb_lp, nb_idx = nonblank.max(dim=-1)  # best non-blank per frame (one pass)
        blank_lp = lp[..., blank]
        blank_best = blank_lp >= nb_lp  # argmax is blank (ties go to blank, like argmax)
        pb, pn = blank_lp.exp() * mask, nb_lp.exp() * mask
        self.frames += int(mask.sum())
        self.blank_wins += int((blank_best & mask).sum())
        self.blank_prob_sum += float(pb.sum())
        self.max_nonblank_prob_sum += float(pn.sum())
        self.blank_prob_sq_sum += float((pb * pb).sum())
        self.max_nonblank_prob_sq_sum += float((pn * pn).sum())
        self.utterances += B
        self.all_blank_utts += int((blank_best | ~mask).all(dim=1).sum())
        ids = nb_idx + (nb_idx >= blank).long()  # back to vocabulary ids
        emitted = ids[mask & ~blank_best]
        if emitted.numel():
            counts = torch.bincount(emitted, minlength=V)
            for i in counts.nonzero().flatten().tolist():
                self.token_counts[i] = self.token_counts.get(i, 0) + int(counts[i])

    def merge(self, other: "EmissionStats") -> "EmissionStats":
        """Both counts summed (two ranks', two windows'): every field, token counts per id."""
        out = EmissionStats(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                               for f in fields(self) if f.name != "token_counts"},
                            token_counts=dict(self.token_counts))
        for k, v in other.token_counts.items():
            out.token_counts[k] = out.token_counts.get(k, 0) + v
        return out

    def per_frame(self, total: float) -> float:
        """A sum over frames as a mean over them (0.0 before any frame)."""
        return total / self.frames if self.frames else 0.0

    def spread(self, total: float, sq_total: float) -> float:
        """The standard deviation over frames of a value, from its sum and sum of squares."""
        return max(0.0, self.per_frame(sq_total) - self.per_frame(total) ** 2) ** 0.5

    @property
    def blank_ratio(self) -> float:
        return self.per_frame(self.blank_wins)

    @property
    def mean_blank_prob(self) -> float:
        return self.per_frame(self.blank_prob_sum)

    @property
    def mean_max_nonblank_prob(self) -> float:
        return self.per_frame(self.max_nonblank_prob_sum)

    @property
    def blank_prob_std(self) -> float:
        """Spread of the blank probability over frames."""
        return self.spread(self.blank_prob_sum, self.blank_prob_sq_sum)

    @property
    def max_nonblank_prob_std(self) -> float:
        return self.spread(self.max_nonblank_prob_sum, self.max_nonblank_prob_sq_sum)

    @property
    def distinct_tokens(self) -> int:
        return len(self.token_counts)

    @property
    def empty_rate(self) -> float:
        return self.all_blank_utts / self.utterances if self.utterances else 0.0

    def summary(self) -> dict:
        return {"frames": self.frames, "blank_ratio": self.blank_ratio,
                "mean_blank_prob": self.mean_blank_prob,
                "mean_max_nonblank_prob": self.mean_max_nonblank_prob,
                "distinct_tokens": self.distinct_tokens, "empty_rate": self.empty_rate,
                "utterances": self.utterances, "blank_prob_std": self.blank_prob_std,
                "max_nonblank_prob_std": self.max_nonblank_prob_std}


def _without(lp: torch.Tensor, blank: int) -> torch.Tensor:
    """The non-blank columns of (..., V): a view when blank is first or last."""
    if blank == 0:
        return lp[..., 1:]
    if blank == lp.shape[-1] - 1:
        return lp[..., :-1]
    return torch.cat([lp[..., :blank], lp[..., blank + 1:]], dim=-1)
