"""Cutting long inputs into overlapping windows on the model's frame grid.

Why this module exists: long inputs are analysed in overlapping windows (attention is quadratic in length;
see ``analysis``), and the windows must start on the model's 20 ms frame grid so that their frames line up
with the frames the model would produce for the whole input in one pass. The frame-grid constants of
emotion2vec's feature encoder and the window planning live here, apart from the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SAMPLE_RATE = 16_000

# The conv feature encoder of emotion2vec: total stride 320 samples (20 ms → 50 frames/s), receptive field 400
# samples. An input of n samples yields (n - 400) // 320 + 1 frames.
HOP_SAMPLES = 320
RECEPTIVE_FIELD_SAMPLES = 400
MIN_SAMPLES = RECEPTIVE_FIELD_SAMPLES
HOP_SECONDS = HOP_SAMPLES / SAMPLE_RATE

DEFAULT_WINDOW_SECONDS = 30.0
DEFAULT_OVERLAP_SECONDS = 1.0


@dataclass(frozen=True)
class _Window:
    start: int  # first sample
    end: int  # one past the last sample
    own_start: int  # the part of the timeline this window answers for (overlaps are split in the middle)
    own_end: int


def plan_windows(n_samples: int, window_samples: int, overlap_samples: int) -> list[_Window]:
    """Cut an input into the fewest windows of at most ``window_samples`` overlapping by ``overlap_samples``.

    Windows are spread evenly (no short last window with little context) and start on a frame boundary, so
    their frames line up with the frames of the whole input. Each window *owns* its span minus half of each
    overlap: owned spans tile the input exactly, which is what frame trimming and duration weights use.
    """
    if n_samples <= window_samples:
        return [_Window(0, n_samples, 0, n_samples)]
    n = math.ceil((n_samples - overlap_samples) / (window_samples - overlap_samples))
    stride = (n_samples - overlap_samples) / n
    starts = [HOP_SAMPLES * math.ceil(i * stride / HOP_SAMPLES) for i in range(n)]
    half = overlap_samples // 2
    windows = []
    for i, start in enumerate(starts):
        last = i == n - 1
        end = n_samples if last else starts[i + 1] + overlap_samples
        own_start = 0 if i == 0 else start + half
        own_end = n_samples if last else starts[i + 1] + half
        windows.append(_Window(start, end, own_start, own_end))
    return windows


def window_params(window_seconds: float, overlap_seconds: float) -> tuple[int, int]:
    """Window and overlap lengths in samples, checked and rounded to the frame grid.

    The overlap rounds to whole pairs of frames (so it splits evenly between neighbours) and is at least two
    frames (40 ms): the 25 ms receptive field is longer than the 20 ms hop, so without overlap one frame would
    be lost at each seam.
    """
    if window_seconds < 1.0:
        raise ValueError("window_seconds must be at least 1 s")
    window_samples = HOP_SAMPLES * round(window_seconds * SAMPLE_RATE / HOP_SAMPLES)
    overlap_samples = 2 * HOP_SAMPLES * max(1, round(overlap_seconds * SAMPLE_RATE / (2 * HOP_SAMPLES)))
    if overlap_samples * 2 > window_samples:
        raise ValueError("overlap_seconds must be less than half of window_seconds")
    return window_samples, overlap_samples


def frames_for(n_samples: int) -> int:
    """How many feature frames the model produces for ``n_samples`` samples."""
    return max(0, (n_samples - RECEPTIVE_FIELD_SAMPLES) // HOP_SAMPLES + 1)
