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


# Zero padding changes a SEANet output near the padded end: every conv re-pads its own input, so the padding
# reaches back one receptive field (measured: the last 2,431 samples, 0.15 s, changed by up to 27 % of the
# watermark's amplitude). A window with at least this much real audio after its kept centre can be padded
# without changing that centre at all; a window that ends the audio is never padded (batched only with
# windows of exactly its length).
PAD_SAFE_SECONDS = 0.5


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
