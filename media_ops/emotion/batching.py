"""Exact padded batches for emotion2vec: windows of different lengths in one forward pass.

Why this module exists: FunASR's ``Emotion2vec.inference`` (what ``AutoModel.generate`` calls) runs its inputs
one at a time, and simply padding several inputs into one batch changes the results: the relative positional
encoder (``conv_pos_depth`` = 5 ``Conv1d`` layers, kernel 19) takes no padding mask, so padded frames leak
into the real frames near each input's end, and through attention into all of them. ``PaddedBatchForward``
runs the model's own ``extract_features`` on a zero-padded batch with the sample-level padding mask (FunASR
turns it into the frame-level key-padding mask of every attention block), and re-zeroes the padded frames
before each positional ``Conv1d`` through forward pre-hooks on *this model instance's* conv layers (nothing
in FunASR is patched globally). Real frames then see exactly what they see alone: zeros past their end,
as the conv's own zero padding gives a single input. Measured on the demo model: features within 6e-6,
scores within 5e-7 of one at a time (``media_ops/tests/test_emotion_batch.py``).

What it relies on in FunASR (written against funasr 1.4.16, ``funasr/models/emotion2vec``); ``check_structure``
verifies each point when the model is loaded and raises ``UnsupportedModelError`` otherwise:

1. ``Emotion2vec.extract_features(source, padding_mask=...)`` with ``source`` (batch, samples) and
   ``padding_mask`` (batch, samples, True = padding) returns ``{"x": (batch, frames, dim), "padding_mask":
   (batch, frames)}``, the extra tokens removed (``model.py``; ``AudioEncoder.convert_padding_mask``).
   The frame mask it returns is compared with our own frame counts after every pass.
2. ``model.cfg.normalize``: ``inference`` layer-normalises each input's whole waveform *before* the model; the
   batch path does the same per window, before padding.
3. ``modality_encoders["AUDIO"]``: its ``local_encoder`` convolutions have no padding, total stride 320 and a
   400-sample receptive field (``windowing``'s constants), and only per-frame norms
   (``extractor_mode: layer_norm``): no GroupNorm over time, which padding would change.
4. Its ``relative_positional_encoder`` holds exactly ``conv_pos_depth`` ``nn.Conv1d`` (stride 1, dilation 1,
   zero padding ``k // 2``); its other layers are per frame (``SamePad``, ``TransposeLast``, ``LayerNorm``,
   ``GELU``).
5. ``fixed_positional_encoder is None``; no BatchNorm / GroupNorm / InstanceNorm anywhere in the model (norms
   across frames or inputs); attention is ``AltAttention``, which fills padded keys with ``-inf``; ALiBi biases
   depend on frame distance only, so the padded bias matrix contains each input's own as its top-left block.
6. The classification head ``proj`` is applied to the mean of the frame features (``inference``).

Long inputs are windowed by the caller; windows of all inputs share batches, longest first (less padding).
``forward_passes`` counts calls of the audio encoder, FunASR's one-at-a-time path included, so tests can
assert how many passes a batch took.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from media_ops.emotion.loading import ModelDirError
from media_ops.emotion.windowing import HOP_SAMPLES, RECEPTIVE_FIELD_SAMPLES, frames_for

FUNASR_VERSION_CHECKED = "1.4.16"


class UnsupportedModelError(ModelDirError):
    """The loaded model is not built the way the exact batch path needs (another FunASR version or config)."""


def _fail(what: str) -> UnsupportedModelError:
    import funasr

    return UnsupportedModelError(
        f"emotion2vec padded batching: {what} (checked against funasr {FUNASR_VERSION_CHECKED}, "
        f"installed {getattr(funasr, '__version__', '?')}); see media_ops/emotion/batching.py"
    )


def check_structure(net: Any) -> list[Any]:
    """Check the FunASR internals the batch path relies on (module docstring, points 1-6); return the
    positional ``Conv1d`` layers to hook. Raises ``UnsupportedModelError`` naming the first mismatch."""
    import torch.nn as nn

    if type(net).__name__ != "Emotion2vec" or not callable(getattr(net, "extract_features", None)):
        raise _fail(f"expected funasr's Emotion2vec with extract_features, got {type(net).__name__}")
    cfg = getattr(net, "cfg", None)
    if cfg is None or "normalize" not in cfg:
        raise _fail("model.cfg.normalize is missing")
    if getattr(net, "proj", None) is None:
        raise _fail("no classification head (proj)")
    encoders = getattr(net, "modality_encoders", None)
    if encoders is None or "AUDIO" not in encoders:
        raise _fail("no modality_encoders['AUDIO']")
    enc = encoders["AUDIO"]
    for attr in ("local_encoder", "relative_positional_encoder", "context_encoder", "convert_padding_mask",
                 "feature_enc_layers", "modality_cfg"):
        if getattr(enc, attr, None) is None:
            raise _fail(f"the audio encoder has no {attr}")
    if getattr(enc, "fixed_positional_encoder", None) is not None:
        raise _fail("a fixed positional encoder is present")

    layers = list(enc.feature_enc_layers)
    stride = math.prod(int(s) for _, _, s in layers)
    field, jump = 1, 1
    for _, k, s in layers:
        field += (int(k) - 1) * jump
        jump *= int(s)
    if (stride, field) != (HOP_SAMPLES, RECEPTIVE_FIELD_SAMPLES):
        raise _fail(f"feature encoder stride {stride} / receptive field {field}, expected "
                    f"{HOP_SAMPLES} / {RECEPTIVE_FIELD_SAMPLES}")
    if enc.modality_cfg.get("extractor_mode") != "layer_norm":
        raise _fail(f"extractor_mode {enc.modality_cfg.get('extractor_mode')!r}: only per-frame "
                    "layer_norm is exact under padding")
    local_convs = [m for m in enc.local_encoder.modules() if isinstance(m, nn.Conv1d)]
    if len(local_convs) != len(layers) or any(tuple(c.padding) != (0,) for c in local_convs):
        raise _fail("the feature encoder's convolutions are padded or not the configured ones")

    cross_frame_norms = (nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
    for name, module in net.named_modules():
        if isinstance(module, cross_frame_norms) and ".decoder." not in f".{name}.":
            raise _fail(f"{name} ({type(module).__name__}) normalises across frames or inputs")
        if type(module).__name__ == "AltBlock" and type(module.attn).__name__ != "AltAttention":
            raise _fail(f"{name}.attn is {type(module.attn).__name__}, expected AltAttention")

    convs = [m for m in enc.relative_positional_encoder.modules() if isinstance(m, nn.Conv1d)]
    depth = int(enc.modality_cfg.get("conv_pos_depth", -1))
    if len(convs) != depth:
        raise _fail(f"{len(convs)} positional Conv1d layers, expected conv_pos_depth = {depth}")
    for conv in convs:
        k = conv.kernel_size[0]
        if (conv.stride, conv.dilation, conv.padding, conv.padding_mode) != ((1,), (1,), (k // 2,), "zeros"):
            raise _fail(f"positional conv {conv} is not stride 1, dilation 1, zero padding k // 2")
    allowed = {"Sequential", "Conv1d", "SamePad", "TransposeLast", "LayerNorm", "GELU"}
    others = {type(m).__name__ for m in enc.relative_positional_encoder.modules()} - allowed
    if others:
        raise _fail(f"unexpected layers in the positional encoder: {sorted(others)}")
    return convs


@dataclass(frozen=True)
class WindowRef:
    """One window of one input: ``item`` and ``index`` say where its result goes."""

    item: int
    index: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_batches(windows: list[WindowRef], max_batch: int) -> list[list[WindowRef]]:
    """Windows in batches of at most ``max_batch``, longest first (similar lengths together: less padding).

    The fewest passes possible: ``ceil(len(windows) / max_batch)``.
    """
    size = max(1, int(max_batch))
    ordered = sorted(windows, key=lambda w: -w.length)  # stable: equal lengths keep their input order
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


class PaddedBatchForward:
    """Frame features of several windows in one forward pass, equal to running each alone.

    Built once per loaded model: checks the structure (``check_structure``) and adds hooks to this model
    instance only: a counter on the audio encoder and the re-zeroing pre-hook on each positional conv.
    Thread-safe: the padding mask a pass's hooks read belongs to the thread running that pass, so the
    worker's model lanes (``ModelPool.lanes``) can run passes side by side on the one model.
    """

    def __init__(self, net: Any) -> None:
        convs = check_structure(net)
        self._net = net
        # .mask: (batch, 1, frames) bool, True = padded frame; set only during a padded pass of this thread
        self._local = threading.local()
        self._count_lock = threading.Lock()
        self.forward_passes = 0
        net.modality_encoders["AUDIO"].register_forward_pre_hook(self._count)
        for conv in convs:
            conv.register_forward_pre_hook(self._zero_padded_frames)

    def __getstate__(self) -> dict[str, Any]:
        """Copies (``copy.deepcopy`` of a model, whose hooks hold this object) get a lock and masks of their own."""
        state = dict(self.__dict__)
        del state["_local"], state["_count_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._count_lock = threading.Lock()

    @property
    def _pad(self) -> Any:
        return getattr(self._local, "mask", None)

    @_pad.setter
    def _pad(self, mask: Any) -> None:
        self._local.mask = mask

    def _count(self, _module: Any, _args: Any) -> None:
        with self._count_lock:
            self.forward_passes += 1

    def _zero_padded_frames(self, _conv: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        pad = self._pad
        if pad is None:
            return None
        (x,) = args  # (batch, channels, frames)
        if x.shape[0] != pad.shape[0] or x.shape[-1] != pad.shape[-1]:
            raise RuntimeError(f"positional conv input {tuple(x.shape)} does not match the padding mask "
                               f"{tuple(pad.shape)}")
        return (x.masked_fill(pad, 0.0),)

    def features(self, windows: list[np.ndarray]) -> list[Any]:
        """One forward pass over ``windows`` (float32 mono 16 kHz, each at least the receptive field): the
        frame features of each, a (frames, dim) float32 tensor on the model's device."""
        import torch
        import torch.nn.functional as F

        net = self._net
        device = next(net.parameters()).device
        lengths = [int(w.size) for w in windows]
        frames = [frames_for(n) for n in lengths]
        if min(frames) < 1:
            raise ValueError("every window needs at least one frame")
        source = torch.zeros(len(windows), max(lengths), dtype=torch.float32, device=device)
        for i, w in enumerate(windows):
            x = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)).to(device)
            if net.cfg.normalize:
                x = F.layer_norm(x, x.shape)  # as Emotion2vec.inference does, per input, before padding
            source[i, : x.numel()] = x
        padded = len(set(lengths)) > 1
        sample_pad = None
        if padded:
            positions = torch.arange(max(lengths), device=device)
            sample_pad = positions[None, :] >= torch.tensor(lengths, device=device)[:, None]
            frame_pos = torch.arange(max(frames), device=device)
            self._pad = (frame_pos[None, :] >= torch.tensor(frames, device=device)[:, None])[:, None, :]
        try:
            with torch.no_grad():
                out = net.extract_features(source, padding_mask=sample_pad)
        finally:
            self._pad = None
        x = out["x"]
        if x.shape[1] != max(frames):
            raise RuntimeError(f"model returned {x.shape[1]} frames, expected {max(frames)}")
        if padded:
            real = (~out["padding_mask"]).sum(dim=1).tolist()
            if real != frames:
                raise RuntimeError(f"model's frame padding mask {real} differs from the frame counts {frames}")
        return [x[i, :n] for i, n in enumerate(frames)]
