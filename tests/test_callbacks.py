import json

from asrlab.callbacks import TrainingCallback, as_callback


def test_train_calls_each_hook_in_order_with_what_it_promises(tmp_path):
    """A subclass overriding every hook sees them in order with real arguments, and a finding
    it returns is reported; one overriding a single hook runs on the base's no-ops."""
    from asrlab.config import Config
    from asrlab.doctor.findings import Finding
    from asrlab.train import train
    from tests.conftest import write_tone_manifest

    events, epochs_seen = [], []

    class Watch(TrainingCallback):
        def on_train_start(self, run):
            events.append(("start", run.state.step))

        def on_step(self, run, step, log_probs, lengths, losses, batch):
            b = len(batch.ids)
            assert log_probs.dim() == 3 and log_probs.shape[0] == b  # (B, T', V)
            assert lengths.shape == (b,) and losses.shape == (b,)
            assert int(lengths.max()) <= log_probs.shape[1]
            events.append(("step", step))

        def on_epoch_end(self, run, metrics, emissions):
            events.append(("epoch", metrics.epoch, metrics.step))
            return [Finding("CALLBACK_SAYS", "info", f"epoch {metrics.epoch} seen", {},
                            "nothing to do")] if metrics.epoch == 2 else None

        def on_train_end(self, run):
            events.append(("end",))

    class OnlyEpochs(TrainingCallback):
        def on_epoch_end(self, run, metrics, emissions):
            epochs_seen.append(metrics.epoch)

    manifest = write_tone_manifest(tmp_path / "data", ["ab", "ba", "abba", "baab", "aab", "bba"])
    cfg = Config().merged({"model": {"hidden": 32, "conv_channels": 8},
                           "train": {"epochs": 2, "max_minutes": None, "batch_size": 2,
                                     "tensorboard": False, "threads": 1}})
    train(manifest, manifest, tmp_path / "run", cfg, show_progress=False, force=True,
          callbacks=[Watch(), OnlyEpochs()])
    assert events[0] == ("start", 0) and events[-1] == ("end",)
    kinds = [e[0] for e in events[1:-1]]
    steps = [e[1] for e in events if e[0] == "step"]
    assert steps == list(range(len(steps))) and len(steps) == 6  # 6 utterances, 2 a batch
    assert kinds == ["step"] * 3 + ["epoch"] + ["step"] * 3 + ["epoch"]
    assert [e[1:] for e in events if e[0] == "epoch"] == [(1, 3), (2, 6)]
    assert epochs_seen == [1, 2]
    findings = [json.loads(line) for line in
                (tmp_path / "run" / "findings.jsonl").read_text().splitlines()]
    assert any(f["code"] == "CALLBACK_SAYS" for f in findings), findings


def test_a_duck_typed_callback_keeps_its_methods_and_gains_the_rest():
    seen = []

    class OnlyEpochs:
        def on_epoch_end(self, run, metrics, emissions):
            seen.append(metrics)
            return ["finding"]

    cb = as_callback(OnlyEpochs())
    assert isinstance(cb, TrainingCallback)
    cb.on_step(None, 1, None, None, None, None)  # absent on the object: a no-op
    assert cb.on_epoch_end(None, "m", None) == ["finding"] and seen == ["m"]
    sub = TrainingCallback()
    assert as_callback(sub) is sub
