from asrlab.callbacks import TrainingCallback, as_callback


def test_base_hooks_are_no_ops():
    cb = TrainingCallback()
    cb.on_train_start(None)
    cb.on_step(None, 0, None, None, None, None)
    assert cb.on_epoch_end(None, None, None) is None
    cb.on_train_end(None)


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
