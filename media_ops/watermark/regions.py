"""Regions: where in a file the watermark is, each region decoded from its own samples, and the JSON result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from media_ops.watermark.messages import DETECTION_THRESHOLD, HOP_SECONDS, MESSAGE_THRESHOLD, MODEL_RATE, format_message
from media_ops.watermark.models import Analysis

logger = logging.getLogger(__name__)


def confidence_label(probability: float) -> str:
    """How sure the detector is of its decision (either way), for people who won't read a probability."""
    margin = abs(probability - 0.5)
    if margin >= 0.35:
        return "high"
    if margin >= 0.15:
        return "medium"
    return "low"


# The region rule. A hop of the localisation curve (HOP_SECONDS) is marked when its mean watermark probability
# is above DETECTION_THRESHOLD; marked runs separated by gaps of at most REGION_GAP_SECONDS are joined into one
# region; regions shorter than REGION_MIN_SECONDS (in audio shorter than twice that: than half the audio) are
# dropped as islands. Each region is decoded from its own samples only.
REGION_GAP_SECONDS = 0.1


REGION_MIN_SECONDS = 0.2


@dataclass(frozen=True)
class _Alignment:
    offset: int = 0  # zero samples prepended to put the detector's grid back on the generator's
    polarity: int = 1
    speed: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"offset_samples": self.offset, "polarity": self.polarity, "speed": self.speed}


@dataclass
class _Segment:
    """A region [start, end) (samples of the analysed signal) of one analysis pass."""

    start: int
    end: int
    analysis: Analysis
    alignment: _Alignment
    probability: float = field(init=False)  # mean watermark probability over the region
    mean_logit: float = field(init=False)  # mean clipped detection logit
    bit_probs: np.ndarray = field(init=False)  # sigmoid of the region's mean bit logits
    strength: float = field(init=False)  # seconds x mean clipped logit: how the strongest region is chosen
    decoded: list[int] | None = None  # the bits after re-synthesis decided the uncertain ones (search._verify)

    def __post_init__(self) -> None:
        a, n = self.analysis, self.end - self.start
        h0, h1 = self.start // a.hop, -(-self.end // a.hop)
        self.probability = float(a.probs[self.start : self.end].mean())
        self.mean_logit = float(a.hop_logits[h0:h1].sum() / n)
        self.bit_probs = 1.0 / (1.0 + np.exp(-a.hop_bits[h0:h1].sum(axis=0) / n))
        self.strength = n / MODEL_RATE * self.mean_logit

    def seconds(self) -> tuple[float, float]:
        speed = self.alignment.speed
        return self.start / MODEL_RATE / speed, self.end / MODEL_RATE / speed

    def overlaps(self, other: _Segment) -> bool:
        (a0, a1), (b0, b1) = self.seconds(), other.seconds()
        return a0 < b1 and b0 < a1

    def to_json(self) -> dict[str, Any]:
        start, end = self.seconds()
        bits = self.decoded or [int(p > MESSAGE_THRESHOLD) for p in self.bit_probs]
        return {
            "start_seconds": round(float(start), 3),
            "end_seconds": round(float(end), 3),
            "probability": round(self.probability, 4),
            "confidence": confidence_label(self.probability),
            "message": format_message(bits),
            "bits": bits,
            "bit_probabilities": [round(float(p), 4) for p in self.bit_probs],
            "alignment": self.alignment.to_json(),
        }


def _curve(probs: np.ndarray, hop: int) -> np.ndarray:
    """Mean probability per hop (the localisation curve)."""
    n_hops = int(np.ceil(len(probs) / hop))
    padded = np.pad(probs, (0, n_hops * hop - len(probs)), mode="edge")
    return padded.reshape(n_hops, hop).mean(axis=1)


def _segments(analysis: Analysis, alignment: _Alignment) -> list[_Segment]:
    """The regions of one pass, by the region rule."""
    n = len(analysis.probs)
    if n == 0:
        return []
    marked = _curve(analysis.probs, analysis.hop) > DETECTION_THRESHOLD
    edges = np.flatnonzero(np.diff(np.concatenate([[0], marked.astype(np.int8), [0]])))
    runs: list[list[int]] = []
    gap = round(REGION_GAP_SECONDS / HOP_SECONDS)
    for h0, h1 in zip(edges[::2], edges[1::2], strict=True):
        if runs and h0 - runs[-1][1] <= gap:
            runs[-1][1] = h1
        else:
            runs.append([int(h0), int(h1)])
    min_hops = max(1, round(min(REGION_MIN_SECONDS, 0.5 * n / MODEL_RATE) / HOP_SECONDS))
    return [
        _Segment(h0 * analysis.hop, min(n, h1 * analysis.hop), analysis, alignment)
        for h0, h1 in runs
        if h1 - h0 >= min_hops
    ]


def _detection_result(y: np.ndarray, plain: Analysis, segments: list[_Segment]) -> dict[str, Any]:
    """The API's detection result: the regions, and over the whole file the localisation curve (the plain
    pass, replaced inside each region by the pass that found it) and the share of it above the threshold."""
    n = len(y)
    probs = plain.probs.copy()
    for seg in segments:
        if seg.analysis is plain:
            continue
        start, end = (min(n, round(t * MODEL_RATE)) for t in seg.seconds())
        positions = np.arange(start, end) * seg.alignment.speed
        probs[start:end] = np.interp(positions, np.arange(len(seg.analysis.probs)), seg.analysis.probs)
    above = int(np.count_nonzero(probs > DETECTION_THRESHOLD))
    probability = above / n
    strongest = max(segments, key=lambda s: s.strength) if segments else None
    if strongest is not None:
        best = strongest.to_json()
        bits, bit_probs, confidence = best["bits"], best["bit_probabilities"], best["confidence"]
        alignment = best["alignment"]
        count = len(segments)
        summary = f"Watermark found in {count} region{'s' if count != 1 else ''}"
    else:
        whole = 1.0 / (1.0 + np.exp(-plain.hop_bits.sum(axis=0) / n))
        bits, bit_probs = None, [round(float(p), 4) for p in whole]
        confidence, alignment, summary = confidence_label(probability), _Alignment().to_json(), "No watermark found"
    return {
        "detected": strongest is not None,
        "summary": summary,
        "probability": round(probability, 4),
        "confidence": confidence,
        "message": format_message(bits) if bits is not None else None,
        "bits": bits,
        "bit_probabilities": bit_probs,
        "segments": [seg.to_json() for seg in segments],
        "alignment": alignment,
        "localization": {
            "hop_seconds": HOP_SECONDS,
            "values": [round(float(v), 3) for v in _curve(probs, int(MODEL_RATE * HOP_SECONDS))],
        },
        "watermarked_seconds": round(above / MODEL_RATE, 3),
    }
