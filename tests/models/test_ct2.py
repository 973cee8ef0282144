"""asrlab.ct2: CTranslate2's model.bin read into NumPy, on conversions the tests make of a
tiny random transformers Whisper (every quantization CTranslate2 writes)."""

from __future__ import annotations

import numpy as np
import pytest

from asrlab.ct2 import CT2FormatError, read_ct2


def hf_tensors(folder) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


# the largest error a quantization may leave, relative to the row's (int8) or the tensor's
# (int16) largest magnitude, or to each value (float16, bfloat16)
@pytest.mark.parametrize("quantization, stored", [
    ("float32", "float32"), ("float16", "float16"), ("bfloat16", "bfloat16"),
    ("int8", "int8"), ("int16", "int16")])
def test_weights_come_back_as_the_model_they_were_made_from(whisper_ct2, whisper_hf,
                                                             quantization, stored):
    model = read_ct2(whisper_ct2[quantization] / "model.bin")
    assert (model.spec, model.revision, model.binary_version) == ("WhisperSpec", 3, 6)
    hf = hf_tensors(whisper_hf)
    pairs = {"encoder/conv1/weight": hf["model.encoder.conv1.weight"],  # (32, 80, 3): conv rows
             "encoder/layer_0/ffn/linear_0/weight": hf["model.encoder.layers.0.fc1.weight"],
             "encoder/layer_1/self_attention/linear_1/weight":
                 hf["model.encoder.layers.1.self_attn.out_proj.weight"]}
    for name, original in pairs.items():
        assert model.stored[name].dtype == stored
        ours = model.get(name)
        assert ours.dtype == np.float32 and ours.shape == original.shape
        err = np.abs(ours - original)
        if stored == "float32":
            assert err.max() == 0
        elif stored in ("float16", "bfloat16"):
            bits = 11 if stored == "float16" else 8  # mantissa bits, the implicit one included
            assert np.all(err <= np.abs(original) * 2.0 ** -bits + 1e-7)
        elif stored == "int8":  # per output row: step amax / 127
            rows = np.abs(original).reshape(original.shape[0], -1).max(axis=1)
            bound = rows / 127 / 2 * 1.001
            assert np.all(err.reshape(len(rows), -1) <= bound[:, None])
            assert not np.allclose(ours, original, atol=1e-7)  # it really was quantized
        else:  # int16: one scale 2^10 / amax for the tensor
            assert err.max() <= np.abs(original).max() / 2 ** 10 / 2 * 1.001
    assert model.get("encoder/num_heads").dtype == np.int16 and model.scalar(
        "encoder/num_heads") == 4
    assert not any(n.endswith("_scale") for n in model.variables)  # consumed by dequantization


def test_select_reads_only_what_is_asked_and_the_targets_of_its_aliases(whisper_ct2):
    path = whisper_ct2["float32"] / "model.bin"
    full = read_ct2(path)
    part = read_ct2(path, select=lambda n: n.startswith("encoder/"))
    alias = "encoder/layer_1/self_attention/layer_norm/gamma"
    target = part.aliases[alias]  # equal values: CTranslate2 stored it once, in the decoder
    assert target.startswith("decoder/") and target in part.variables
    loaded_decoder = {n for n, v in part.variables.items() if n.startswith("decoder/") and v.ndim}
    assert loaded_decoder == {part.target(a) for a in part.aliases if a.startswith("encoder/")}
    assert set(part.stored) == set(full.stored)  # everything described, not everything read
    enc = part.resolved("encoder/")
    assert alias in enc and enc[alias] is part.variables[target]
    assert all(np.array_equal(enc[n], full.get(n)) for n in enc)
    scalars = read_ct2(path, select=lambda n: False)
    assert set(scalars.variables) == {n for n, v in full.stored.items() if not v.shape}
    with pytest.raises(KeyError, match="not loaded"):
        scalars.get("encoder/conv1/weight")


@pytest.mark.parametrize("quantization", ["float16", "int8"])
def test_parts_are_read_as_one_stream(whisper_ct2, tmp_path, quantization):
    """A model.bin cut anywhere (inside a header, inside a variable) reads the same in parts."""
    blob = (whisper_ct2[quantization] / "model.bin").read_bytes()
    cuts = [0, 3, 777, len(blob) // 2 + 1, len(blob)]
    parts = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        parts.append(tmp_path / f"model.bin.part{i + 1}")
        parts[-1].write_bytes(blob[a:b])
    whole = read_ct2(whisper_ct2[quantization] / "model.bin")
    split = read_ct2(parts)
    assert split.variables.keys() == whole.variables.keys() and split.aliases == whole.aliases
    assert all(np.array_equal(split.variables[n], whole.variables[n]) for n in whole.variables)


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


def test_a_truncated_file_is_one_line_naming_it_and_the_fix(whisper_ct2, tmp_path):
    blob = (whisper_ct2["float16"] / "model.bin").read_bytes()
    cut = tmp_path / "model.bin"
    for size in (2, 40, len(blob) // 2, len(blob) - 1):
        cut.write_bytes(blob[:size])
        with pytest.raises(CT2FormatError) as e:
            read_ct2(cut, hint="; reinstall it: pip install --force-reinstall some-package")
        message = one_line(e)
        assert str(cut) in message and "truncated" in message, message
        assert message.endswith("pip install --force-reinstall some-package")


def test_parts_in_the_wrong_order_or_with_bytes_appended_are_refused(whisper_ct2, tmp_path):
    blob = (whisper_ct2["float16"] / "model.bin").read_bytes()
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(blob[:1000])
    b.write_bytes(blob[1000:])
    with pytest.raises(CT2FormatError, match="binary version"):
        read_ct2([b, a])
    b.write_bytes(blob[1000:] + b"\0\0\0")
    with pytest.raises(CT2FormatError) as e:
        read_ct2([a, b])
    assert "3 unexpected bytes after the aliases" in one_line(e) and f"{a} + {b}" in str(e.value)


def patched(blob: bytes, at: int, new: bytes) -> bytes:
    return blob[:at] + new + blob[at + len(new):]


def test_corrupt_headers_are_named(whisper_ct2, tmp_path):
    src = read_ct2(whisper_ct2["int8"] / "model.bin", select=lambda n: False)
    blob = (whisper_ct2["int8"] / "model.bin").read_bytes()
    bad = tmp_path / "model.bin"
    info = src.stored["encoder/conv2/bias"]  # float32 (32,): rank, dims, dtype, nbytes, data
    cases = [
        (patched(blob, 0, (7).to_bytes(4, "little")), "binary version 7"),
        (patched(blob, info.offset - 5, bytes([9])), "dtype id 9"),
        (patched(blob, info.offset - 4, (12).to_bytes(4, "little")), "declares 12 bytes"),
        (patched(blob, info.offset - 10, bytes([200])), "rank 200"),
    ]
    for data, expected in cases:
        bad.write_bytes(data)
        with pytest.raises(CT2FormatError) as e:
            read_ct2(bad)
        assert expected in one_line(e) and str(bad) in str(e.value)
    # an int8 weight whose scale is gone cannot be dequantized
    at = blob.index(b"encoder/conv1/weight_scale")
    bad.write_bytes(patched(blob, at, b"encoder/conv1/weight_scalX"))
    with pytest.raises(CT2FormatError, match="'encoder/conv1/weight' is int8 but"):
        read_ct2(bad)


def test_binary_versions_4_and_5_share_the_layout(whisper_ct2, tmp_path):
    blob = (whisper_ct2["float16"] / "model.bin").read_bytes()
    whole = read_ct2(whisper_ct2["float16"] / "model.bin")
    for version in (4, 5):
        path = tmp_path / f"v{version}.bin"
        path.write_bytes(patched(blob, 0, version.to_bytes(4, "little")))
        older = read_ct2(path)
        assert older.binary_version == version
        assert all(np.array_equal(older.variables[n], whole.variables[n]) for n in whole.variables)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CT2FormatError, match="nope.bin: cannot read"):
        read_ct2(tmp_path / "nope.bin")
