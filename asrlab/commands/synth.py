"""`asrlab synth`: build a multi-speaker English corpus with text-to-speech."""

from asrlab.data.synth import add_synth_arguments as add_arguments  # noqa: F401
from asrlab.data.synth import run_synth as run  # noqa: F401
