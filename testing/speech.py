"""Speech for the watermark engine tests: the 16 kHz fixtures, looped to any length, and seeded messages."""

from __future__ import annotations

import numpy as np

from media_ops import audio, watermark
from media_ops.watermark import MODEL_RATE
from testing.uploads import FIXTURES


def fixture_speech(name: str = "speech_16k_mono.wav") -> np.ndarray:
    """A 16 kHz mono fixture as float32 samples."""
    samples, rate = audio.decode(FIXTURES / name)
    assert rate == MODEL_RATE
    return samples[0].astype(np.float32)


def looped_speech(seconds: float, seed: int, name: str = "speech_16k_mono.wav") -> np.ndarray:
    """16 kHz mono speech of any length: the fixture looped from a seeded offset, seeded gain."""
    base = fixture_speech(name)
    rng = np.random.default_rng(seed)
    n = int(seconds * MODEL_RATE)
    start = int(rng.integers(0, len(base)))
    return (np.tile(base, n // len(base) + 2)[start : start + n] * rng.uniform(0.4, 1.0)).astype(np.float32)


def seeded_bits(seed: int) -> list[int]:
    return [int(b) for b in np.random.default_rng(seed).integers(0, 2, watermark.NBITS)]
