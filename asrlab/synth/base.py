"""What the engine drivers and the corpus builder share: a speaker, the two errors, the output
sample rate."""

from __future__ import annotations

from dataclasses import asdict, dataclass

SAMPLE_RATE = 16000
NONESPEAK_WPM = 140  # flite/festival/piper duration stretch = NONESPEAK_WPM / rate


class EngineUnavailable(RuntimeError):
    """A requested TTS engine is not installed; the message says how to install it."""


class SynthError(RuntimeError):
    """Synthesis failed for one or more utterances, or the corpus request is impossible."""


@dataclass(frozen=True)
class Speaker:
    """One synthetic voice with fixed settings. pitch is None where the engine has no knob."""

    engine: str
    voice: str
    variant: str
    rate: int  # words per minute
    pitch: int | None

    @property
    def id(self) -> str:
        name = f"{self.voice}+{self.variant}" if self.variant else self.voice
        pitch = f":p{self.pitch}" if self.pitch is not None else ""
        return f"{self.engine}:{name}:r{self.rate}{pitch}"

    def to_dict(self) -> dict:
        return {"id": self.id, **asdict(self)}
