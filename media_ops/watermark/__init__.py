"""AudioSeal watermark embedding and detection.

The models work on 16 kHz mono. Embedding keeps the input's sample rate, channels and length: the
watermark is computed on the 16 kHz mono mix, brought back to the original rate with an anti-aliased
resampler and added to every channel. Long audio is processed in windows with context on both sides
(only each window's centre is kept), so cost per second stays flat and memory stays bounded, and a
watermark that spans a window boundary is still detected.

Detection reports regions (``segments``), each decoded from its own samples, and finds a watermark that an
edit moved off the detector's frame grid (trims, crops, splices), inverted or (optionally) sped up: see
``AlignmentSearch``, the region rule above ``REGION_GAP_SECONDS`` and ``_verify``.

Messages: the API speaks 4 hex digits; the model speaks 16 bits. Bit ``i`` is bit ``15 - i`` of the
integer (most significant first), so "8000" is ``[1, 0, …, 0]``.

The package, by layer: ``messages`` (constants, the message format), ``models`` (the loaded pair and its
batched, windowed forward passes), ``embedding``, ``regions`` (the region rule and the result), ``search``
(the alignment search and the re-synthesis check), ``detection``. The names below are its public surface.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_TORCH_COMPILE", "1")  # before audioseal is imported anywhere: see models

from media_ops.watermark.detection import (  # noqa: E402
    detect,
    detect_batch,
)
from media_ops.watermark.embedding import (  # noqa: E402
    embed,
    embed_batch,
    snr_db,
)
from media_ops.watermark.messages import (  # noqa: E402
    DETECTION_THRESHOLD,
    HOP_SECONDS,
    LENGTH_BUCKET_SAMPLES,
    LOGIT_CLIP,
    MESSAGE_THRESHOLD,
    MODEL_RATE,
    NBITS,
    PRECISIONS,
    ZERO_TAIL_SAMPLES,
    format_message,
    parse_message,
    random_message,
)
from media_ops.watermark.models import (  # noqa: E402
    Analysis,
    WatermarkModels,
)
from media_ops.watermark.regions import (  # noqa: E402
    REGION_GAP_SECONDS,
    REGION_MIN_SECONDS,
    _Alignment,
    _Segment,
    _segments,
    confidence_label,
)
from media_ops.watermark.search import (  # noqa: E402
    CONFIRM_Z,
    POLARITY_SECONDS,
    SEARCH,
    SEARCH_HINT,
    AlignmentSearch,
)

__all__ = [
    "MODEL_RATE",
    "NBITS",
    "HOP_SECONDS",
    "DETECTION_THRESHOLD",
    "MESSAGE_THRESHOLD",
    "LOGIT_CLIP",
    "ZERO_TAIL_SAMPLES",
    "LENGTH_BUCKET_SAMPLES",
    "PRECISIONS",
    "parse_message",
    "format_message",
    "random_message",
    "WatermarkModels",
    "Analysis",
    "embed",
    "embed_batch",
    "snr_db",
    "confidence_label",
    "REGION_GAP_SECONDS",
    "REGION_MIN_SECONDS",
    "_Alignment",
    "_Segment",
    "_segments",
    "SEARCH_HINT",
    "POLARITY_SECONDS",
    "CONFIRM_Z",
    "AlignmentSearch",
    "SEARCH",
    "detect",
    "detect_batch",
]
