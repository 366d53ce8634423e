"""Embedding: the watermark is computed on the 16 kHz mono mix, brought back to the input's rate with an
anti-aliased resampler and added to every channel, so the output keeps the input's rate, channels and length.
"""

from __future__ import annotations

import logging

import numpy as np

from media_ops import audio
from media_ops.watermark.messages import MODEL_RATE, NBITS
from media_ops.watermark.models import WatermarkModels

logger = logging.getLogger(__name__)


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
