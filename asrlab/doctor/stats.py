"""Summable counters over CTC emissions (icefall-style): add batches, merge across ranks, read.

These are the numbers the original team dumped by hand: how often blank wins a frame, how sure
the model is of blank, how sure it is of its best non-blank symbol, and how many distinct symbols
it emits at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class EmissionStats:
    frames: int = 0
    blank_wins: int = 0  # frames whose argmax is blank
    blank_prob_sum: float = 0.0
    max_nonblank_prob_sum: float = 0.0
    utterances: int = 0
    all_blank_utts: int = 0  # utterances whose every frame is blank (empty hypothesis)
    token_counts: dict[int, int] = field(default_factory=dict)  # argmax non-blank ids

    @torch.no_grad()
    def add(self, log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> None:
        """log_probs (B, T, V), lengths (B,) valid frames."""
        lp = log_probs.detach().float()
        B, T, V = lp.shape
        mask = torch.arange(T, device=lp.device)[None, :] < lengths.to(lp.device)[:, None]  # (B, T)
        probs = lp.exp()
        best = lp.argmax(dim=-1)  # (B, T)
        nonblank = torch.cat([probs[..., :blank], probs[..., blank + 1:]], dim=-1)  # (B, T, V-1)
        self.frames += int(mask.sum())
        self.blank_wins += int(((best == blank) & mask).sum())
        self.blank_prob_sum += float((probs[..., blank] * mask).sum())
        self.max_nonblank_prob_sum += float((nonblank.max(dim=-1).values * mask).sum())
        self.utterances += B
        self.all_blank_utts += int((((best == blank) | ~mask).all(dim=1)).sum())
        ids, counts = best[mask & (best != blank)].unique(return_counts=True)
        for i, c in zip(ids.tolist(), counts.tolist()):
            self.token_counts[i] = self.token_counts.get(i, 0) + c

    def merge(self, other: "EmissionStats") -> "EmissionStats":
        out = EmissionStats(
            self.frames + other.frames, self.blank_wins + other.blank_wins,
            self.blank_prob_sum + other.blank_prob_sum,
            self.max_nonblank_prob_sum + other.max_nonblank_prob_sum,
            self.utterances + other.utterances, self.all_blank_utts + other.all_blank_utts,
            dict(self.token_counts))
        for k, v in other.token_counts.items():
            out.token_counts[k] = out.token_counts.get(k, 0) + v
        return out

    @property
    def blank_ratio(self) -> float:
        return self.blank_wins / self.frames if self.frames else 0.0

    @property
    def mean_blank_prob(self) -> float:
        return self.blank_prob_sum / self.frames if self.frames else 0.0

    @property
    def mean_max_nonblank_prob(self) -> float:
        return self.max_nonblank_prob_sum / self.frames if self.frames else 0.0

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
                "utterances": self.utterances}
