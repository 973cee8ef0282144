"""The CTC doctor: findings before, during and after training."""

from asrlab.doctor.findings import CODES, Finding, has_errors

__all__ = ["CODES", "Finding", "has_errors"]
