"""asrlab.models.whisper: Whisper's encoder in PyTorch against CTranslate2's `encode` and
transformers' WhisperEncoder, on a tiny random Whisper the tests make (and on the installed
tiny.en / base bundles when they are there)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asrlab.features import WhisperLogMel
from asrlab.ct2 import read_ct2
from asrlab.models.whisper import WhisperDims, WhisperEncoder
from asrlab.pretrained import BUNDLES, bundle_files
from tests.models.conftest import WHISPER_CTX

# Measured max abs differences: 7e-7 on the tiny model (outputs ~3), 5e-5 on tiny.en (outputs
# ~11); the bounds leave room for other CPUs' kernels.
CT2_TOLERANCE = 1e-4
REAL_TOLERANCE = 1e-3


def ct2_encode(folder_or_name, mels: np.ndarray, files: dict | None = None) -> np.ndarray:
    """CTranslate2's own encoder output (B, T', D) for log-mels (B, T, n_mels), float32."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    model = ctranslate2.models.Whisper(str(folder_or_name), device="cpu", compute_type="float32",
                                       intra_threads=1, files=files)
    features = np.ascontiguousarray(mels.transpose(0, 2, 1))  # (B, n_mels, T)
    return np.array(model.encode(ctranslate2.StorageView.from_array(features)))


def encode(model: WhisperEncoder, mels: np.ndarray, lengths=None):
    lengths = [mels.shape[1]] * len(mels) if lengths is None else lengths
    with torch.no_grad():
        y, out = model(torch.from_numpy(mels), torch.tensor(lengths))
    return y.numpy(), out


def random_mels(*shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("quantization", ["float32", "float16", "bfloat16", "int8", "int16"])
def test_from_ct2_matches_ctranslate2_encode(whisper_ct2, quantization):
    folder = whisper_ct2[quantization]
    model = WhisperEncoder.from_ct2(read_ct2(folder / "model.bin")).eval()
    assert model.dims == WhisperDims(80, 32, 4, 2, WHISPER_CTX)
    for frames in (2 * WHISPER_CTX, 37):  # 30 s (here 1 s) and shorter: positions sliced
        mels = random_mels(2, frames, 80, seed=frames)
        ours, lengths = encode(model, mels)
        ref = ct2_encode(folder, mels)
        assert ours.shape == ref.shape == (2, (frames - 1) // 2 + 1, 32)
        assert lengths.tolist() == [(frames - 1) // 2 + 1] * 2
        assert np.abs(ours - ref).max() < CT2_TOLERANCE


def test_from_transformers_equals_transformers_hidden_states(whisper_hf):
    transformers = pytest.importorskip("transformers")
    ref_model = transformers.WhisperModel.from_pretrained(whisper_hf).encoder.eval()
    model = WhisperEncoder.from_transformers(whisper_hf).eval()
    mels = random_mels(2, 2 * WHISPER_CTX, 80)  # transformers takes exactly 30 s (here 1 s)
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(mels).transpose(1, 2), output_hidden_states=True)
        states, lengths = model.forward_layers(torch.from_numpy(mels), torch.tensor([100, 100]))
        y, _ = model(torch.from_numpy(mels), torch.tensor([100, 100]))
    assert len(states) == len(ref.hidden_states) == 3 and lengths.tolist() == [50, 50]
    for ours, theirs in zip(states, ref.hidden_states):
        assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(y, ref.last_hidden_state, atol=1e-5) and torch.equal(y, states[-1])


def test_from_ct2_and_from_transformers_build_the_same_module(whisper_hf, whisper_ct2):
    a = WhisperEncoder.from_transformers(whisper_hf).state_dict()
    b = WhisperEncoder.from_ct2(read_ct2(whisper_ct2["float32"] / "model.bin")).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def tiny(whisper_hf) -> WhisperEncoder:
    return WhisperEncoder.from_transformers(whisper_hf).eval()


def test_a_padded_batch_gives_each_utterance_what_it_gives_alone(tiny):
    lengths = [100, 61, 8, 1]
    mels = random_mels(len(lengths), 100, 80, seed=5)
    for i, n in enumerate(lengths):
        mels[i, n:] = 1e3  # garbage padding: must not leak
    with torch.no_grad():
        states, out = tiny.forward_layers(torch.from_numpy(mels), torch.tensor(lengths))
        assert out.tolist() == [50, 31, 4, 1]
        for i, n in enumerate(lengths):
            alone, _ = tiny.forward_layers(torch.from_numpy(mels[i:i + 1, :n]), torch.tensor([n]))
            for s, a in zip(states, alone):
                assert torch.allclose(s[i, :out[i]], a[0], atol=1e-5), (i, n)
                assert not s[i, out[i]:].any()  # padded frames are zero


def test_upto_stops_after_that_many_blocks(tiny):
    mels = torch.from_numpy(random_mels(1, 40, 80))
    with torch.no_grad():
        full, _ = tiny.forward_layers(mels, torch.tensor([40]))
        one, _ = tiny.forward_layers(mels, torch.tensor([40]), upto=1)
        none, _ = tiny.forward_layers(mels, torch.tensor([40]), upto=0)
    assert len(full) == 3 and len(one) == 2 and len(none) == 1
    assert torch.equal(one[1], full[1]) and torch.equal(none[0], full[0])
    with pytest.raises(ValueError, match="upto=3"):
        tiny.forward_layers(mels, torch.tensor([40]), upto=3)


def test_longer_than_the_window_is_refused(tiny):
    with pytest.raises(ValueError, match="longer than Whisper's 100 .* window"):
        tiny(torch.zeros(1, 2 * WHISPER_CTX + 1, 80), torch.tensor([2 * WHISPER_CTX + 1]))
    with pytest.raises(ValueError, match=r"\(batch, frames, 80\)"):
        tiny(torch.zeros(1, 10, 40), torch.tensor([10]))


def test_pad_to_30s_pads_with_whispers_floor_and_crops_back(whisper_hf, tiny):
    padded = WhisperEncoder.from_transformers(whisper_hf, pad_to_30s=True).eval()
    mels = random_mels(2, 40, 80, seed=2)
    mels[1, 25:] = 0.0  # batch padding
    x, lengths = torch.from_numpy(mels), torch.tensor([40, 25])
    filled, full = padded.pad_30s(x, lengths)
    assert filled.shape == (2, 2 * WHISPER_CTX, 80) and full.tolist() == [100, 100]
    for i, n in enumerate([40, 25]):
        assert torch.equal(filled[i, :n], x[i, :n])
        assert torch.all(filled[i, n:] == x[i, :n].max() - 2.0)  # 8 log10 units below the max
    silence = torch.full((1, 10, 80), -1.5)  # all at the log10(1e-10) floor already
    assert torch.all(padded.pad_30s(silence, torch.tensor([10]))[0] == -1.5)
    with torch.no_grad():
        y, out = padded(x, lengths)
        y_sliced, _ = tiny(x, lengths)
        ref, _ = tiny(filled, full)  # the whole 30 s, as Whisper runs it
    assert out.tolist() == [20, 13] and y.shape == y_sliced.shape == (2, 20, 32)
    assert torch.allclose(y[0], ref[0, :20], atol=1e-5)
    assert torch.allclose(y[1, :13], ref[1, :13], atol=1e-5) and not y[1, 13:].any()
    assert not torch.allclose(y, y_sliced, atol=1e-3)  # the padding is attended to


def test_output_lengths_and_the_modules_the_downstream_uses(tiny):
    assert tiny.output_lengths(torch.tensor([1, 2, 3, 100, 3000])).tolist() == [1, 1, 2, 50, 1500]
    assert tiny.out_dim == 32 and tiny.num_layers == len(tiny.blocks) == 2
    assert isinstance(tiny.blocks, torch.nn.ModuleList)
    params = {id(p) for p in tiny.parameters()}
    assert all(id(p) in params for p in tiny.blocks[-1].parameters())
    assert "positional_embedding" in tiny.state_dict()  # a buffer: saved, never trained
    assert all(p is not tiny.positional_embedding for p in tiny.parameters())


def test_gradients_reach_the_blocks_and_stay_out_of_padding(tiny):
    x = torch.from_numpy(random_mels(2, 30, 80)).requires_grad_()
    y, _ = tiny(x, torch.tensor([30, 12]))
    y.sum().backward()
    assert tiny.blocks[0].attn.query.weight.grad.abs().sum() > 0
    assert not x.grad[1, 12:].any()  # padding frames receive nothing
    tiny.zero_grad()


def chirps(seconds: float, seed: int = 0) -> np.ndarray:
    """Rising tones, 0.25 s each, over a little noise (16 kHz): a signal with structure."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    local = t % 0.25
    wave = 0.2 * np.sin(2 * np.pi * (200 + 2000 * local) * local) * np.hanning(4000)[
        (local * 16000).astype(int)]
    return (wave + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def installed(name: str):
    files = bundle_files(BUNDLES[name])
    if files is None:
        pytest.skip(f"{name} is not installed ({BUNDLES[name].install})")
    return files


def test_tiny_en_bundle_matches_ctranslate2_encode():
    files = installed("whisper-tiny.en")
    model = WhisperEncoder.from_ct2(read_ct2(files, select=lambda n: n.startswith("encoder/")))
    assert model.dims == WhisperDims(80, 384, 6, 4, 1500)
    mels = WhisperLogMel()(chirps(3.0))[None]  # (1, 300, 80)
    ours, _ = encode(model.eval(), mels)
    ref = ct2_encode(files[0].parent, mels)
    assert ours.shape == ref.shape == (1, 150, 384)
    assert np.abs(ours - ref).max() < REAL_TOLERANCE


@pytest.mark.slow
def test_base_bundle_read_in_parts_matches_ctranslate2_encode():
    files = installed("whisper-base")
    model = WhisperEncoder.from_ct2(read_ct2(files, select=lambda n: n.startswith("encoder/")))
    assert model.dims == WhisperDims(80, 512, 8, 6, 1500)
    mels = WhisperLogMel()(chirps(3.0, seed=1))[None]
    ours, _ = encode(model.eval(), mels)
    folder = files[0].parent  # CTranslate2 gets the joined model.bin from memory, not disk
    joined = {f.name: f.read_bytes() for f in folder.iterdir()
              if f.is_file() and not f.name.startswith("model.bin")}
    joined["model.bin"] = b"".join(f.read_bytes() for f in files)
    ref = ct2_encode("whisper-base", mels, files=joined)
    assert np.abs(ours - ref).max() < REAL_TOLERANCE
