"""The plateau schedule judges epochs after the warmup: warmup is counted in epochs."""

from __future__ import annotations

from asrlab.config import preset
from asrlab.train import TrainState, update_plateau


def plateau_config(warmup_epochs: float, patience: int = 1):
    return preset("default").merged({"train": {"schedule": "plateau",
                                               "warmup_epochs": warmup_epochs,
                                               "plateau_patience": patience,
                                               "plateau_factor": 0.5}})


def test_epochs_inside_the_warmup_do_not_count_even_after_many_updates():
    # 2 of 5 warmup epochs done, 400 updates: the old test compared the 400 updates with the
    # 5 warmup epochs and lowered the rate in the middle of the warmup
    cfg, state = plateau_config(warmup_epochs=5), TrainState(epoch=2, step=400)
    for _ in range(4):
        update_plateau(cfg, state, val_cer=0.5)  # no improvement at all
    assert state.lr_scale == 1.0 and state.plateau_bad_epochs == 0


def test_after_the_warmup_a_stalled_cer_lowers_the_rate():
    cfg, state = plateau_config(warmup_epochs=2, patience=1), TrainState(epoch=2, step=10)
    update_plateau(cfg, state, 0.5)  # best so far
    update_plateau(cfg, state, 0.5)  # 1 bad epoch: within patience
    assert state.lr_scale == 1.0
    update_plateau(cfg, state, 0.5)  # 2 bad epochs > patience 1
    assert state.lr_scale == 0.5
