"""What the audio package accepts and produces, and the limits it enforces: the shared vocabulary.

Why this module exists: the upload views, the job handlers and every layer of this package name formats,
content types, file extensions and limits; defining them once here keeps those layers free of each other.
``AudioInfo`` is what ``probe`` reports and what jobs store with an upload.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

PathLike = str | os.PathLike[str]

SUPPORTED_INPUT_FORMATS: tuple[str, ...] = ("wav", "flac", "ogg", "mp3", "m4a")
"""Container families accepted as input. "m4a" covers any MP4/M4A/MOV-style (ISO BMFF) file with an audio
stream (AAC, ALAC, MP3-in-MP4, ...) and raw ADTS AAC streams."""

OUTPUT_FORMATS: tuple[str, ...] = ("wav", "flac", "ogg", "mp3", "m4a")

CONTENT_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
}

FILE_EXTENSIONS: dict[str, str] = {
    "wav": ".wav",
    "flac": ".flac",
    "ogg": ".ogg",
    "mp3": ".mp3",
    "m4a": ".m4a",
}
"""File name extension (with the leading dot) for each output format."""

DURATION_TOLERANCE_SECONDS = 0.5
"""Audio counts as too long only when it exceeds the limit by more than this. Encoders round lengths (an
MP3 without gapless info carries ~50 ms of delay and padding), and a 600.02 s upload of a "10 minute" file
should not be refused. It is also the slack ``decode`` allows itself before it stops."""

MAX_CHANNELS = 8
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000


@dataclass(frozen=True)
class AudioInfo:
    """What ``probe`` learnt about an audio file, cheaply (headers, or a bounded scan).

    ``format`` is the container family (one of SUPPORTED_INPUT_FORMATS), ``codec`` the FFmpeg-style codec
    name ("pcm_s16", "flac", "vorbis", "opus", "mp3", "aac", ...). ``subtype`` is libsndfile's sample
    format for WAV/FLAC/Ogg inputs ("PCM_16", "PCM_24", "FLOAT", "VORBIS", ...), None for PyAV-read files;
    pass it to ``encode(..., subtype=...)`` to keep the input's bit depth.
    """

    format: str
    codec: str | None
    sample_rate: int
    channels: int
    duration_seconds: float
    subtype: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
