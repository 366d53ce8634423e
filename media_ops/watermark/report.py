"""The robustness report: a watermarked file put through a named, versioned battery of attacks, each copy read
back by the product's own detection (alignment search included), so a customer sees what their watermark
survives before someone else finds out.

Per attack the report says whether the watermark was detected, how much of the audio reads as watermarked
(``probability``, as ``detect`` computes it), whether the expected message came back exactly, and the bit
accuracy against it; with the original file it also says what the watermark costs in quality (SNR, segmental
SNR). The attacks come from ``media_ops.watermark.attacks`` (``BATTERY``, ``BATTERY_VERSION``); this module
only runs them and measures.

Decisions:

* **Reproducible**: each attack gets its own random generator, seeded from the battery version and the
  attack's name, so the same file gives the same report for a given battery version and model.
* **What is attacked**: the file's mono mix at its own sample rate (detection reads the mono mix anyway, and
  an attack such as "resample to 8 kHz" means something only at the file's real rate).
* **The expected message**: the one the caller names, else the one detection decodes from the file as
  uploaded (the reference). A file in which nothing is detected and no message was named cannot be reported
  on: ``NO_WATERMARK``, a property of the input.
* **Cost**: the attacked copies go through ``detect_batch`` ``DETECT_GROUP`` at a time (their full passes
  batched, each alignment search on its own), so memory stays bounded for a 60 s input and progress can be
  reported between groups.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from media_ops import audio
from media_ops.errors import NO_WATERMARK, MediaError
from media_ops.watermark.detection import detect_batch
from media_ops.watermark.embedding import snr_db
from media_ops.watermark.messages import MESSAGE_THRESHOLD, NBITS, format_message
from media_ops.watermark.search import SEARCH, AlignmentSearch

logger = logging.getLogger(__name__)

DETECT_GROUP = 8  # attacked copies per detect_batch call

QUALITY_MAX_LAG_SECONDS = 0.1  # how far the original is searched for against the watermarked file (codec delay)

SEGMENT_SECONDS = 0.02  # segmental SNR frames
SEGMENT_SNR_RANGE = (-10.0, 35.0)  # the usual clamp: silent frames neither reward nor punish without bound

ProgressFn = Callable[[int, str], None]


def attack_seed(version: str, name: str) -> int:
    """The seed of one attack's random generator: stable across processes and Python versions."""
    return int.from_bytes(hashlib.sha256(f"{version}/{name}".encode()).digest()[:8], "big")


def describe_attack(attack: Any) -> dict[str, str]:
    """How a report names one battery entry (``attacks.describe()`` has its parameters too)."""
    return {"name": str(attack.name), "family": str(attack.family), "description": str(attack.description)}


def apply_attack(attack: Any, signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Run one attack on mono ``signal`` at ``sample_rate`` (``Attack(signal, sr, rng)``: same rank and rate;
    the length only changes for trims, crops, speed and inserted silence). Not clipped: the benchmark reads
    the battery's output as it is, and a report must give the same figures for the same file."""
    out = np.asarray(attack(signal.copy(), sample_rate, rng), dtype=np.float32)
    return np.nan_to_num(out if out.ndim == 1 else audio.to_mono(out)).astype(np.float32)


def bit_accuracy(bit_probabilities: Sequence[float] | None, expected: Sequence[int]) -> float | None:
    """Share of the expected bits read right (a bit is read as 1 above ``MESSAGE_THRESHOLD``)."""
    if not bit_probabilities or len(bit_probabilities) != len(expected):
        return None
    right = sum(int(p > MESSAGE_THRESHOLD) == int(b) for p, b in zip(bit_probabilities, expected, strict=True))
    return round(right / len(expected), 4)


def _reading(result: dict[str, Any], expected: Sequence[int]) -> dict[str, Any]:
    """The report's view of one detection result against the expected message."""
    message = result.get("message") if result.get("detected") else None
    return {
        "detected": bool(result.get("detected")),
        "probability": float(result.get("probability") or 0.0),
        "confidence": result.get("confidence"),
        "message": message,
        "message_survived": message is not None and message == format_message(list(expected)),
        "bit_accuracy": bit_accuracy(result.get("bit_probabilities"), expected),
        "regions": len(result.get("segments") or []),
        "alignment": result.get("alignment"),
    }


def _aligned_pair(original: np.ndarray, marked: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``original`` and ``marked`` cut to their overlap at the lag (within ``max_lag``) that lines them up best:
    a lossy encoder adds a delay, and an SNR across a delay measures the delay, not the watermark."""
    n = min(len(original), len(marked))
    if n == 0:
        return original[:0], marked[:0], 0
    a = original[:n].astype(np.float64)
    b = marked[:n].astype(np.float64)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    lag = int(lags[int(np.argmax(corr[lags]))])  # marked[i + lag] ~ original[i]
    if lag >= 0:
        a, b = original[: len(marked) - lag], marked[lag:]
    else:
        a, b = original[-lag:], marked[: len(original) + lag]
    m = min(len(a), len(b))
    return a[:m], b[:m], lag


def segmental_snr_db(reference: np.ndarray, test: np.ndarray, sample_rate: int) -> float | None:
    """Mean SNR over 20 ms frames, each clamped to [-10, 35] dB (frames of near-silence left out): a simple
    proxy of how audible a difference is, closer to hearing than the global SNR, which loud passages dominate."""
    frame = max(1, int(SEGMENT_SECONDS * sample_rate))
    n = min(len(reference), len(test)) // frame * frame
    if n == 0:
        return None
    ref = reference[:n].astype(np.float64).reshape(-1, frame)
    err = (test[:n].astype(np.float64) - reference[:n].astype(np.float64)).reshape(-1, frame)
    p_ref = np.mean(ref**2, axis=1)
    keep = p_ref > 1e-8  # about -80 dBFS: silence says nothing about audibility
    if not keep.any():
        return None
    p_err = np.maximum(np.mean(err[keep] ** 2, axis=1), 1e-20)
    lo, hi = SEGMENT_SNR_RANGE
    return round(float(np.mean(np.clip(10 * np.log10(p_ref[keep] / p_err), lo, hi))), 2)


def quality(original: np.ndarray, original_rate: int, marked: np.ndarray, marked_rate: int) -> dict[str, Any]:
    """What the watermark costs: the watermarked file against its original, both as mono mixes at the
    watermarked file's rate, lined up first (a codec's delay). ``snr_db`` is the signal-to-watermark ratio
    (higher is cleaner; AudioSeal's own target is about 20 dB and more)."""
    ref = audio.to_mono(original)
    if original_rate != marked_rate:
        ref = audio.resample(ref, original_rate, marked_rate)
    test = audio.to_mono(marked)
    a, b, lag = _aligned_pair(ref, test, int(QUALITY_MAX_LAG_SECONDS * marked_rate))
    if len(a) == 0:
        raise MediaError("EMPTY_FILE", "The original has no samples.", {"field": "original"})
    snr = snr_db(a, b)
    return {
        "snr_db": round(float(snr), 2) if np.isfinite(snr) else None,  # None: identical files (no watermark at all)
        "segmental_snr_db": segmental_snr_db(a, b, marked_rate),
        "offset_samples": lag,
        "compared_seconds": round(len(a) / marked_rate, 3),
    }


def robustness_report(
    models: Any,
    samples: np.ndarray,
    sample_rate: int,
    *,
    battery: Sequence[Any],
    battery_version: str,
    expected_bits: list[int] | None = None,
    original: tuple[np.ndarray, int] | None = None,
    search: AlignmentSearch | None = SEARCH,
    max_batch: int = 1,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Run ``battery`` on watermarked ``samples`` (channels, n) and read every copy back; the report's result.

    Raises ``MediaError(NO_WATERMARK)`` when nothing is detected in the file as given and no expected message
    was named (there is nothing whose survival could be measured).
    """
    report = progress or (lambda percent, message: None)
    started = time.perf_counter()
    report(15, "Reading the file as uploaded")
    reference = detect_batch(models, [(samples, sample_rate)], max_batch=max_batch, search=search)[0]
    if expected_bits is None:
        if not reference.get("detected") or not reference.get("bits"):
            raise MediaError(
                NO_WATERMARK,
                "No watermark was found in this file, so there is nothing to test: upload a watermarked file "
                "(the output of an embed job), or name the message it should carry.",
                {"probability": reference.get("probability")},
            )
        expected_bits, source = [int(b) for b in reference["bits"]], "detected"
    else:
        source = "given"
    if len(expected_bits) != NBITS:
        raise ValueError(f"expected {NBITS} bits")

    # Before the attacks: an original that cannot be compared fails the job before the expensive part.
    quality_result = quality(original[0], original[1], samples, sample_rate) if original is not None else None
    mono = audio.to_mono(samples)
    names = [describe_attack(a) for a in battery]
    rows: list[dict[str, Any]] = []
    for first in range(0, len(battery), DETECT_GROUP):
        group = battery[first : first + DETECT_GROUP]
        done = 20 + int(70 * first / max(1, len(battery)))
        report(done, f"Attacks {first + 1}–{first + len(group)} of {len(battery)}")
        attacked: list[np.ndarray | None] = []
        failures: dict[int, str] = {}
        for i, attack in enumerate(group):
            rng = np.random.default_rng(attack_seed(battery_version, attack.name))
            try:
                attacked.append(apply_attack(attack, mono, sample_rate, rng))
            except Exception as exc:  # noqa: BLE001 - one broken attack is reported, not the whole report lost
                logger.exception("attack %s failed", attack.name)
                failures[i] = f"{type(exc).__name__}: {exc}"[:200]
                attacked.append(None)
        live = [(x[None, :], sample_rate) for x in attacked if x is not None and len(x) > 0]
        readings = iter(detect_batch(models, live, max_batch=max_batch, search=search) if live else [])
        for i, copy in enumerate(attacked):
            row: dict[str, Any] = dict(names[first + i])
            if copy is None or len(copy) == 0:
                row.update(_reading({}, expected_bits), error=failures.get(i, "the attack left no audio"))
            else:
                row.update(_reading(next(readings), expected_bits), error=None)
            rows.append(row)

    detected = sum(r["detected"] for r in rows)
    survived = sum(r["message_survived"] for r in rows)
    count = len(rows)
    return {
        "battery": {"version": battery_version, "attacks": count},
        "expected_message": format_message(expected_bits),
        "message_source": source,
        "reference": _reading(reference, expected_bits),
        "quality": quality_result,
        "summary": {
            "attacks": count,
            "detected": detected,
            "message_survived": survived,
            "detection_rate": round(detected / count, 4) if count else None,
            "message_rate": round(survived / count, 4) if count else None,
            "text": f"Watermark detected after {detected} of {count} attacks, message exact after {survived}",
        },
        "attacks": rows,
        "duration_seconds": round(samples.shape[-1] / sample_rate, 3),
        "compute_seconds": round(time.perf_counter() - started, 3),
    }
