"""Read a CTranslate2 `model.bin` into NumPy arrays (no torch, no ctranslate2).

No reverse converter exists upstream, so this is the reader of CTranslate2's own format:
the writer is `python/ctranslate2/specs/model_spec.py` (`_serialize`), the reader
`src/models/model.cc` (`Model::load`). Little-endian, in order:

    uint32 binary version; string spec name; uint32 spec revision; uint32 variable count;
    per variable: string name, uint8 rank, rank x uint32 dims, uint8 dtype id, uint32 bytes, data;
    uint32 alias count; per alias: string alias, string target name.

A string is a uint16 length that counts a trailing NUL, then the bytes with that NUL. dtype ids
(include/ctranslate2/types.h): 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16.
Versions 4 to 6 share this layout (model.cc reads them alike; 1-3 stored item sizes, not types).

What comes back is float32: float16 and bfloat16 are widened; int8 and int16 weights are
dequantized with their `NAME_scale` variable the way CTranslate2's Dequantize does (value /
scale): int8 has one scale per output row (the first dimension; conv weights flattened to rows,
as model_spec.py `_quantize` made them), int16 one scale for the whole tensor (1000 when a
pre-scale int16 model has none, as model.cc assumes). Scalars (`encoder/num_heads`, int16) and
integer tensors that are not weights are kept as stored.

Several files can be read as one stream (a model.bin shipped in parts) without joining them on
disk. A file that ends early, or whose header makes no sense, is one `CT2FormatError` line naming
the file, the byte offset and what was being read, plus the caller's `hint` (what to reinstall).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

import numpy as np

BINARY_VERSIONS = (4, 5, 6)
DTYPE_NAMES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_NUMPY = {"float32": np.float32, "int8": np.int8, "int16": np.int16, "int32": np.int32,
          "float16": np.float16, "bfloat16": np.uint16}  # bfloat16: raw bits, widened below
INT16_DEFAULT_SCALE = 1000.0  # ops::Quantize::global_int16_scale (models without a saved scale)
MAX_RANK = 8  # CTranslate2 writes ranks up to 4; more means the header is not what we think


class CT2FormatError(ValueError):
    """A model.bin that cannot be read: truncated, corrupt, or not a CTranslate2 model."""


@dataclass(frozen=True)
class VariableInfo:
    """One variable as stored: its shape, stored dtype, and where its bytes are in the stream."""
    name: str
    shape: tuple[int, ...]
    dtype: str  # one of DTYPE_NAMES
    offset: int  # of the data, in the concatenated stream
    nbytes: int


@dataclass(frozen=True)
class CT2Model:
    """A model.bin read: every variable's description, the values of those loaded (float32 but
    for scalars and integer non-weights), and the aliases (alias -> variable it shares)."""
    files: tuple[Path, ...]
    binary_version: int
    spec: str  # e.g. "WhisperSpec"
    revision: int
    stored: dict[str, VariableInfo]  # every variable in the file, loaded or not (scales included)
    variables: dict[str, np.ndarray]  # the loaded ones, dequantized (no *_scale entries)
    aliases: dict[str, str]

    def get(self, name: str) -> np.ndarray:
        """A loaded variable by name, through aliases."""
        target = self.target(name)
        if target not in self.variables:
            where = "not loaded" if target in self.stored else "not in the model"
            raise KeyError(f"{name}: {where} ({' + '.join(map(str, self.files))})")
        return self.variables[target]

    def target(self, name: str) -> str:
        """The stored variable a name refers to (itself, or what its alias chain ends at)."""
        for _ in range(len(self.aliases) + 1):
            if name not in self.aliases:
                return name
            name = self.aliases[name]
        raise CT2FormatError(f"{self.files[0]}: alias cycle at {name!r}")

    def resolved(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Loaded variables and the aliases of loaded variables, by name (shared arrays, no
        copies), restricted to names starting with `prefix`."""
        out = {k: v for k, v in self.variables.items() if k.startswith(prefix)}
        for alias in self.aliases:
            if alias.startswith(prefix) and self.target(alias) in self.variables:
                out[alias] = self.variables[self.target(alias)]
        return out

    def scalar(self, name: str) -> int:
        value = self.get(name)
        if value.ndim:
            raise CT2FormatError(f"{self.files[0]}: {name} has shape {value.shape}, expected a "
                                 f"scalar")
        return int(value)


class _Stream:
    """Files read as one byte stream, with positions in the concatenation."""

    def __init__(self, files: Sequence[Path], hint: str):
        self.files = list(files)
        self.hint = hint
        self.sizes = []
        for f in self.files:
            try:
                self.sizes.append(f.stat().st_size)
            except OSError as e:
                raise CT2FormatError(f"{f}: cannot read ({e.strerror or e}){hint}") from None
        self.starts = np.cumsum([0] + self.sizes).tolist()  # file i covers [starts[i], starts[i+1])
        self.total = self.starts[-1]
        self.pos = 0
        self.handles: list[BinaryIO | None] = [None] * len(self.files)

    def close(self) -> None:
        for h in self.handles:
            if h is not None:
                h.close()

    def name(self) -> str:
        return " + ".join(str(f) for f in self.files) if len(self.files) > 1 \
            else str(self.files[0])

    def fail(self, message: str, at: int | None = None) -> CT2FormatError:
        at = self.pos if at is None else at
        return CT2FormatError(f"{self.name()}: not a readable CTranslate2 model.bin: {message} "
                              f"(at byte {at:,} of {self.total:,}){self.hint}")

    def _handle(self, i: int) -> BinaryIO:
        if self.handles[i] is None:
            self.handles[i] = open(self.files[i], "rb")
        return self.handles[i]

    def read_into(self, buf: memoryview, what: str) -> None:
        n = len(buf)
        if self.pos + n > self.total:
            raise self.fail(f"it ends inside {what} ({n:,} bytes needed, "
                            f"{self.total - self.pos:,} left: the file is truncated)")
        done = 0
        while done < n:
            i = int(np.searchsorted(self.starts, self.pos, side="right")) - 1
            h = self._handle(i)
            h.seek(self.pos - self.starts[i])
            take = min(n - done, self.starts[i + 1] - self.pos)
            got = h.readinto(buf[done:done + take])
            if got != take:  # the file shrank while we read it
                raise self.fail(f"short read inside {what}")
            done += take
            self.pos += take

    def read(self, n: int, what: str) -> bytes:
        buf = bytearray(n)
        self.read_into(memoryview(buf), what)
        return bytes(buf)

    def skip(self, n: int, what: str) -> None:
        if self.pos + n > self.total:
            raise self.fail(f"it ends inside {what} ({n:,} bytes needed, "
                            f"{self.total - self.pos:,} left: the file is truncated)")
        self.pos += n

    def u8(self, what: str) -> int:
        return self.read(1, what)[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.read(4, what))[0]

    def string(self, what: str) -> str:
        start = self.pos
        n = struct.unpack("<H", self.read(2, what))[0]
        raw = self.read(n, what)
        if n == 0 or raw[-1] != 0:
            raise self.fail(f"{what} is not a NUL-terminated string", start)
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8", start) from None


def _as_files(files: str | Path | Sequence[str | Path]) -> tuple[Path, ...]:
    if isinstance(files, (str, Path)):
        return (Path(files),)
    out = tuple(Path(f) for f in files)
    if not out:
        raise ValueError("read_ct2: no files given")
    return out


def _read_index(s: _Stream) -> tuple[int, str, int, dict[str, VariableInfo], dict[str, str]]:
    version = s.u32("the binary version")
    if version not in BINARY_VERSIONS:
        raise s.fail(f"binary version {version} (this reader knows "
                     f"{', '.join(map(str, BINARY_VERSIONS))})", 0)
    spec = s.string("the spec name")
    revision = s.u32("the spec revision")
    count = s.u32("the variable count")
    stored: dict[str, VariableInfo] = {}
    for i in range(count):
        what = f"variable {i + 1} of {count}"
        name = s.string(f"the name of {what}")
        what = f"variable {name!r}"
        rank = s.u8(f"the rank of {what}")
        if rank > MAX_RANK:
            raise s.fail(f"{what} has rank {rank}", s.pos - 1)
        shape = struct.unpack(f"<{rank}I", s.read(4 * rank, f"the shape of {what}"))
        type_id = s.u8(f"the dtype of {what}")
        if type_id >= len(DTYPE_NAMES):
            raise s.fail(f"{what} has dtype id {type_id}", s.pos - 1)
        dtype = DTYPE_NAMES[type_id]
        nbytes = s.u32(f"the size of {what}")
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(_NUMPY[dtype]).itemsize
        if nbytes != expected:
            raise s.fail(f"{what} declares {nbytes:,} bytes for shape {shape} {dtype} "
                         f"({expected:,} expected)", s.pos - 4)
        if name in stored:
            raise s.fail(f"{what} appears twice", s.pos)
        stored[name] = VariableInfo(name, tuple(shape), dtype, s.pos, nbytes)
        s.skip(nbytes, f"the data of {what}")
    aliases: dict[str, str] = {}
    count = s.u32("the alias count")
    for i in range(count):
        alias = s.string(f"alias {i + 1} of {count}")
        aliases[alias] = s.string(f"the target of alias {alias!r}")
    if s.pos != s.total:
        raise s.fail(f"{s.total - s.pos:,} unexpected bytes after the aliases (a wrong part "
                     f"order, or something appended)")
    return version, spec, revision, stored, aliases


def _widen(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":  # the top 16 bits of a float32
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype == "float16":
        return raw.astype(np.float32)
    return raw


def _dequantize(name: str, value: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    if value.dtype == np.int8:
        if scale is None:
            raise KeyError(name)
        rows = value.reshape(value.shape[0], -1).astype(np.float32)  # conv (out, in, k) as rows
        return (rows / scale.astype(np.float32).reshape(-1, 1)).reshape(value.shape)
    s = np.float32(INT16_DEFAULT_SCALE if scale is None else scale.reshape(()))
    return value.astype(np.float32) / s


def read_ct2(files: str | Path | Sequence[str | Path],
             select: Callable[[str], bool] | None = None, hint: str = "") -> CT2Model:
    """Read a model.bin (or its parts, in order, as one stream).

    select: which variables to load (by name; a weight's `_scale` follows it, and an alias
    selected loads its target); None loads all. Scalars are always loaded. The others are only
    described (`CT2Model.stored`), their bytes skipped.
    hint: appended to every error message (e.g. "; reinstall it: pip install ...").
    """
    paths = _as_files(files)
    s = _Stream(paths, hint)
    try:
        version, spec, revision, stored, aliases = _read_index(s)
        model = CT2Model(paths, version, spec, revision, stored, {}, aliases)
        wanted = {n for n, v in stored.items()
                  if not n.endswith("_scale") and (select is None or select(n) or not v.shape)}
        for alias in aliases:
            if select is None or select(alias):
                wanted.add(model.target(alias))
        missing = sorted(n for n in wanted if n not in stored)
        if missing:
            raise s.fail(f"alias target {missing[0]!r} is not a variable of the model")
        scales = {n + "_scale" for n in wanted if n + "_scale" in stored}
        raw: dict[str, np.ndarray] = {}
        for info in sorted((stored[n] for n in wanted | scales), key=lambda v: v.offset):
            buf = bytearray(info.nbytes)
            s.pos = info.offset
            s.read_into(memoryview(buf), f"the data of variable {info.name!r}")
            raw[info.name] = np.frombuffer(buf, _NUMPY[info.dtype]).reshape(info.shape)
        for name in sorted(wanted):
            value, dtype = raw[name], stored[name].dtype
            quantized = dtype in ("int8", "int16") and value.ndim and (
                name + "_scale" in stored or name.endswith("weight"))
            if quantized:
                try:
                    value = _dequantize(name, value, raw.get(name + "_scale"))
                except KeyError:
                    raise s.fail(f"{name!r} is int8 but {name}_scale is missing",
                                 stored[name].offset) from None
            model.variables[name] = _widen(value, dtype)
        return model
    finally:
        s.close()
