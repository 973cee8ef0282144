"""CTC tensor helpers used by the models, the training loss and the doctor (torch; no asrlab
imports, so every layer may use them).

    time_mask(lengths, T)          (B, T) bool, True on real frames
    repeats(targets, target_lens)  adjacent equal labels per utterance (each needs a blank between)
    frames_needed(targets, lens)   labels + repeats: the fewest output frames CTC can align
    frames_needed_rows(rows)       the same for a list of unpadded 1-D target rows
"""

from __future__ import annotations

import torch


def time_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def repeats(targets: torch.Tensor, target_lens: torch.Tensor) -> torch.Tensor:
    """(B, L) padded targets -> (B,) count of adjacent equal labels (each needs a blank between)."""
    same = targets[:, 1:] == targets[:, :-1]  # (B, L-1)
    valid = time_mask(target_lens - 1, max(0, targets.shape[1] - 1))  # pair (i, i+1) is real
    return (same & valid).sum(1)


def frames_needed(targets: torch.Tensor, target_lens: torch.Tensor) -> torch.Tensor:
    """(B,) labels + repeats: an utterance with fewer output frames cannot be aligned (inf loss)."""
    return target_lens + repeats(targets, target_lens)


def frames_needed_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """frames_needed for a list of 1-D target rows of their own lengths: (N,) on their device."""
    if not rows:
        return torch.zeros(0, dtype=torch.long)
    lens = torch.tensor([r.numel() for r in rows], device=rows[0].device)
    return frames_needed(torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True), lens)
