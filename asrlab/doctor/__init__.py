"""The CTC doctor: findings before, during and after training.

- before: `asrlab.doctor.checks` (data: lengths, audio, text, sample rates, feature statistics)
- during: `TrainingMonitor` (asrlab's loop) and `CTCDoctor` (anyone's loop), both judging with
  the same `HealthTracker`
- after: `asrlab.doctor.diagnose` (a finished run folder -> diagnosis.md/html/json)
"""

from asrlab.doctor.batch import CTCDoctor, check_batch
from asrlab.doctor.findings import CODES, Finding, has_errors, rank
from asrlab.doctor.rules import HealthTracker, Observation, RunContext, Thresholds

__all__ = ["CODES", "Finding", "has_errors", "rank", "CTCDoctor", "check_batch",
           "HealthTracker", "Observation", "RunContext", "Thresholds"]
