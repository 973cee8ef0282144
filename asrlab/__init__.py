"""asrlab: train, diagnose and run CTC speech recognizers."""

from asrlab.runtime import set_thread_env

set_thread_env()  # before any submodule loads torch or NumPy (see asrlab/runtime.py)

__version__ = "0.1.0"
