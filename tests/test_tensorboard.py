"""TensorBoard callback: per-epoch scalars and the doctor's findings reach the event files."""

import types
from dataclasses import dataclass

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from asrlab.doctor.findings import Finding
from asrlab.tensorboard import TensorBoardCallback


@dataclass
class M:
    epoch: int = 1
    step: int = 10
    val_cer: float = 0.5


def test_scalars_and_findings_are_written_once(tmp_path):
    cb = TensorBoardCallback(tmp_path)
    run = types.SimpleNamespace(findings=[], state=types.SimpleNamespace(step=10))
    cb.on_train_start(run)
    run.findings.append(Finding("UNDERTRAINED", "info", "early blank phase", {}, "keep going"))
    cb.on_epoch_end(run, M(), None)
    run.findings.append(Finding("BLANK_COLLAPSE", "error", "all blank", {}, "fix init"))
    cb.on_epoch_end(run, M(epoch=2, step=20, val_cer=0.4), None)
    cb.on_train_end(run)
    ea = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0, "scalars": 0})
    ea.Reload()
    assert [round(e.value, 5) for e in ea.Scalars("epoch/val_cer")] == [0.5, 0.4]
    tags = ea.Tags()["tensors"]
    assert "doctor/UNDERTRAINED/text_summary" in tags and "doctor/BLANK_COLLAPSE/text_summary" in tags
    assert len(ea.Tensors("doctor/UNDERTRAINED/text_summary")) == 1  # not repeated each epoch
