"""DDP on CPU (gloo): two processes train the same model as one process with the same global
batch. Runs the real CLI under torchrun."""

import json
import subprocess
import sys

import pytest
import torch

from asrlab.checkpoint import load
from asrlab.data.sampler import BucketBatchSampler

# seed-crnn has no BatchNorm (per-rank batch statistics would differ from one big batch) and
# dropout 0 removes the only per-process randomness; augmentation is seeded per utterance.
ARGS = ["--model", "seed-crnn", "--batch-size", "4", "--epochs", "2", "--lr", "3e-3",
        "--set", "model.hidden=32", "--set", "model.conv_channels=8", "--set", "model.dropout=0",
        "--set", "train.warmup_epochs=0.5", "--set", "train.tensorboard=false",
        "--set", "train.max_minutes=0", "--no-progress", "--threads", "1"]


def train_cli(corpus, out, nproc):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    cmd = launcher + ["-m", "asrlab", "train", "--train", str(corpus / "train.jsonl"),
                      "--val", str(corpus / "val.jsonl"), "--out", str(out)] + ARGS
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_sampler_splits_each_global_batch_across_ranks():
    durations = [1.0 + 0.1 * i for i in range(10)]
    one = BucketBatchSampler(durations, batch_size=4, seed=1)
    ranks = [BucketBatchSampler(durations, batch_size=4, seed=1, num_replicas=2, rank=r)
             for r in range(2)]
    for s in [one, *ranks]:
        s.set_epoch(3)
    for g, a, b in zip(one, *ranks):
        assert sorted(a + b) == sorted(g) or len(g) < 2
    assert len(ranks[0]) == len(ranks[1]) == len(one)


@pytest.mark.slow
def test_two_gloo_processes_train_the_same_model_as_one(tiny_corpus, tmp_path):
    train_cli(tiny_corpus, tmp_path / "one", 1)
    train_cli(tiny_corpus, tmp_path / "two", 2)
    a, b = load(tmp_path / "one" / "last.pt"), load(tmp_path / "two" / "last.pt")
    assert a.meta["step"] == b.meta["step"] > 0
    start = load_initial_distance(a, b)
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(pa, pb, atol=2e-3, rtol=2e-2, msg=name)
    assert start > 0  # the weights moved: the comparison is not between two untrained models
    # only rank 0 wrote: one metrics line per epoch, not two
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 2
    # the epoch totals are summed over both ranks: the mean training loss of one process
    one, two = ([json.loads(line) for line in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
                for n in ("one", "two"))
    for m1, m2 in zip(one, two):
        assert m2["train_loss"] == pytest.approx(m1["train_loss"], rel=2e-2)
        assert m2["nonfinite_losses"] == m1["nonfinite_losses"]


def load_initial_distance(a, b) -> float:
    """How far training moved the weights from a fresh init with the same seed."""
    from asrlab.models import build_model

    torch.manual_seed(a.config.train.seed)
    fresh = build_model(a.config, a.tokenizer.vocab_size)
    return max(float((p - q).abs().max()) for p, q in
               zip(fresh.state_dict().values(), a.model.state_dict().values()))


def _reduce_totals(rank: int, init_file: str, out: str) -> None:
    """One gloo rank of test_epoch_totals_are_summed_over_ranks_once."""
    import torch.distributed as dist

    from asrlab.distributed import Dist
    from asrlab.train import EpochTotals

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    mine = EpochTotals(1.0 + rank, 2 + rank, rank, 0.5)
    total = mine.reduced(Dist(rank, 2, rank, torch.device("cpu")))
    with open(f"{out}.{rank}", "w") as f:
        json.dump([total.loss, total.utterances, total.nonfinite, total.audio_s], f)
    dist.destroy_process_group()


def test_epoch_totals_are_summed_over_ranks_once(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_reduce_totals, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2)
    for rank in range(2):  # every rank holds the sum
        assert json.loads((tmp_path / f"out.{rank}").read_text()) == [3.0, 5, 1, 1.0]
