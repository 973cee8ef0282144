"""Failures reported in public when fine-tuning pretrained CTC models, rebuilt on a tiny randomly
initialized Wav2Vec2ForCTC (tests/doctor/hfkit.py; nothing downloaded): in a real transformers
Trainer with DoctorTrainerCallback, or in a plain loop with CTCDoctor and the check functions.
Each case makes the failure happen and asserts the doctor names it, and that its healthy twin
gives no such finding. docs/doctor.md ("Fine-tuning pretrained encoders") cites each report.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import asrlab.integrations as integ
from asrlab.audio import resample
from asrlab.doctor import CTCDoctor
from asrlab.doctor.pretrained import (band_edge_hz, blank_token_findings, encoder_rate_findings,
                                      input_scale_findings, span_mask_findings)

from .hfkit import (RATE, char_tokenizer, codes, collate, fit, only,
                    tiny_ctc, tone_items, tone_wave)

pytest.importorskip("transformers")


def feature_extractor(**kw):
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(**{"sampling_rate": RATE, "do_normalize": True,
                                       "return_attention_mask": True, **kw})


def processor(tmp_path, **kw):
    from transformers import Wav2Vec2Processor

    return Wav2Vec2Processor(feature_extractor=feature_extractor(),
                             tokenizer=char_tokenizer(tmp_path / "tok", **kw))


def speech(text: str = "she sells sea shells by the sea shore", seed: int = 0) -> np.ndarray:
    """Speech at 16 kHz (espeak-ng, synthesized at 22 kHz: energy up to 8 kHz)."""
    from asrlab.synth import EngineUnavailable, make_speakers, render

    try:
        return render(text, make_speakers(1, seed)[0], seed=seed)
    except EngineUnavailable as e:  # pragma: no cover - espeak-ng is in the test extra
        pytest.skip(str(e))


# ---- 1. transformers#12956, jonatasgrosman/wav2vec2-sprint#3: blank everywhere, WER 1.0 ------

@pytest.mark.slow
def test_blank_everywhere_while_the_loss_falls_is_blank_collapse(tmp_path):
    """Audio that says nothing about its transcript: the model learns the label prior (blank on
    every frame), the loss falls from 3.0 to 2.0, every hypothesis is empty."""
    cb = integ.DoctorTrainerCallback()
    fit(tiny_ctc(), tone_items(1600, informative=False), tmp_path / "bad", cb, steps=350)
    f = only(cb.findings, "BLANK_COLLAPSE")
    assert f.severity == "error" and f.evidence["kind"] == "flat"
    assert f.evidence["blank_ratio"] >= 0.99 and f.evidence["empty_rate"] >= 0.99
    assert f.evidence["loss_now"] < 0.8 * f.evidence["loss_first"] and "loss fell" in f.message
    assert "ignores the input" in f.message  # sprint#3: the same distribution on every frame
    healthy = integ.DoctorTrainerCallback()
    fit(tiny_ctc(), tone_items(1600), tmp_path / "good", healthy, steps=350)
    assert "BLANK_COLLAPSE" not in codes(healthy.findings)
    assert healthy.doctor.history[-1].blank_ratio < 0.7  # it reads


# ---- 2. transformers#19888 (+ PR #21263): amplitude scale ------------------------------------

def int16_items(n: int, unsigned: bool = False) -> list[dict]:
    """Tone utterances as int16 sample values never divided by 32768 (unsigned: offset to
    [0, 65535], #19888's reproducer)."""
    out = []
    for it in tone_items(n, seed=3):
        x = np.round(it["input_values"].numpy() * 3000.0) + (32768.0 if unsigned else 0.0)
        out.append({**it, "input_values": torch.from_numpy(x.astype(np.float32))})
    return out


def test_int16_range_samples_are_input_scale(tmp_path):
    proc = processor(tmp_path)
    cb = integ.DoctorTrainerCallback()
    fit(tiny_ctc(), int16_items(8), tmp_path / "bad", cb, steps=2, processing_class=proc)
    f = only(cb.findings, "INPUT_SCALE")
    assert f.severity == "error" and f.evidence["kind"] == "int16"
    assert f.evidence["integer_valued_share"] == 1.0 and "32768" in f.remedy
    # the same audio made the model's way: the feature extractor on x / 32768
    fe = proc.feature_extractor
    made = [{**it, "input_values": torch.tensor(fe(it["input_values"].numpy() / 32768.0,
                                                   sampling_rate=RATE).input_values[0])}
            for it in int16_items(8)]
    healthy = integ.DoctorTrainerCallback()
    fit(tiny_ctc(), made, tmp_path / "good", healthy, steps=2, processing_class=proc)
    assert "INPUT_SCALE" not in codes(healthy.findings)


def test_input_scale_by_hand_unsigned_and_not_normalized():
    """In a plain loop: check_hf_inputs on the batch the model is about to get."""
    batch = collate(int16_items(4, unsigned=True))
    f, = integ.check_hf_inputs(batch["input_values"], batch["attention_mask"])
    assert f.evidence["kind"] == "unsigned" and "(x - 32768) / 32768" in f.remedy
    raw = collate([{**it, "input_values": it["input_values"] * 0.1} for it in tone_items(4)])
    f, = integ.check_hf_inputs(raw["input_values"], raw["attention_mask"], "normalized")
    assert f.code == "INPUT_SCALE" and f.evidence["kind"] == "not-normalized"
    norm = collate(tone_items(4))
    assert integ.check_hf_inputs(norm["input_values"], norm["attention_mask"],
                                 "normalized") == []
    f, = integ.check_hf_inputs(norm["input_values"], norm["attention_mask"], "raw")
    assert f.evidence["kind"] == "normalized-not-raw"  # Whisper-style input normalized anyway
    assert integ.check_hf_inputs(raw["input_values"], raw["attention_mask"], "raw") == []


def test_normalized_over_the_batch_instead_of_each_utterance():
    """speechbrain#1247 / fairseq#5609: layer_norm(wav, wav.shape) normalizes the batch."""
    loud, quiet = tone_wave([1, 2, 3], np.random.default_rng(0)), \
        0.2 * tone_wave([4, 5, 1], np.random.default_rng(1))
    both = np.concatenate([loud, quiet])
    rows = [(x - both.mean()) / both.std() for x in (loud, quiet)]
    f, = input_scale_findings(rows, "normalized")
    assert f.evidence["kind"] == "batch-normalized"
    assert input_scale_findings([(x - x.mean()) / x.std() for x in rows], "normalized") == []


# ---- 3. transformers#10619: references decoded with CTC grouping ---------------------------

def test_references_decoded_with_grouping_are_named(tmp_path):
    """compute_metrics decodes pred.label_ids like predictions: "hello" -> "helo", "carry" ->
    "cary"; WER is then measured against text nobody said."""
    from transformers import Trainer, TrainingArguments

    tok = char_tokenizer(tmp_path / "tok", symbols="abcdehlory")
    texts = ["hello", "carry a bell", "a red door", "cold"]
    data = [{"input_values": torch.from_numpy(tone_wave([1] * 12, np.random.default_rng(i))),
             "labels": torch.tensor(tok(t).input_ids)} for i, t in enumerate(texts)]
    seen = {}

    def compute_metrics(pred, group: bool):
        ids = np.where(pred.label_ids == -100, tok.pad_token_id, pred.label_ids)
        refs = tok.batch_decode(ids, group_tokens=group)  # the tokenizer drops the pads
        seen[group] = integ.check_references(tok, pred.label_ids, refs)
        return {}

    for group in (True, False):  # the bug, then the fix (group_tokens=False)
        args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_eval_batch_size=2,
                                 report_to=[], use_cpu=True, disable_tqdm=True)
        Trainer(model=tiny_ctc(vocab_size=len(tok)), args=args, eval_dataset=data,
                data_collator=collate,
                compute_metrics=lambda p, g=group: compute_metrics(p, g)).evaluate()
    f, = seen[True]
    assert f.code == "GROUPED_REFERENCES" and f.severity == "error"
    assert f.evidence["count"] == 3 and f.evidence["with_doubled_tokens"] == 3  # not "cold"
    assert "group_tokens=False" in f.remedy
    assert seen[False] == []


# ---- 4. transformers#15366 (fixed in #15423): short clips against span masking -------------

def test_short_clips_against_the_time_mask_span(tmp_path):
    """mask_time_length 10 frames; clips of 2 labels have 6: a batch of them makes
    _compute_mask_indices raise. The doctor names it before the forward raises."""
    masked = dict(mask_time_prob=0.65, mask_time_length=10)
    short = tone_items(8, seed=4, labels=(2, 3))  # 2 labels: 6 frames
    cb = integ.DoctorTrainerCallback()
    with pytest.raises(ValueError, match="mask_length"):
        fit(tiny_ctc(**masked), short, tmp_path / "bad", cb, steps=2)
    f = only(cb.findings, "SPAN_MASK_TOO_LONG")
    assert f.severity == "error" and f.evidence["kind"] == "batch"
    assert f.evidence["batch_frames"] == 6
    n, frames = f.evidence["min_samples"], tiny_ctc()._get_feat_extract_output_lengths
    assert int(frames(torch.tensor(n))) == 10 and int(frames(torch.tensor(n - 1))) == 9
    # mixed with longer clips the batch trains, but the short ones are never masked
    long = tone_items(8, seed=5, labels=(4, 5))  # 4 labels: 12 frames
    mixed = [x for pair in zip(short, long) for x in pair]
    cb = integ.DoctorTrainerCallback()
    fit(tiny_ctc(**masked), mixed, tmp_path / "mixed", cb, steps=2)
    f = only(cb.findings, "SPAN_MASK_TOO_LONG")
    assert f.severity == "warning" and f.evidence["kind"] == "utterances"
    healthy = integ.DoctorTrainerCallback()
    fit(tiny_ctc(**masked), long, tmp_path / "good", healthy, steps=2)
    assert "SPAN_MASK_TOO_LONG" not in codes(healthy.findings)


def test_span_mask_findings_from_plain_lengths():
    """What asrlab's pre-checks call with every utterance's encoder frames."""
    f, = span_mask_findings([50, 8, 300, 9], mask_length=10, mask_prob=0.05, ids=list("abcd"))
    assert f.evidence["utterances"] == ["b", "d"] and f.severity == "warning"
    assert span_mask_findings([50, 8], mask_length=10, mask_prob=0.0) == []  # masking off
    assert span_mask_findings([50, 10], mask_length=10, mask_prob=0.05) == []


# ---- 5. fairseq#1931: 8 kHz audio into a 16 kHz model ------------------------------------

def test_8khz_audio_into_a_16khz_encoder(tmp_path):
    """The data's rate against the feature extractor's (the callback is told the data's rate),
    and, in the waveforms, nothing above 4 kHz: 8 kHz audio upsampled to 16 kHz."""
    fe = feature_extractor()
    narrow = resample(resample(speech(), RATE, 8000), 8000, RATE)  # a telephone recording
    rng = np.random.default_rng(0)

    def items(wave):
        return [{"input_values": torch.tensor(fe(wave, sampling_rate=RATE).input_values[0]),
                 "labels": torch.as_tensor(rng.integers(1, 6, 5))} for _ in range(4)]

    cb = integ.DoctorTrainerCallback(sampling_rate=8000)
    fit(tiny_ctc(), items(narrow), tmp_path / "bad", cb, steps=1, processing_class=fe)
    rate, band = sorted((f for f in cb.findings if f.code == "SAMPLE_RATE_MISMATCH"),
                        key=lambda f: f.evidence["kind"])[::-1]
    assert rate.severity == "error" and rate.evidence == {"kind": "rate", "data_rate": 8000,
                                                         "encoder_rate": 16000}
    assert band.evidence["kind"] == "band-limited" and band.evidence["band_edge_hz"] < 4800
    healthy = integ.DoctorTrainerCallback(sampling_rate=16000)
    fit(tiny_ctc(), items(speech()), tmp_path / "good", healthy, steps=1, processing_class=fe)
    assert "SAMPLE_RATE_MISMATCH" not in codes(healthy.findings)


def test_band_edge_of_speech_and_of_upsampled_speech():
    wide = speech("the quick brown fox jumps over the lazy dog", seed=1)
    assert band_edge_hz([wide], RATE) > 7000
    narrow = resample(resample(wide, RATE, 8000), 8000, RATE)
    assert band_edge_hz([narrow], RATE) < 4500
    assert encoder_rate_findings(None, RATE, [wide]) == []
    assert encoder_rate_findings(16000, 16000) == []


# ---- 6. wenet-e2e/wenet#2616: NaN under fp16 ------------------------------------------------

def fp16_loop(dtype, steps: int = 3, grown: bool = True, nan_input: bool = False) -> CTCDoctor:
    """A plain loop under CPU autocast with CTCDoctor by hand. `grown`: the first convolution's
    weights 1e5x (what a long run can drift into): activations past fp16's 65504."""
    model = tiny_ctc()
    if grown:
        with torch.no_grad():
            model.wav2vec2.feature_extractor.conv_layers[0].conv.weight.mul_(1e5)
    doctor = CTCDoctor(every=1)
    lengths_fn = model._get_feat_extract_output_lengths
    for step in range(steps):
        batch = collate(tone_items(4, seed=step))
        if nan_input:
            batch["input_values"][0, 100:200] = float("nan")
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            out = model(**batch)
            lp = out.logits.float().log_softmax(-1).transpose(0, 1)  # (T, N, C)
            lens = lengths_fn(batch["attention_mask"].sum(-1))
            doctor.observe(lp, lens, losses=out.loss, step=step)  # inside autocast
    return doctor


def test_nan_under_fp16_names_fp16():
    doctor = fp16_loop(torch.float16)
    f = only(doctor.findings(), "NONFINITE_LOSS")
    assert f.evidence["precision"] == "fp16" and "fp16" in f.message
    assert "bf16" in f.remedy and "zero_infinity=True" in f.remedy
    d = only(doctor.findings(), "DIVERGENCE")
    assert d.evidence["kind"] == "nan" and d.evidence["likely_cause"] == "fp16 overflow"
    # the same weights in bf16 (fp32's range): finite
    assert not {"NONFINITE_LOSS", "DIVERGENCE"} & set(codes(fp16_loop(torch.bfloat16).findings()))


def test_nan_under_fp16_in_the_trainer(tmp_path):
    """The Trainer's fp16 autocast as accelerate applies it on a GPU (on CPU, fp16=True computes
    in float32), here with CPU autocast around the loss: the callback sees fp16 logits."""
    from transformers import Trainer

    class Fp16Trainer(Trainer):
        def compute_loss(self, model, inputs, *args, **kw):
            with torch.autocast("cpu", dtype=torch.float16):
                return super().compute_loss(model, inputs, *args, **kw)

    def grown():
        model = tiny_ctc()
        with torch.no_grad():
            model.wav2vec2.feature_extractor.conv_layers[0].conv.weight.mul_(1e5)
        return model

    cb = integ.DoctorTrainerCallback(every=1)
    fit(grown(), tone_items(8), tmp_path / "bad", cb, steps=2, trainer_cls=Fp16Trainer)
    f = only(cb.findings, "NONFINITE_LOSS")
    assert f.evidence["precision"] == "fp16" and "TrainingArguments(bf16=True" in f.remedy
    healthy = integ.DoctorTrainerCallback(every=1)
    fit(grown(), tone_items(8), tmp_path / "good", healthy, steps=2)  # float32
    assert "NONFINITE_LOSS" not in codes(healthy.findings)


def test_nan_in_float32_does_not_blame_fp16():
    f = only(fp16_loop(torch.float32, grown=False, nan_input=True).findings(), "NONFINITE_LOSS")
    assert "precision" not in f.evidence and "fp16" not in f.message


# ---- 7. WeNet PR #2157 (Whisper's id 0 is "!"): the blank is not the pad ---------------------

def test_blank_that_is_a_letter(tmp_path):
    """A vocabulary with <pad> after the letters, a model left at pad_token_id=0: the loss's
    blank is "a", and transformers' CTC loss drops every "a" from the targets."""
    proc = processor(tmp_path, pad_last=True)
    tok = proc.tokenizer
    assert tok.pad_token_id != 0 and tok.convert_ids_to_tokens(0) == "a"
    model = tiny_ctc(vocab_size=len(tok))  # pad_token_id=0, the config's default
    x = collate(tone_items(1, seed=6))["input_values"]
    with torch.no_grad():  # the failure itself: "a" contributes nothing to the loss
        assert model(x, labels=torch.tensor([[0, 1, 2]])).loss == \
            model(x, labels=torch.tensor([[1, 2]])).loss
    data = [{"input_values": torch.from_numpy(tone_wave([1] * 6, np.random.default_rng(i))),
             "labels": torch.tensor(tok(t).input_ids)} for i, t in enumerate(["abc", "bad", "ace",
                                                                               "cab"])]
    # the Trainer gets the feature extractor (as transformers' fine-tuning blog does), the
    # doctor the whole processor
    cb = integ.DoctorTrainerCallback(processor=proc)
    fit(model, data, tmp_path / "bad", cb, steps=1, processing_class=proc.feature_extractor)
    f = only(cb.findings, "BLANK_MISMATCH")
    assert f.severity == "error" and f.evidence["kind"] == "not-pad"
    assert f.evidence["blank_token"] == "a" and f.evidence["pad_id"] == tok.pad_token_id
    assert "BLANK_IN_TARGETS" in codes(cb.findings)  # and "a" sits in the labels
    healthy = integ.DoctorTrainerCallback(processor=proc)
    fit(tiny_ctc(vocab_size=len(tok), pad_token_id=tok.pad_token_id), data, tmp_path / "good",
        healthy, steps=1, processing_class=proc.feature_extractor)
    assert not {"BLANK_MISMATCH", "BLANK_IN_TARGETS"} & set(codes(healthy.findings))
    # given the tokenizer, transformers 5's Trainer sets config.pad_token_id to its pad itself
    aligned = integ.DoctorTrainerCallback()
    fit(tiny_ctc(vocab_size=len(tok)), data, tmp_path / "aligned", aligned, steps=1,
        processing_class=proc)
    assert not {"BLANK_MISMATCH", "BLANK_IN_TARGETS"} & set(codes(aligned.findings))


def test_whisper_vocabulary_has_no_blank():
    """Whisper's id 0 is "!": a CTC head on its vocabulary needs a blank of its own."""
    vocab = ["!", '"', "#", "a", "b"] + ["<|endoftext|>", "<|nospeech|>"]
    f, = blank_token_findings(0, vocab)
    assert f.evidence["kind"] == "real-token" and "<|nospeech|>" in f.remedy
    assert blank_token_findings(6, vocab) == []  # WeNet's choice
    assert blank_token_findings(9, vocab)[0].evidence["kind"] == "outside"


# ---- 8. an unfrozen pretrained encoder at too high a rate ----------------------------------

@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    """A tiny encoder trained on the tone task (the stand-in for a pretrained checkpoint)."""
    from transformers import TrainerCallback

    out = tmp_path_factory.mktemp("pretrained")
    model = tiny_ctc()
    fit(model, tone_items(800, seed=1), out / "run", TrainerCallback(), steps=200)
    model.save_pretrained(out / "model")
    return out / "model"


def finetune(pretrained_dir, out, lr: float, freeze: bool, warmup: float):
    from transformers import Wav2Vec2ForCTC

    model = Wav2Vec2ForCTC.from_pretrained(pretrained_dir, vocab_size=7,
                                           ignore_mismatched_sizes=True)  # a new CTC head
    if freeze:
        model.freeze_feature_encoder()
    cb = integ.DoctorTrainerCallback()
    fit(model, tone_items(1600, seed=2), out, cb, steps=350, lr=lr, warmup_steps=warmup)
    return cb


@pytest.mark.slow
def test_unfrozen_encoder_at_a_high_rate_collapses(pretrained_dir, tmp_path):
    """speechbrain#1410: the encoder unfrozen at 1e-4, loss flat, WER 100 %; it learned at 1e-6.
    Here: lr 0.1, no warmup, the feature encoder trained too."""
    cb = finetune(pretrained_dir, tmp_path / "bad", lr=0.1, freeze=False, warmup=0)
    assert cb.doctor.tracker.ctx.pretrained and cb.doctor.tracker.ctx.encoder_lr == 0.1
    f = only(cb.findings, "BLANK_COLLAPSE")
    assert f.evidence["likely_causes"][0].startswith("learning rate 0.1 on an unfrozen pretrained")
    assert "model.freeze_feature_encoder()" in f.remedy and "warmup_steps=0.1" in f.remedy
    assert "lower the encoder's rate to ~0.01" in f.remedy
    healthy = finetune(pretrained_dir, tmp_path / "good", lr=1e-3, freeze=True, warmup=0.1)
    assert healthy.doctor.tracker.ctx.feature_encoder_trainable is False
    assert not [f for f in healthy.findings if f.severity == "error"]


# ---- 9. frames needed against the encoder's frame rate -----------------------------------

def test_labels_longer_than_the_frames_by_hand():
    """A 2-label clip (6 frames at 50 frames/s) transcribed with 8 labels: infeasible. The HF
    loss is inf (ctc_zero_infinity=False, the default), the next update NaN."""
    model = tiny_ctc()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    items = tone_items(4, seed=7, labels=(2, 3))
    items[1] = {**items[1], "labels": torch.tensor([1, 2, 3, 4, 5, 4, 3, 2])}
    doctor = CTCDoctor(every=1)
    lengths_fn = model._get_feat_extract_output_lengths
    for step in range(3):
        batch = collate(items)
        out = model(**batch)
        if step == 0:
            found = integ.check_hf_batch(doctor, out.logits, batch["labels"],
                                         batch["attention_mask"], lengths_fn, 0,
                                         samples_per_frame=320, sampling_rate=RATE)
        integ.observe_hf_forward(doctor, out.logits, batch["attention_mask"], lengths_fn,
                                 out.loss, step, batch["labels"])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    f = only(found, "INFEASIBLE_LENGTH")
    assert f.evidence["utterances"] == [1] and f.evidence["frames"] == [6]
    assert f.evidence["needed"] == [8] and "50 frames a second" in f.message
    nf = only(doctor.findings(), "NONFINITE_LOSS")
    assert nf.evidence["causes"]["batch@0"].startswith("infeasible: 6 output frames < 8")
    assert "ctc_zero_infinity" in nf.remedy
    d = only(doctor.findings(), "DIVERGENCE")
    assert "infeasible target" in d.message  # the inf loss's backward poisoned the weights
    healthy = collate(tone_items(4, seed=7, labels=(2, 3)))
    out = tiny_ctc()(**healthy)
    assert integ.check_hf_batch(CTCDoctor(), out.logits, healthy["labels"],
                                healthy["attention_mask"], lengths_fn, 0) == []
    assert bool(torch.isfinite(out.loss))


def test_setup_checks_by_hand(tmp_path):
    """check_hf_setup in a plain loop: rates and blank, before the first update."""
    tok = char_tokenizer(tmp_path / "tok")
    model = tiny_ctc(vocab_size=len(tok), pad_token_id=tok.pad_token_id)
    assert integ.check_hf_setup(model, tok, feature_extractor(), data_sampling_rate=16000) == []
    f, = integ.check_hf_setup(model, tok, feature_extractor(), data_sampling_rate=8000)
    assert f.code == "SAMPLE_RATE_MISMATCH" and "2x fast" in f.message
