"""Weight averaging of a run's best epochs (train.average_best, asrlab.averaging): which
tensors are kept, which epochs, what average.pt holds, when the run folder resolves to it, and
a resumed run that picks up the kept epochs (one lost to a crash included)."""

from __future__ import annotations

import json

import pytest
import torch

from asrlab.averaging import EpochAverager, best_epochs, learned_names
from asrlab.checkpoint import load, resolve_checkpoint
from asrlab.config import Config, ConfigError
from asrlab.metrics import epoch_rank
from asrlab.train import train

from tests.test_train import short


def averaging(epochs: int, n: int) -> Config:
    return short(epochs).merged({"train": {"average_best": n}})


def history_of(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def kept_files(run) -> dict[int, dict]:
    return {int(p.stem.split("_")[1]): torch.load(p) for p in sorted((run / "nbest").glob("*.pt"))}


def mean_of(states: list[dict]) -> dict:
    return {k: sum(s[k] for s in states) / len(states) for k in states[0]}


def test_only_the_tensors_that_learn_are_kept():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
                                torch.nn.Linear(4, 2))
    model[0].requires_grad_(False)  # frozen: left out of the optimizer, as a frozen encoder
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    names = learned_names(model, opt)
    assert set(names) == {"1.weight", "1.bias", "1.running_mean", "1.running_var", "2.weight",
                          "2.bias"}  # not the frozen layer, not BatchNorm's integer counter


def test_the_best_epochs_rank_like_best_pt():
    history = [{"epoch": 1, "val_cer": 0.5, "val_loss": 1.0},
               {"epoch": 2, "val_cer": 0.0, "val_loss": 0.3},
               {"epoch": 3, "val_cer": 0.0, "val_loss": float("nan")},
               {"epoch": 4, "val_cer": 0.0, "val_loss": 0.1},
               {"epoch": 5, "val_cer": 0.1, "val_loss": 0.05}]
    assert best_epochs(history, 3) == [4, 2, 3]
    assert best_epochs(history, 1) == [min(history, key=lambda h: epoch_rank(
        h["val_cer"], h["val_loss"]))["epoch"]]


def test_kept_epochs_follow_the_ranking_on_disk_and_their_mean_is_the_average(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    avg = EpochAverager(tmp_path, 2, model, opt, write=True)
    history, seen = [], {}
    for epoch, cer in [(1, 0.9), (2, 0.5), (3, 0.7), (4, 0.4)]:
        with torch.no_grad():
            model.weight.fill_(float(epoch))
            model.bias.fill_(-float(epoch))
        seen[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        history.append({"epoch": epoch, "val_cer": cer, "val_loss": 1.0})
        avg.after_epoch(history)
    assert avg.epochs() == (2, 4)
    assert sorted(kept_files(tmp_path)) == [2, 4]  # 1 and 3 fell out: their files are gone
    for k, v in avg.average().items():
        torch.testing.assert_close(v, (seen[2][k] + seen[4][k]) / 2)
    # a resumed run reads them back; the last epoch's from the model when its file was lost;
    # an epoch's file that a crash left after it fell out of the best is removed
    (tmp_path / "nbest" / "epoch_0004.pt").unlink()
    torch.save(seen[3], tmp_path / "nbest" / "epoch_0003.pt")
    again = EpochAverager(tmp_path, 2, model, opt, write=True)
    assert again.resume(history) == []
    assert again.epochs() == (2, 4) and sorted(kept_files(tmp_path)) == [2, 4]
    torch.testing.assert_close(kept_files(tmp_path)[4]["weight"], seen[4]["weight"])
    (tmp_path / "nbest" / "epoch_0002.pt").unlink()  # not the last epoch: cannot be rebuilt
    third = EpochAverager(tmp_path, 2, model, opt, write=True)
    assert third.resume(history) == ["epoch 2 (no epoch_0002.pt)"]
    assert third.average() is None  # one epoch is no average
    (tmp_path / "nbest" / "epoch_0002.pt").write_bytes(b"torn")
    (tmp_path / "nbest" / "epoch_0004.pt").write_bytes(b"torn")  # the last: from the model
    fourth = EpochAverager(tmp_path, 2, model, opt, write=True)
    (problem,) = fourth.resume(history)
    assert problem.startswith("epoch 2 (epoch_0002.pt unreadable")
    assert fourth.epochs() == (4,)  # and its file written again from the model
    torch.testing.assert_close(torch.load(tmp_path / "nbest" / "epoch_0004.pt")["weight"],
                               seen[4]["weight"])


def test_a_negative_count_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="train.average_best must be >= 0"):
        Config().merged({"train": {"average_best": -1}}).validate()


def test_the_run_folder_resolves_to_the_average_of_its_best_epochs(tiny_corpus, tmp_path):
    run, at_end = tmp_path / "run", {}

    class AtEnd:
        def on_train_end(self, run_):
            at_end.update({k: v.detach().clone() for k, v in run_.model.state_dict().items()})

    result = train(tiny_corpus / "train.jsonl", tiny_corpus / "val.jsonl", run, averaging(3, 2),
                   show_progress=False, callbacks=[AtEnd()])
    history = history_of(run)
    best = tuple(sorted(best_epochs(history, 2)))
    assert result.average is not None and result.average.epochs == best
    kept = kept_files(run)
    assert tuple(kept) == best  # the other epoch's file is gone
    assert result.average.kept  # a short run's val CER (here the same for every epoch) ties
    assert result.checkpoint == run / "average.pt" == resolve_checkpoint(run)
    ckpt = load(run)
    assert ckpt.meta["averaged_epochs"] == list(best)
    assert ckpt.meta["val_cer"] == result.average.val_cer
    state = ckpt.model.state_dict()
    for name, value in mean_of(list(kept.values())).items():
        torch.testing.assert_close(state[name], value, msg=name)
    # every learned tensor is averaged: the average is neither kept epoch
    for epoch_state in kept.values():
        assert any(not torch.equal(state[k], v) for k, v in epoch_state.items())
    assert "average of epochs" in (run / "train.log").read_text()
    # after the average's validation the model is back to the weights training ended with
    last = load(run / "last.pt").model.state_dict()
    assert at_end.keys() == last.keys()
    assert all(torch.equal(at_end[k], v) for k, v in last.items())


def test_an_average_worse_on_validation_is_not_the_run_s_model(tiny_corpus, tmp_path,
                                                              monkeypatch):
    import asrlab.train as train_module

    real, calls = train_module.validate, []

    def validate(run, loader):  # the fourth validation is the average's: make it the worst
        calls.append(1)
        loss, cer, wer, stats, rows = real(run, loader)
        return (loss, cer + 1.0, wer, stats, rows) if len(calls) == 4 else (loss, cer, wer,
                                                                             stats, rows)

    monkeypatch.setattr(train_module, "validate", validate)
    run = tmp_path / "run"
    (run).mkdir()
    (run / "average.pt").write_bytes(b"an older run's")  # --overwrite removes it first
    result = train(tiny_corpus / "train.jsonl", tiny_corpus / "val.jsonl", run, averaging(3, 2),
                   show_progress=False, overwrite=True)
    assert len(calls) == 4 and result.average is not None and not result.average.kept
    assert not (run / "average.pt").exists()
    assert result.checkpoint == run / "best.pt" == resolve_checkpoint(run)
    assert "worse, so best.pt stays the run's model" in (run / "train.log").read_text()


def test_a_resumed_run_averages_again_with_the_epochs_kept_before(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    train(tiny_corpus / "train.jsonl", tiny_corpus / "val.jsonl", run, averaging(2, 4),
          show_progress=False)
    assert (run / "average.pt").is_file()
    epoch2 = load(run / "last.pt").model.state_dict()
    # a crash after epoch 2's last.pt and before its kept copy
    (run / "nbest" / "epoch_0002.pt").unlink()
    result = train(tiny_corpus / "train.jsonl", tiny_corpus / "val.jsonl", run,
                   averaging(4, 4), resume=True, show_progress=False)
    log = (run / "train.log").read_text()
    assert "removed average.pt (made when the run last ended)" in log
    kept = kept_files(run)
    assert result.average.epochs == tuple(kept) == (1, 2, 3, 4)
    for name, value in kept[2].items():  # rebuilt from the model the resumed run started with
        assert torch.equal(value, epoch2[name]), name
    assert result.average.kept
    state = load(run).model.state_dict()
    for name, value in mean_of(list(kept.values())).items():
        torch.testing.assert_close(state[name], value, msg=name)
