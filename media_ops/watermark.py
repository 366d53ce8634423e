"""AudioSeal watermark embedding and detection.

The models work on 16 kHz mono. Embedding keeps the input's sample rate, channels and length: the
watermark is computed on the 16 kHz mono mix, brought back to the original rate with an anti-aliased
resampler and added to every channel. Long audio is processed in windows with context on both sides
(only each window's centre is kept), so cost per second stays flat and memory stays bounded, and a
watermark that spans a window boundary is still detected.

Messages: the API speaks 4 hex digits; the model speaks 16 bits. Bit ``i`` is bit ``15 - i`` of the
integer (most significant first), so "8000" is ``[1, 0, …, 0]``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from media_ops import audio
from media_ops.errors import MediaError

logger = logging.getLogger(__name__)

os.environ.setdefault("NO_TORCH_COMPILE", "1")  # audioseal otherwise compiles lazily: slow, and no faster

MODEL_RATE = 16_000
NBITS = 16
HOP_SECONDS = 0.01  # localisation curve: 100 values per second
DETECTION_THRESHOLD = 0.5
MESSAGE_THRESHOLD = 0.5
# Zero padding changes a SEANet output near the padded end: every conv re-pads its own input, so the padding
# reaches back one receptive field (measured: the last 2,431 samples, 0.15 s, changed by up to 27 % of the
# watermark's amplitude). A window with at least this much real audio after its kept centre can be padded
# without changing that centre at all; a window that ends the audio is never padded (batched only with
# windows of exactly its length).
PAD_SAFE_SECONDS = 0.5
PRECISIONS = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}
_HEX = re.compile(r"^[0-9a-fA-F]{4}$")


# --- messages -----------------------------------------------------------------------------------------------


def parse_message(text: str) -> list[int]:
    """4 hex digits -> 16 bits, most significant first. Raises ValueError on anything else."""
    if not isinstance(text, str) or not _HEX.match(text.strip()):
        raise ValueError("message must be exactly 4 hexadecimal digits (16 bits), e.g. 1A2B")
    value = int(text.strip(), 16)
    return [(value >> (NBITS - 1 - i)) & 1 for i in range(NBITS)]


def format_message(bits: list[int] | np.ndarray) -> str:
    value = 0
    for bit in bits:
        value = (value << 1) | (1 if int(bit) else 0)
    return f"{value:04X}"


def random_message() -> str:
    return f"{int.from_bytes(os.urandom(2), 'big'):04X}"


# --- models -------------------------------------------------------------------------------------------------


def _describe(source: str) -> tuple[str, str]:
    """(name, version) of a model source: a checkpoint path (hashed) or an audioseal card name."""
    path = Path(source)
    if path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        card = path.parent / "card.json"
        family = path.parent.name
        if card.is_file():
            try:
                family = json.loads(card.read_text()).get("name", family)
            except (OSError, ValueError):
                pass
        return f"{family}/{path.stem}", digest
    return source, source


@dataclass
class WatermarkModels:
    """A loaded generator + detector pair, held by the worker's model pool."""

    generator: Any
    detector: Any
    generator_name: str
    generator_version: str
    detector_name: str
    detector_version: str
    device: str
    window_seconds: float = 10.0
    context_seconds: float = 1.0
    dtype: Any = None  # torch dtype of the weights and inputs on CUDA (fp16/bf16); None = float32

    @classmethod
    def load(
        cls, generator_source: str, detector_source: str, *, device: str = "cpu", precision: str = "fp32"
    ) -> WatermarkModels:
        """Load both checkpoints. ``precision`` (fp32/fp16/bf16) applies on CUDA only; on CPU it is ignored
        (reduced precision is slower there and not measured equal), with a warning."""
        import torch
        from audioseal import AudioSeal

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
        dtype = None
        if PRECISIONS[precision] is not None:
            if str(device).startswith("cuda"):
                dtype = getattr(torch, PRECISIONS[precision])
            else:
                logger.warning("watermark precision %s ignored on %s: fp32", precision, device)

        for source in (generator_source, detector_source):
            looks_like_path = os.sep in source or source.endswith((".pth", ".pt"))
            if looks_like_path and not Path(source).is_file():
                raise FileNotFoundError(f"watermark checkpoint not found: {source}")
        generator = AudioSeal.load_generator(generator_source, device=torch.device(device)).eval()
        detector = AudioSeal.load_detector(detector_source, device=torch.device(device)).eval()
        if dtype is not None:
            generator, detector = generator.to(dtype), detector.to(dtype)
        gen_name, gen_version = _describe(generator_source)
        det_name, det_version = _describe(detector_source)
        return cls(generator, detector, gen_name, gen_version, det_name, det_version, device, dtype=dtype)

    def warm(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Forward passes so the first job doesn't pay for lazy initialisation: 1 s of silence at each batch
        size, and on CUDA also a full window (the shape long inputs are cut into), so the allocator and the
        conv algorithm choice are settled for the shapes batching will use."""
        shapes = [(b, MODEL_RATE) for b in sorted(set(batch_sizes) | {1})]
        if str(self.device).startswith("cuda"):
            window = int((self.window_seconds + 2 * self.context_seconds) * MODEL_RATE)
            shapes += [(b, window) for b in sorted(set(batch_sizes) | {1})]
        for batch, n in shapes:
            silence = [np.zeros(n, dtype=np.float32)] * batch
            self.watermark_16k_batch(silence, [[0] * NBITS] * batch, max_batch=batch)
            self.detect_16k_batch(silence, max_batch=batch)

    # -- 16 kHz mono primitives, windowed --

    def _windows(self, n: int) -> list[tuple[int, int, int, int]]:
        """(ctx_start, start, end, ctx_end) windows covering [0, n); one window when short enough."""
        win = int(self.window_seconds * MODEL_RATE)
        ctx = int(self.context_seconds * MODEL_RATE)
        if n <= win + 2 * ctx:
            return [(0, 0, n, n)]
        out = []
        for start in range(0, n, win):
            end = min(n, start + win)
            out.append((max(0, start - ctx), start, end, min(n, end + ctx)))
        return out

    def watermark_16k(self, x: np.ndarray, bits: list[int]) -> np.ndarray:
        """The watermark (not the watermarked audio) for 16 kHz mono ``x``."""
        return self.watermark_16k_batch([x], [bits], max_batch=1)[0]

    def detect_16k(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample watermark probability and per-bit probability (of a 1) for 16 kHz mono ``x``.

        Same arithmetic as ``AudioSealDetector.forward``/``detect_watermark`` (softmax on the two detection
        channels, sigmoid of the time-mean of the bit logits), with the time-mean taken over the whole
        input across windows.
        """
        return self.detect_16k_batch([x], max_batch=1)[0]

    # -- batching: several inputs (and windows) in one forward pass, results equal to one at a time --

    def _batches(self, lengths: list[int], max_batch: int) -> list[list[_Chunk]]:
        """Cut every input into windows and group the windows into batches of at most ``max_batch``.

        Windows with enough real audio after their kept centre (``PAD_SAFE_SECONDS``) are padded to the
        longest in their batch; the others (those that end an input, and every short input) only share a
        batch with windows of exactly their length. Either way each window's kept centre is what it would be
        alone (up to float rounding of batched kernels).
        """
        safe = int(PAD_SAFE_SECONDS * MODEL_RATE)
        paddable: list[_Chunk] = []
        exact: dict[int, list[_Chunk]] = {}
        for item, n in enumerate(lengths):
            for c0, s, e, c1 in self._windows(n):
                chunk = _Chunk(item, c0, s, e, c1)
                if max_batch > 1 and c1 - e >= safe:
                    paddable.append(chunk)
                else:
                    exact.setdefault(chunk.length, []).append(chunk)
        paddable.sort(key=lambda c: -c.length)
        groups = [paddable, *exact.values()]
        return [g[i : i + max_batch] for g in groups for i in range(0, len(g), max(1, max_batch))]

    def _stack(self, xs: list[np.ndarray], batch: list[_Chunk]) -> Any:
        """The batch's windows as one (batch, 1, longest) tensor, zero-padded on the right."""
        import torch

        longest = max(c.length for c in batch)
        out = np.zeros((len(batch), 1, longest), dtype=np.float32)
        for row, c in enumerate(batch):
            out[row, 0, : c.length] = xs[c.item][c.c0 : c.c1]
        tensor = torch.from_numpy(out).to(self.device)
        return tensor if self.dtype is None else tensor.to(self.dtype)

    def watermark_16k_batch(
        self, xs: list[np.ndarray], bits: list[list[int]], *, max_batch: int = 8
    ) -> list[np.ndarray]:
        """``watermark_16k`` for several inputs (any lengths) at once, ``max_batch`` windows per forward."""
        import torch

        if len(bits) != len(xs):
            raise ValueError("one message per input")
        outs = [np.zeros(len(x), dtype=np.float32) for x in xs]
        with torch.inference_mode():
            for batch in self._batches([len(x) for x in xs], max_batch):
                chunk = self._stack(xs, batch)
                message = torch.tensor([bits[c.item] for c in batch], dtype=torch.int64, device=self.device)
                wm = self.generator.get_watermark(chunk, sample_rate=MODEL_RATE, message=message)
                wm = wm.float().cpu().numpy()
                for row, c in enumerate(batch):
                    outs[c.item][c.s : c.e] = wm[row, 0, c.s - c.c0 : c.e - c.c0]
        return outs

    def detect_16k_batch(
        self, xs: list[np.ndarray], *, max_batch: int = 8
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``detect_16k`` for several inputs (any lengths) at once, ``max_batch`` windows per forward."""
        import torch

        frame_probs = [np.zeros(len(x), dtype=np.float32) for x in xs]
        bit_sums = [np.zeros(NBITS, dtype=np.float64) for _ in xs]
        det = self.detector
        with torch.inference_mode():
            for batch in self._batches([len(x) for x in xs], max_batch):
                chunk = self._stack(xs, batch)
                if det.normalizer is not None:
                    chunk = det.normalizer.loudness_normalization(chunk)
                raw = det.detector(chunk)  # (batch, 2 + nbits, samples)
                if raw.shape[-1] != chunk.shape[-1]:  # pragma: no cover - AudioSeal keeps the time axis
                    raise MediaError("PROCESSING_FAILED", "detector changed the time axis")
                probs = torch.softmax(raw[:, :2, :].float(), dim=1)[:, 1, :].cpu().numpy()
                bits = raw[:, 2:, :].double().cpu().numpy()
                for row, c in enumerate(batch):
                    kept = slice(c.s - c.c0, c.e - c.c0)
                    frame_probs[c.item][c.s : c.e] = probs[row, kept]
                    bit_sums[c.item] += bits[row, :, kept].sum(axis=-1)
        results = []
        for x, probs, sums in zip(xs, frame_probs, bit_sums, strict=True):
            bit_probs = 1.0 / (1.0 + np.exp(-sums / max(1, len(x))))
            results.append((probs, bit_probs.astype(np.float32)))
        return results


@dataclass(frozen=True)
class _Chunk:
    """One window of input ``item``: samples [c0, c1) go through the model, [s, e) of the output is kept."""

    item: int
    c0: int
    s: int
    e: int
    c1: int

    @property
    def length(self) -> int:
        return self.c1 - self.c0


# --- the engine ---------------------------------------------------------------------------------------------


def embed(models: WatermarkModels, samples: np.ndarray, sample_rate: int, bits: list[int]) -> np.ndarray:
    """Watermark ``samples`` (channels, n) at ``sample_rate``; returns the same shape, rate and length."""
    return embed_batch(models, [(samples, sample_rate, bits)], max_batch=1)[0]


def embed_batch(
    models: WatermarkModels, items: list[tuple[np.ndarray, int, list[int]]], *, max_batch: int = 8
) -> list[np.ndarray]:
    """``embed`` for several (samples, sample_rate, bits) inputs, their windows run ``max_batch`` at a time.

    Each result equals ``embed`` of that input alone, within float tolerance (``media_ops/tests``).
    """
    for _, _, bits in items:
        if len(bits) != NBITS:
            raise ValueError(f"expected {NBITS} bits")
    mono16 = [audio.resample(audio.to_mono(samples), rate, MODEL_RATE) for samples, rate, _ in items]
    wm16 = models.watermark_16k_batch(mono16, [bits for _, _, bits in items], max_batch=max_batch)
    out = []
    for (samples, rate, _), watermark in zip(items, wm16, strict=True):
        wm = audio.resample(watermark, MODEL_RATE, rate)
        n = samples.shape[-1]
        wm = wm[:n] if len(wm) >= n else np.pad(wm, (0, n - len(wm)))
        out.append(np.clip(samples.astype(np.float32) + wm[None, :].astype(np.float32), -1.0, 1.0))
    return out


def snr_db(signal: np.ndarray, watermarked: np.ndarray) -> float:
    noise = watermarked.astype(np.float64) - signal.astype(np.float64)
    p_signal = float(np.mean(signal.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise**2))
    if p_noise == 0:
        return float("inf")
    return 10.0 * np.log10(max(p_signal, 1e-20) / p_noise)


def confidence_label(probability: float) -> str:
    """How sure the detector is of its decision (either way), for people who won't read a probability."""
    margin = abs(probability - 0.5)
    if margin >= 0.35:
        return "high"
    if margin >= 0.15:
        return "medium"
    return "low"


def detect(models: WatermarkModels, samples: np.ndarray, sample_rate: int) -> dict[str, Any]:
    """Detect a watermark in ``samples`` (channels, n); returns the API's detection result."""
    return detect_batch(models, [(samples, sample_rate)], max_batch=1)[0]


def detect_batch(
    models: WatermarkModels, items: list[tuple[np.ndarray, int]], *, max_batch: int = 8
) -> list[dict[str, Any]]:
    """``detect`` for several (samples, sample_rate) inputs, their windows run ``max_batch`` at a time."""
    mono16 = [audio.resample(audio.to_mono(samples), rate, MODEL_RATE) for samples, rate in items]
    if any(len(x) == 0 for x in mono16):
        raise MediaError("EMPTY_FILE", "The audio has no samples.")
    return [
        _detection_result(frame_probs, bit_probs)
        for frame_probs, bit_probs in models.detect_16k_batch(mono16, max_batch=max_batch)
    ]


def _detection_result(frame_probs: np.ndarray, bit_probs: np.ndarray) -> dict[str, Any]:
    """The API's detection result from per-sample probabilities and per-bit probabilities."""
    probability = float(np.count_nonzero(frame_probs > DETECTION_THRESHOLD) / len(frame_probs))
    bits = [int(p > MESSAGE_THRESHOLD) for p in bit_probs]
    detected = probability > 0.5
    hop = int(MODEL_RATE * HOP_SECONDS)
    n_hops = int(np.ceil(len(frame_probs) / hop))
    padded = np.pad(frame_probs, (0, n_hops * hop - len(frame_probs)), mode="edge")
    curve = padded.reshape(n_hops, hop).mean(axis=1)
    return {
        "detected": detected,
        "probability": round(probability, 4),
        "confidence": confidence_label(probability),
        "message": format_message(bits) if detected else None,
        "bits": bits if detected else None,
        "bit_probabilities": [round(float(p), 4) for p in bit_probs],
        "localization": {
            "hop_seconds": HOP_SECONDS,
            "values": [round(float(v), 3) for v in curve],
        },
        "watermarked_seconds": round(float(np.count_nonzero(frame_probs > DETECTION_THRESHOLD)) / MODEL_RATE, 3),
    }
