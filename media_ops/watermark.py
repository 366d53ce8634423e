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
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from media_ops import audio
from media_ops.errors import MediaError

os.environ.setdefault("NO_TORCH_COMPILE", "1")  # audioseal otherwise compiles lazily: slow, and no faster

MODEL_RATE = 16_000
NBITS = 16
HOP_SECONDS = 0.01  # localisation curve: 100 values per second
DETECTION_THRESHOLD = 0.5
MESSAGE_THRESHOLD = 0.5
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

    @classmethod
    def load(cls, generator_source: str, detector_source: str, *, device: str = "cpu") -> WatermarkModels:
        import torch
        from audioseal import AudioSeal

        for source in (generator_source, detector_source):
            looks_like_path = os.sep in source or source.endswith((".pth", ".pt"))
            if looks_like_path and not Path(source).is_file():
                raise FileNotFoundError(f"watermark checkpoint not found: {source}")
        generator = AudioSeal.load_generator(generator_source, device=torch.device(device)).eval()
        detector = AudioSeal.load_detector(detector_source, device=torch.device(device)).eval()
        gen_name, gen_version = _describe(generator_source)
        det_name, det_version = _describe(detector_source)
        return cls(generator, detector, gen_name, gen_version, det_name, det_version, device)

    def warm(self) -> None:
        """One forward pass of each network so the first job doesn't pay for lazy initialisation."""
        silence = np.zeros(MODEL_RATE, dtype=np.float32)
        self.watermark_16k(silence, [0] * NBITS)
        self.detect_16k(silence)

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
        import torch

        message = torch.tensor([bits], dtype=torch.int64, device=self.device)
        out = np.zeros_like(x, dtype=np.float32)
        with torch.inference_mode():
            for c0, s, e, c1 in self._windows(len(x)):
                chunk = torch.from_numpy(np.ascontiguousarray(x[c0:c1], dtype=np.float32)).to(self.device)
                wm = self.generator.get_watermark(chunk[None, None, :], sample_rate=MODEL_RATE, message=message)
                out[s:e] = wm[0, 0, s - c0 : e - c0].float().cpu().numpy()
        return out

    def detect_16k(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample watermark probability and per-bit probability (of a 1) for 16 kHz mono ``x``.

        Same arithmetic as ``AudioSealDetector.forward``/``detect_watermark`` (softmax on the two detection
        channels, sigmoid of the time-mean of the bit logits), with the time-mean taken over the whole
        input across windows.
        """
        import torch

        frame_probs = np.zeros(len(x), dtype=np.float32)
        bit_logit_sum = np.zeros(NBITS, dtype=np.float64)
        det = self.detector
        with torch.inference_mode():
            for c0, s, e, c1 in self._windows(len(x)):
                chunk = torch.from_numpy(np.ascontiguousarray(x[c0:c1], dtype=np.float32)).to(self.device)
                chunk = chunk[None, None, :]
                if det.normalizer is not None:
                    chunk = det.normalizer.loudness_normalization(chunk)
                raw = det.detector(chunk)  # (1, 2 + nbits, frames)
                if raw.shape[-1] != chunk.shape[-1]:  # pragma: no cover - AudioSeal keeps the time axis
                    raise MediaError("PROCESSING_FAILED", "detector changed the time axis")
                probs = torch.softmax(raw[:, :2, :], dim=1)[0, 1, s - c0 : e - c0]
                frame_probs[s:e] = probs.float().cpu().numpy()
                bit_logit_sum += raw[0, 2:, s - c0 : e - c0].double().sum(dim=-1).cpu().numpy()
        bit_probs = 1.0 / (1.0 + np.exp(-bit_logit_sum / max(1, len(x))))
        return frame_probs, bit_probs.astype(np.float32)


# --- the engine ---------------------------------------------------------------------------------------------


def embed(models: WatermarkModels, samples: np.ndarray, sample_rate: int, bits: list[int]) -> np.ndarray:
    """Watermark ``samples`` (channels, n) at ``sample_rate``; returns the same shape, rate and length."""
    if len(bits) != NBITS:
        raise ValueError(f"expected {NBITS} bits")
    mono16 = audio.resample(audio.to_mono(samples), sample_rate, MODEL_RATE)
    wm16 = models.watermark_16k(mono16, bits)
    wm = audio.resample(wm16, MODEL_RATE, sample_rate)
    n = samples.shape[-1]
    wm = wm[:n] if len(wm) >= n else np.pad(wm, (0, n - len(wm)))
    out = samples.astype(np.float32) + wm[None, :].astype(np.float32)
    return np.clip(out, -1.0, 1.0)


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
    mono16 = audio.resample(audio.to_mono(samples), sample_rate, MODEL_RATE)
    if len(mono16) == 0:
        raise MediaError("EMPTY_FILE", "The audio has no samples.")
    frame_probs, bit_probs = models.detect_16k(mono16)
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
