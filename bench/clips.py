"""Benchmark inputs: speech clips of fixed lengths, all different, made from the committed fixtures.

Every clip differs (a random start in the looped speech, a random gain and a faint dither), so no clip is a
byte-for-byte repeat of another: the result cache must not turn the benchmark into a cache benchmark.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16_000
FIXTURES = Path(__file__).resolve().parent.parent / "media_ops" / "tests" / "fixtures"


def speech_base() -> np.ndarray:
    """The two 16 kHz mono speech fixtures back to back (about 7.4 s), float32."""
    parts = []
    for name in ("speech_16k_mono.wav", "speech2_16k_mono.wav"):
        data, rate = sf.read(FIXTURES / name, dtype="float32", always_2d=True)
        assert rate == RATE, (name, rate)
        parts.append(data.mean(axis=1))
    return np.concatenate(parts)


def make_clip(seconds: float, seed: int, base: np.ndarray | None = None) -> np.ndarray:
    """``seconds`` of looped speech from a random offset, random gain, faint dither; float32 in [-1, 1]."""
    base = speech_base() if base is None else base
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    start = int(rng.integers(0, len(base)))
    reps = (start + n) // len(base) + 1
    clip = np.tile(base, reps)[start : start + n]
    clip = clip * float(rng.uniform(0.5, 1.0)) + rng.standard_normal(n).astype(np.float32) * 1e-4
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


def write_clips(out_dir: Path, counts: dict[float, int], seed: int = 1) -> dict[float, list[Path]]:
    """Write ``counts[seconds]`` WAV clips (16-bit PCM, 16 kHz mono) of each length; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = speech_base()
    paths: dict[float, list[Path]] = {}
    for seconds, count in counts.items():
        paths[seconds] = []
        for i in range(count):
            path = out_dir / f"clip_{seconds:g}s_{i:03d}.wav"
            sf.write(path, make_clip(seconds, seed * 100_003 + int(seconds * 1000) + i, base), RATE,
                     subtype="PCM_16")
            paths[seconds].append(path)
    return paths


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def small_wav(seconds: float, seed: int, base: np.ndarray | None = None) -> bytes:
    """A small distinct WAV file in memory (the API-latency and many-small-jobs inputs)."""
    return wav_bytes(make_clip(seconds, seed, base))


def read_mono16(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == RATE, (path, rate)
    return data.mean(axis=1)
