"""The limits and refusals every audio reader shares: rate, channels, duration, truncation.

Why this module exists: the libsndfile and PyAV back ends, probing and decoding all refuse the same things
in the same words, so the checks and the errors they raise live once, here:

* channel count and sample rate are bounded (``MAX_CHANNELS``, ``MIN_SAMPLE_RATE``..``MAX_SAMPLE_RATE``) so
  a header cannot make a short file allocate gigabytes;
* audio counts as too long only past ``max_duration_seconds + DURATION_TOLERANCE_SECONDS``;
* a WAV whose data chunk claims more bytes than the file holds is INVALID_FORMAT (``_check_wav_structure``):
  libsndfile would silently return the part present, and the product would then watermark and return a
  shorter file than the user uploaded.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from media_ops.audio.formats import (
    DURATION_TOLERANCE_SECONDS,
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    PathLike,
)
from media_ops.errors import AUDIO_TOO_LONG, EMPTY_FILE, INVALID_FORMAT, NO_AUDIO_TRACK, MediaError


def _check_stream(sample_rate: int, channels: int) -> None:
    if channels < 1:
        raise MediaError(NO_AUDIO_TRACK, "The file has no audio channels.")
    if channels > MAX_CHANNELS:
        raise MediaError(
            INVALID_FORMAT,
            f"Audio with {channels} channels is not supported (at most {MAX_CHANNELS}).",
            {"channels": channels, "max_channels": MAX_CHANNELS},
        )
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise MediaError(
            INVALID_FORMAT,
            f"A sample rate of {sample_rate} Hz is not supported ({MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz).",
            {"sample_rate": sample_rate},
        )


def _too_long(max_duration: float, duration: float, *, at_least: bool) -> MediaError:
    shown = f"at least {duration:.1f}" if at_least else f"{duration:.1f}"
    return MediaError(
        AUDIO_TOO_LONG,
        f"The audio is {shown} seconds long; the limit is {max_duration:g} seconds.",
        {
            "max_duration_seconds": max_duration,
            "duration_seconds": round(duration, 3),
            "duration_is_lower_bound": at_least,
        },
    )


def _check_duration(duration: float, max_duration: float | None, *, at_least: bool = False) -> None:
    if max_duration is not None and duration > max_duration + DURATION_TOLERANCE_SECONDS:
        raise _too_long(max_duration, duration, at_least=at_least)


def _frame_limit(max_duration: float | None, sample_rate: int) -> int | None:
    """Most frames decode may produce before the audio counts as too long."""
    if max_duration is None:
        return None
    return math.floor((max_duration + DURATION_TOLERANCE_SECONDS) * sample_rate)


def _empty_audio() -> MediaError:
    return MediaError(EMPTY_FILE, "The file contains no audio samples.")


def _truncated(fmt: str, extra: str = "") -> MediaError:
    return MediaError(
        INVALID_FORMAT,
        f"The {fmt.upper()} file is truncated or corrupt{extra}; please upload the complete file.",
        {"format": fmt, "reason": "truncated"},
    )


def _corrupt(fmt: str, exc: BaseException | None = None) -> MediaError:
    details: dict[str, Any] = {"format": fmt}
    if exc is not None:
        details["error"] = str(exc)[:300]
    return MediaError(
        INVALID_FORMAT,
        f"The file looks like {fmt.upper()} but could not be read; it may be corrupt or use an unsupported "
        "codec.",
        details,
    )


def _check_wav_structure(path: PathLike, file_size: int) -> None:
    """Refuse a WAV whose data chunk claims more bytes than the file holds.

    libsndfile quietly shortens such a file to what is present; for the product that is a silently
    shortened output, so it is an error here. Streamed WAVs that put 0 or 0xFFFFFFFF in the size field
    (and RF64/BW64, whose real size sits in a ds64 chunk) are left to libsndfile.
    """
    with open(path, "rb") as f:
        riff = f.read(12)
        if len(riff) < 12:
            raise _truncated("wav", " (incomplete header)")
        if riff[:4] in (b"RF64", b"BW64"):
            return
        endian = ">" if riff[:4] == b"RIFX" else "<"
        block_align = 1
        pos = 12
        for _ in range(10_000):
            header = f.read(8)
            if len(header) < 8:
                raise _truncated("wav", " (no audio data chunk)")
            chunk_id, chunk_size = header[:4], struct.unpack(endian + "I", header[4:])[0]
            pos += 8
            if chunk_id == b"fmt ":
                fmt_data = f.read(min(chunk_size, 16))
                if len(fmt_data) >= 14:
                    block_align = max(1, struct.unpack(endian + "H", fmt_data[12:14])[0])
                f.seek(pos)
            if chunk_id == b"data":
                available = file_size - pos
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size - available >= block_align:
                    raise _truncated(
                        "wav",
                        f" (the header announces {chunk_size} bytes of audio, the file holds {available})",
                    )
                return
            pos += chunk_size + (chunk_size & 1)
            if pos > file_size:
                raise _truncated("wav")
            f.seek(pos)
    raise _corrupt("wav")

