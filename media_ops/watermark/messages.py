"""Constants of the watermark family and the message format.

Messages: the API speaks 4 hex digits; the model speaks 16 bits. Bit ``i`` is bit ``15 - i`` of the
integer (most significant first), so "8000" is ``[1, 0, …, 0]``.
"""

from __future__ import annotations

import logging
import os
import re

import numpy as np

logger = logging.getLogger(__name__)


MODEL_RATE = 16_000


NBITS = 16


HOP_SECONDS = 0.01  # localisation curve: 100 values per second


DETECTION_THRESHOLD = 0.5


MESSAGE_THRESHOLD = 0.5


LOGIT_CLIP = 10.0  # detection logits are clipped here before averaging: one saturated frame can't outvote many


ZERO_TAIL_SAMPLES = 3200
"""Zeros every window is followed by (real audio after its kept centre counts), so windows of any lengths can
share a zero-padded batch and still give exactly what they give alone.

Why: SEANet's convolutions see a little into the future (the LSTM is unidirectional, so only the convs reach
right). The output on [0, n) of an input followed by Z zeros stops depending on Z once Z >= 2,560 samples for
the generator and >= 1,920 for the detector (measured on the demo checkpoints and on the full-size 16-bit
architecture, several n modulo the 320-sample frame; ``media_ops/tests/test_batching.py`` checks it for the
demo pair). So once a window has this many zeros (or real samples) after its kept part, padding it further,
to the longest window of a batch or to a length bucket, changes nothing there but float rounding. 3,200 is
the measured 2,560 plus two frames of margin (0.2 s): a 1 s clip runs as 1.2 s, a 10 s clip as 10.2 s
(README "Benchmarks" has the cost). The audio's last samples are therefore computed as if silence followed
them, in the one-at-a-time path as in batches.
"""


LENGTH_BUCKET_SAMPLES = 3200
"""Every forward pass's input length is rounded up to a multiple of this (0.2 s, ten 320-sample frames), so the
number of distinct input shapes stays bounded (62 for windows of up to 12 s) whatever lengths jobs have: oneDNN
builds and caches a primitive per shape (README "Benchmarks": RSS grew 54 % over random lengths), and CUDA
kernels are chosen per shape. Padding up to the bucket is free of effect by ``ZERO_TAIL_SAMPLES``."""


PRECISIONS = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}


_HEX = re.compile(r"^[0-9a-fA-F]{4}$")


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
