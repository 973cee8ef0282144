"""Whisper's audio encoder in PyTorch (float32), from CTranslate2 or transformers weights.

    log-mel (B, T, n_mels), T <= 2 n_ctx (3000: 30 s)
      -> GELU(conv1: k3 p1) -> GELU(conv2: k3 stride 2 p1)      (B, T', width), T' = (T-1)//2 + 1
      -> + positions 0..T'-1 (sliced: no padding to 30 s)
      -> N pre-LayerNorm blocks: x + MHSA(LN(x)), x + MLP(LN(x))  (GELU MLP, 4 x width)
      -> final LayerNorm                                         (B, T', width)

The computation of openai/whisper `model.py` (AudioEncoder), which CTranslate2's
`src/layers/whisper.cc` and transformers' `WhisperEncoder` also run; the module names follow
openai/whisper's. Padding never changes a real frame's output: each convolution sees zeros past
an utterance's length (what it sees alone: the convolutions' own zero padding), attention gets
a key padding mask, and padded output frames are zero. Whisper was trained on inputs padded to
30 s; `pad_to_30s` reproduces that (the mel padded with the value Whisper's own padding gives,
outputs cropped back) so the two can be measured against each other.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asrlab.ctc import time_mask
from asrlab.ct2 import CT2Model
from asrlab.frames import WHISPER_STAGES, stage_lengths
from asrlab.models.encoder import LayeredEncoder
from asrlab.pretrained import weight_files

#: Whisper's log-mel, normalized ((log10 + 4) / 4), of silence: the log10 floor of 1e-10 (-10)
LOG_FLOOR_NORMALIZED = (-10.0 + 4.0) / 4.0
#: ... and of any frame 8 (log10 units) below the loudest: 8 / 4 in normalized units
FLOOR_BELOW_MAX = 2.0


#: CTranslate2's names of a layer's weight and bias: a linear or convolution's, a LayerNorm's
_LINEAR, _NORM = ("weight", "bias"), ("gamma", "beta")
#: (our layer, its name in a CTranslate2 WhisperSpec under encoder/, its weight and bias names)
CT2_LAYERS = (("conv1", "conv1", _LINEAR), ("conv2", "conv2", _LINEAR),
              ("ln_post", "layer_norm", _NORM))
#: ... in each block (under blocks.i. and layer_i/), besides the fused query/key/value projection
CT2_BLOCK_LAYERS = (("attn.out", "self_attention/linear_1", _LINEAR),
                    ("attn_ln", "self_attention/layer_norm", _NORM),
                    ("mlp_ln", "ffn/layer_norm", _NORM),
                    ("mlp.0", "ffn/linear_0", _LINEAR),
                    ("mlp.2", "ffn/linear_1", _LINEAR))


@dataclass(frozen=True)
class WhisperDims:
    """The encoder's sizes (tiny: 80, 384, 6, 4; base: 80, 512, 8, 6)."""
    n_mels: int
    width: int
    heads: int
    layers: int
    n_ctx: int = 1500  # positions: output frames at most (2 n_ctx input frames, 30 s)

    def __post_init__(self):
        sizes = {"n_mels": self.n_mels, "width": self.width, "heads": self.heads,
                 "layers": self.layers, "n_ctx": self.n_ctx}
        bad = [k for k, v in sizes.items() if not (isinstance(v, int) and v > 0)]
        if bad:
            raise ValueError(f"WhisperDims: {', '.join(bad)} must be positive integers ({sizes})")
        if self.width % self.heads:
            raise ValueError(f"WhisperDims: width {self.width} does not split into "
                             f"{self.heads} heads")


class WhisperAttention(nn.Module):
    """Multi-head self-attention; the key projection has no bias (Whisper's)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, D); mask (B, 1, 1, T) bool, True on keys to attend to, or None."""
        B, T, D = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, self.heads, D // self.heads).transpose(1, 2)  # (B, H, T, Dh)

        y = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)),
                                           split(self.value(x)), attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


class WhisperBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn_ln = nn.LayerNorm(width)
        self.attn = WhisperAttention(width, heads)
        self.mlp_ln = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), mask)
        return x + self.mlp(self.mlp_ln(x))


class WhisperEncoder(LayeredEncoder):
    """forward(x (B, T, n_mels) Whisper log-mel, lengths (B,) mel frames)
    -> (y (B, T', width), lengths (B,) output frames); see the module docstring."""

    def __init__(self, dims: WhisperDims, pad_to_30s: bool = False):
        super().__init__()
        self.dims = dims
        self.pad_to_30s = pad_to_30s
        self.conv1 = nn.Conv1d(dims.n_mels, dims.width, 3, padding=1)
        self.conv2 = nn.Conv1d(dims.width, dims.width, 3, stride=2, padding=1)
        # fixed (sinusoids in Whisper): a buffer, saved with the weights, never trained
        self.register_buffer("positional_embedding", torch.zeros(dims.n_ctx, dims.width))
        self.blocks = nn.ModuleList(WhisperBlock(dims.width, dims.heads)
                                    for _ in range(dims.layers))
        self.ln_post = nn.LayerNorm(dims.width)
        self.out_dim = dims.width
        self.num_layers = dims.layers

    @property
    def max_frames(self) -> int:
        """Input frames at most: 2 n_ctx (3000, 30 s of audio)."""
        return 2 * self.dims.n_ctx

    stages = WHISPER_STAGES  # conv2 (kernel 3, stride 2, padding 1) halves the mel frames

    def forward_layers(self, x: torch.Tensor, lengths: torch.Tensor, upto: int | None = None
                       ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The hidden states as transformers' `output_hidden_states` gives them: after the
        positions, then each block's output, the last block's after the final LayerNorm;
        `upto` < num_layers stops after that many blocks (upto + 1 states, the last one not
        normalized). Each (B, T', width), padded frames zero; lengths (B,) output frames."""
        upto = self.check_upto(upto)
        if x.dim() != 3 or x.shape[2] != self.dims.n_mels:
            raise ValueError(f"Whisper's encoder takes (batch, frames, {self.dims.n_mels}) "
                             f"log-mels, got shape {tuple(x.shape)}")
        if x.shape[1] == 0:
            raise ValueError("Whisper's encoder got no frames (an empty batch or no audio)")
        if x.shape[1] > self.max_frames:
            raise ValueError(f"{x.shape[1]} mel frames ({x.shape[1] / 100:.1f} s) is longer "
                             f"than Whisper's {self.max_frames} ({self.max_frames / 100:.0f} s) "
                             f"window: transcribe long audio in windows (asrlab.longform)")
        lengths = lengths.to(device=x.device, dtype=torch.long)
        out_lengths = self.output_lengths(lengths)
        T_out = stage_lengths(x.shape[1], self.stages)  # without padding to 30 s
        if self.pad_to_30s:
            x, lengths = self.pad_30s(x, lengths)
        real = time_mask(lengths, x.shape[1])[:, None, :]  # (B, 1, T)
        h = torch.where(real, x.transpose(1, 2), 0.0)  # (B, n_mels, T)
        h = F.gelu(self.conv1(h))  # (B, D, T)
        h = F.gelu(self.conv2(torch.where(real, h, 0.0)))  # (B, D, T')
        inner = self.output_lengths(lengths)
        T = h.shape[2]
        h = h.transpose(1, 2) + self.positional_embedding[:T]  # (B, T', D)
        valid = time_mask(inner, T)
        valid[:, 0] = True  # an empty utterance attends to something (no NaN); zeroed below
        mask = None if bool(valid.all()) else valid[:, None, None, :]  # (B, 1, 1, T')
        states = [h]
        for block in self.blocks[:upto]:
            h = block(h, mask)
            states.append(h)
        if upto == self.num_layers:
            states[-1] = self.ln_post(h)
        keep = time_mask(out_lengths, T_out)[..., None]  # (B, T', 1)
        return [torch.where(keep, s[:, :T_out], 0.0) for s in states], out_lengths

    def run_blocks(self, h: torch.Tensor, lengths: torch.Tensor, start: int, end: int
                   ) -> list[torch.Tensor]:
        """Blocks start..end-1 from h (B, T', width), the state before block `start` as
        forward_layers gives it, lengths (B,) output frames -> their states, the last after
        the final LayerNorm when `end` is the last block; padded frames zero. A real frame's
        states are those forward_layers gives (padded frames are never attended to). Not for
        pad_to_30s, whose padded frames are attended to."""
        valid = time_mask(lengths, h.shape[1])
        keep = valid[..., None]  # (B, T', 1)
        valid[:, 0] = True  # an empty utterance attends to something (no NaN); zeroed below
        mask = None if bool(valid.all()) else valid[:, None, None, :]  # (B, 1, 1, T')
        states = []
        for block in self.blocks[start:end]:
            h = block(h, mask)
            states.append(h)
        if end == self.num_layers and states:
            states[-1] = self.ln_post(states[-1])
        return [torch.where(keep, s, 0.0) for s in states]

    def pad_30s(self, x: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, n_mels) -> (B, 2 n_ctx, n_mels): each utterance's frames past its length set
        to what Whisper's own padding (30 s of zero samples) gives its log-mel: the floor, 8
        log10 units below the utterance's maximum, or log10(1e-10) when that is higher."""
        B, T, n_mels = x.shape
        real = time_mask(lengths, T)[..., None]  # (B, T, 1)
        top = torch.where(real, x, float("-inf")).amax(dim=(1, 2))  # (B,) normalized maximum
        fill = torch.clamp(top - FLOOR_BELOW_MAX, min=LOG_FLOOR_NORMALIZED)  # (B,)
        out = fill[:, None, None].expand(B, self.max_frames, n_mels).clone()
        out[:, :T] = torch.where(real, x, out[:, :T])
        return out, torch.full_like(lengths, self.max_frames)

    # ---- constructors -------------------------------------------------------------------

    @classmethod
    def from_ct2(cls, variables: CT2Model | Mapping[str, np.ndarray],
                 pad_to_30s: bool = False) -> "WhisperEncoder":
        """From a CTranslate2 WhisperSpec's variables (asrlab.ct2.read_ct2; a mapping
        of names to arrays, aliases resolved, works too)."""
        v = variables.resolved("encoder/") if isinstance(variables, CT2Model) else variables

        def get(name: str) -> np.ndarray:
            if f"encoder/{name}" not in v:
                raise ValueError(f"not a CTranslate2 Whisper encoder: encoder/{name} is missing")
            return v[f"encoder/{name}"]

        width, n_mels, _ = get("conv1/weight").shape
        layers = 0
        while f"encoder/layer_{layers}/self_attention/linear_0/weight" in v:
            layers += 1
        dims = WhisperDims(int(n_mels), int(width), int(get("num_heads")), layers,
                           int(get("position_encodings/encodings").shape[0]))
        d = dims.width

        def renamed(table, ours: str, theirs: str) -> dict[str, np.ndarray]:
            return {f"{ours}{name}.{param}": get(f"{theirs}{ct2_name}/{ct2_param}")
                    for name, ct2_name, ct2_params in table
                    for param, ct2_param in zip(("weight", "bias"), ct2_params)}

        tensors = {"positional_embedding": get("position_encodings/encodings"),
                   **renamed(CT2_LAYERS, "", "")}
        for i in range(layers):
            src, dst = f"layer_{i}/", f"blocks.{i}."
            tensors.update(renamed(CT2_BLOCK_LAYERS, dst, src))
            qkv_w = get(src + "self_attention/linear_0/weight")  # (3d, d): q, k, v
            qkv_b = get(src + "self_attention/linear_0/bias")
            # the k bias (zeros in Whisper) is dropped: it adds the same amount to every key's
            # score of a query, which softmax cancels
            tensors.update({
                dst + "attn.query.weight": qkv_w[:d], dst + "attn.query.bias": qkv_b[:d],
                dst + "attn.key.weight": qkv_w[d:2 * d],
                dst + "attn.value.weight": qkv_w[2 * d:], dst + "attn.value.bias": qkv_b[2 * d:]})
        model = cls(dims, pad_to_30s)
        model.load_exact({k: torch.from_numpy(np.array(a, np.float32)) for k, a in tensors.items()},
                         "the CTranslate2 model")
        return model

    @classmethod
    def from_transformers(cls, folder: str | Path, pad_to_30s: bool = False
                          ) -> "WhisperEncoder":
        """From a transformers WhisperModel / WhisperForConditionalGeneration folder
        (config.json and model.safetensors or pytorch_model.bin, sharded or not); the encoder
        only."""
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        if config.get("model_type") != "whisper":
            raise ValueError(f"{folder}/config.json: model_type {config.get('model_type')!r}, "
                             f"not whisper")
        if config.get("activation_function", "gelu") != "gelu":
            raise ValueError(f"{folder}/config.json: activation_function "
                             f"{config['activation_function']!r} (Whisper's encoder is GELU)")
        dims = WhisperDims(config["num_mel_bins"], config["d_model"],
                           config["encoder_attention_heads"], config["encoder_layers"],
                           config["max_source_positions"])
        renames = [(r"^embed_positions\.weight$", "positional_embedding"),
                   (r"^layer_norm\.", "ln_post."),
                   (r"^layers\.(\d+)\.self_attn_layer_norm\.", r"blocks.\1.attn_ln."),
                   (r"^layers\.(\d+)\.self_attn\.q_proj\.", r"blocks.\1.attn.query."),
                   (r"^layers\.(\d+)\.self_attn\.k_proj\.", r"blocks.\1.attn.key."),
                   (r"^layers\.(\d+)\.self_attn\.v_proj\.", r"blocks.\1.attn.value."),
                   (r"^layers\.(\d+)\.self_attn\.out_proj\.", r"blocks.\1.attn.out."),
                   (r"^layers\.(\d+)\.final_layer_norm\.", r"blocks.\1.mlp_ln."),
                   (r"^layers\.(\d+)\.fc1\.", r"blocks.\1.mlp.0."),
                   (r"^layers\.(\d+)\.fc2\.", r"blocks.\1.mlp.2.")]
        tensors = {}
        for name, tensor in load_tensors(weight_files(folder)).items():
            local = re.sub(r"^(model\.)?encoder\.", "", name)
            if local == name:  # not the encoder's
                continue
            for pattern, repl in renames:
                local = re.sub(pattern, repl, local)
            if not local.endswith("attn.key.bias"):  # none in Whisper; softmax would cancel it
                tensors[local] = tensor.float()
        model = cls(dims, pad_to_30s)
        model.load_exact(tensors, str(folder))
        return model

    def load_exact(self, tensors: Mapping[str, torch.Tensor], source: str) -> None:
        """Load every parameter and buffer from `tensors`, nothing missing, nothing extra, shapes
        equal; a mismatch is one line naming the first problem."""
        want = self.state_dict()
        problems = [f"{k} is missing" for k in want if k not in tensors]
        problems += [f"{k} is not a parameter of this encoder" for k in tensors if k not in want]
        problems += [f"{k} has shape {tuple(tensors[k].shape)}, expected {tuple(want[k].shape)}"
                     for k in want if k in tensors and tensors[k].shape != want[k].shape]
        if problems:
            raise ValueError(f"{source}: not a Whisper encoder this module can hold "
                             f"({len(problems)} problems; first: {problems[0]})")
        self.load_state_dict(dict(tensors), strict=True)


def load_tensors(files: tuple[Path, ...]) -> dict[str, torch.Tensor]:
    """Every tensor of a transformers checkpoint's weight files (safetensors or PyTorch)."""
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # comes with transformers (optional)

            tensors.update(load_file(str(path), device="cpu"))
        else:
            tensors.update(torch.load(path, map_location="cpu", weights_only=True))
    return tensors
