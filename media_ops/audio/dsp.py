"""Signal helpers the engines share: down-mixing to mono and band-limited resampling.

Why this module exists: the models (AudioSeal, emotion2vec) take mono at 16 kHz while uploads come at any
rate and channel count, and a watermark computed at 16 kHz must be added back onto the original; these two
functions are that bridge, kept apart from file I/O.
"""

from __future__ import annotations

import numpy as np
import soxr


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(samples,) float32: the mean of the channels (a 1-D input is returned as float32).

    The models (AudioSeal, emotion2vec) take mono; averaging keeps the level of correlated channels.
    """
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio.astype(np.float32, copy=False)
    if audio.ndim != 2:
        raise ValueError(f"expected (samples,) or (channels, samples), got shape {audio.shape}")
    return audio.mean(axis=0, dtype=np.float64).astype(np.float32)


def resample(audio: np.ndarray, sr_from: int, sr_to: int, *, num_samples: int | None = None) -> np.ndarray:
    """Band-limited resampling with soxr ("HQ"), for (samples,) or (channels, samples) float input.

    Anti-aliased, so content above the new Nyquist frequency is removed rather than folded back (a
    watermark detector or emotion model would otherwise see spurious tones). Returns float32 with
    ``round(n * sr_to / sr_from)`` samples, or exactly ``num_samples`` when given (zero-padded or cut at
    the end), which is what callers need to add a resampled signal back onto the original. Identity (a
    float32 copy) when the rates are equal.
    """
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2):
        raise ValueError(f"expected (samples,) or (channels, samples), got shape {audio.shape}")
    if sr_from <= 0 or sr_to <= 0:
        raise ValueError("sample rates must be positive")
    if sr_from == sr_to or audio.shape[-1] == 0:
        out = audio.astype(np.float32, copy=True)
        if sr_from != sr_to:
            out = np.zeros(audio.shape[:-1] + (0,), dtype=np.float32)
    else:
        x = audio.astype(np.float32, copy=False)
        if x.ndim == 1:
            out = soxr.resample(x, sr_from, sr_to, quality="HQ")
        else:
            out = soxr.resample(np.ascontiguousarray(x.T), sr_from, sr_to, quality="HQ").T
        out = np.ascontiguousarray(out, dtype=np.float32)
    if num_samples is not None and out.shape[-1] != num_samples:
        if out.shape[-1] > num_samples:
            out = np.ascontiguousarray(out[..., :num_samples])
        else:
            pad = [(0, 0)] * (out.ndim - 1) + [(0, num_samples - out.shape[-1])]
            out = np.pad(out, pad)
    return out
