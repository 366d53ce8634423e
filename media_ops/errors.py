"""Errors raised by media_ops, carrying the API's stable error codes.

media_ops knows nothing of HTTP: the jobs app maps a MediaError to a response (at upload time) or to a
failed job (in the worker). ``retryable`` marks transient failures (storage hiccups, CUDA OOM) that the
worker may retry; every other MediaError is a property of the input and fails the job at once.
"""

from __future__ import annotations

from typing import Any


class MediaError(Exception):
    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.retryable = retryable

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"MediaError({self.code!r}, {self.message!r})"


# Stable codes used by media_ops (the API adds its own: UNAUTHENTICATED, NOT_FOUND, QUOTA_EXCEEDED, ...).
INVALID_FORMAT = "INVALID_FORMAT"
EMPTY_FILE = "EMPTY_FILE"
FILE_TOO_LARGE = "FILE_TOO_LARGE"
AUDIO_TOO_LONG = "AUDIO_TOO_LONG"
NO_AUDIO_TRACK = "NO_AUDIO_TRACK"
VIDEO_TOO_LARGE = "VIDEO_TOO_LARGE"  # frame size (width × height) or pixel rate over the limit
FRAME_RATE_TOO_HIGH = "FRAME_RATE_TOO_HIGH"
ALIGNMENT_FAILED = "ALIGNMENT_FAILED"
NO_WATERMARK = "NO_WATERMARK"  # a robustness report on a file that carries no detectable watermark
PROCESSING_FAILED = "PROCESSING_FAILED"
