"""wav2vec2, HuBERT and WavLM encoders from transformers folders, behind WhisperEncoder's API.

    waveform (B, S) or (B, S, 1) at 16 kHz, lengths (B,) samples
      -> zero-mean unit-variance per utterance over its real samples (the folder's
         `do_normalize`), padded samples zero (what the feature extractor hands the model)
      -> the transformers model (Wav2Vec2Model, HubertModel, WavLMModel; a *ForCTC folder gives
         its base model), with an attention mask only when `feat_extract_norm` is "layer"
      -> (B, T', hidden), T' from the feature encoder's convolutions (320 x fewer: 50 frames/s)

The model is transformers' own (not re-implemented): `model` is the transformers module and
`blocks` its transformer layers. Group-norm checkpoints (wav2vec2-base, HuBERT-base) normalize
the first convolution over the whole padded input and take no mask (their feature extractors
say so), so padding changes their outputs a little; layer-norm ones are padding-invariant.

LayerDrop is switched off (config.layerdrop = 0): a skipped layer would leave the weighted sum of
layers one entry short. transformers' own time masking (`mask_time_prob`, training only) stays as
the checkpoint sets it.

transformers is an optional dependency: it is imported by this module only.
"""

from __future__ import annotations

import torch
import transformers
from torch import nn

from asrlab.ctc import time_mask
from asrlab.frames import Stage
from asrlab.models.encoder import LayeredEncoder
from asrlab.pretrained import EncoderSource, conv_stack

MODEL_CLASSES = {"wav2vec2": "Wav2Vec2Model", "hubert": "HubertModel", "wavlm": "WavLMModel"}
NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm


class _Stop(Exception):
    """Raised by a hook once the layers asked for have run (forward_layers' `upto`)."""


def normalize_waveform(wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, S) -> zero-mean unit-variance per row over its first `lengths` samples (population
    variance, eps 1e-7 as transformers' feature extractor); samples past the length zero."""
    real = time_mask(lengths, wave.shape[1])  # (B, S)
    n = lengths.clamp(min=1).to(wave.dtype)[:, None]  # (B, 1)
    mean = torch.where(real, wave, 0.0).sum(1, keepdim=True) / n
    var = torch.where(real, (wave - mean) ** 2, 0.0).sum(1, keepdim=True) / n
    return torch.where(real, (wave - mean) / torch.sqrt(var + NORM_EPS), 0.0)


class HFEncoder(LayeredEncoder):
    """forward(x (B, S) or (B, S, 1) waveform, lengths (B,) samples) -> (y (B, T', out_dim),
    lengths (B,) frames); forward_layers, output_lengths, blocks, num_layers as WhisperEncoder."""

    def __init__(self, model: nn.Module, normalize: bool, attention_mask: bool):
        super().__init__()
        self.model = model
        config = model.config
        config.layerdrop = 0.0
        self.normalize = normalize
        self.use_mask = attention_mask
        self.conv_stack = conv_stack(config.to_dict())  # ((kernel, stride), ...)
        # the feature encoder's unpadded convolutions (0 frames below one window)
        self.stages = tuple(Stage(kernel, stride) for kernel, stride in self.conv_stack)
        self.out_dim = config.hidden_size
        self.num_layers = config.num_hidden_layers
        self.blocks = model.encoder.layers  # the same ModuleList (freeze / unfreeze by index)

    @classmethod
    def from_source(cls, source: EncoderSource) -> "HFEncoder":
        """A wav2vec2 / hubert / wavlm transformers folder (asrlab.pretrained.resolve_encoder)."""
        model_class = getattr(transformers, MODEL_CLASSES[source.kind])
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # a *ForCTC folder's head is left out: fine
        try:
            model = model_class.from_pretrained(str(source.folder), local_files_only=True)
        finally:
            transformers.logging.set_verbosity(verbosity)
        return cls(model.float(), source.normalize, source.attention_mask)

    @classmethod
    def from_config(cls, config: dict, normalize: bool, attention_mask: bool) -> "HFEncoder":
        """Untrained, from a config.json's contents (to load a checkpoint's weights into)."""
        kind = config["model_type"]
        config_class = getattr(transformers, MODEL_CLASSES[kind].replace("Model", "Config"))
        model_class = getattr(transformers, MODEL_CLASSES[kind])
        return cls(model_class(config_class.from_dict(config)), normalize, attention_mask)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's last_hidden_state, padded frames zero (no hooks: export traces this)."""
        x, lengths, mask = self.inputs(x, lengths)
        y = self.model(x, attention_mask=mask).last_hidden_state  # (B, T', D)
        (y,), lengths = self.zero_padding([y], lengths)
        return y, lengths

    def forward_layers(self, x: torch.Tensor, lengths: torch.Tensor, upto: int | None = None
                       ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """transformers' hidden_states: the input of the first layer, then each layer's output
        (the last one as last_hidden_state: after the final LayerNorm of the stable-layer-norm
        models); `upto` < num_layers stops after that many layers. Padded frames zero."""
        upto = self.check_upto(upto)
        x, lengths, mask = self.inputs(x, lengths)
        states: list[torch.Tensor] = []

        def first(module, args, kwargs):  # the input of layer 0: hidden_states[0]
            states.append(args[0] if args else kwargs["hidden_states"])
            if upto == 0:
                raise _Stop

        def after(module, args, output):
            states.append(output[0] if isinstance(output, tuple) else output)
            if len(states) == upto + 1 and upto < self.num_layers:
                raise _Stop

        hooks = [self.blocks[0].register_forward_pre_hook(first, with_kwargs=True)]
        hooks += [block.register_forward_hook(after) for block in self.blocks[:upto]]
        try:
            states[-1:] = [self.model(x, attention_mask=mask).last_hidden_state]
        except _Stop:
            pass
        finally:
            for hook in hooks:
                hook.remove()
        return self.zero_padding(states, lengths)

    def inputs(self, x: torch.Tensor, lengths: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(B, S) or (B, S, 1) -> the model's input_values (B, S), lengths, attention mask."""
        if x.dim() == 3 and x.shape[2] == 1:
            x = x[..., 0]  # (B, S, 1) -> (B, S)
        if x.dim() != 2:
            raise ValueError(f"a waveform encoder takes (batch, samples) or (batch, samples, 1), "
                             f"got shape {tuple(x.shape)}")
        lengths = lengths.to(device=x.device, dtype=torch.long)
        real = time_mask(lengths, x.shape[1])  # (B, S)
        x = normalize_waveform(x, lengths) if self.normalize else torch.where(real, x, 0.0)
        return x, lengths, real.long() if self.use_mask else None

    def zero_padding(self, states: list[torch.Tensor], lengths: torch.Tensor):
        """States (B, T', D) with the frames past each utterance's output length zeroed, and
        those output lengths."""
        out_lengths = self.output_lengths(lengths)
        keep = time_mask(out_lengths, states[0].shape[1])[..., None]  # (B, T', 1)
        return [torch.where(keep, s, 0.0) for s in states], out_lengths
