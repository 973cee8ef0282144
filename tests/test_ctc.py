"""asrlab.ctc: the time mask and "labels + repeats" every layer uses."""

import torch

from asrlab.ctc import frames_needed, frames_needed_rows, repeats, time_mask


def test_time_mask_marks_real_frames():
    assert time_mask(torch.tensor([2, 0, 3]), 3).tolist() == [
        [True, True, False], [False, False, False], [True, True, True]]


def test_repeats_and_frames_needed_ignore_padding():
    targets = torch.tensor([[1, 1, 2, 2], [3, 3, 3, 0], [4, 0, 0, 0]])
    lens = torch.tensor([4, 2, 1])  # row 1's third 3 and the padding zeros are not labels
    assert repeats(targets, lens).tolist() == [2, 1, 0]
    assert frames_needed(targets, lens).tolist() == [6, 3, 1]


def test_frames_needed_rows_matches_padded_and_handles_empty():
    rows = [torch.tensor([1, 1, 2]), torch.tensor([], dtype=torch.long), torch.tensor([5])]
    assert frames_needed_rows(rows).tolist() == [4, 0, 1]
    assert frames_needed_rows([]).tolist() == []
