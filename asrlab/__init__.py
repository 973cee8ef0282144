"""asrlab: train, diagnose and run CTC speech recognizers."""

__version__ = "0.1.0"
