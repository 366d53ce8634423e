"""What each job kind needs: its queue, its input files, how an upload is probed, and its handler.

Adding a product line means adding a ``KindSpec`` here, a handler in ``jobs.handlers`` and an endpoint;
the lifecycle, storage, quotas and the worker are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobs.models import JobKind


def probe_audio(path, max_duration_seconds: float) -> dict[str, Any]:
    from media_ops import audio

    return audio.probe(path, max_duration_seconds=max_duration_seconds).to_dict()


def probe_media(path, max_duration_seconds: float) -> dict[str, Any]:
    from media_ops import beatsync

    return beatsync.probe_media(path, max_duration_seconds=max_duration_seconds).to_dict()


@dataclass(frozen=True)
class KindSpec:
    kind: str
    queue: str
    model_family: str | None  # which part of the worker's model pool the handler uses (None: no model)
    handler: str  # dotted path, imported only in the worker
    inputs: tuple[str, ...] = ("file",)  # upload field names; the first is the primary input
    probe: Callable[..., dict[str, Any]] = probe_audio
    retryable: bool = True


KINDS: dict[str, KindSpec] = {
    JobKind.WATERMARK_EMBED: KindSpec(
        JobKind.WATERMARK_EMBED, "watermark", "watermark", "jobs.handlers.watermark_embed"
    ),
    JobKind.WATERMARK_DETECT: KindSpec(
        JobKind.WATERMARK_DETECT, "watermark", "watermark", "jobs.handlers.watermark_detect"
    ),
    JobKind.EMOTION: KindSpec(JobKind.EMOTION, "emotion", "emotion", "jobs.handlers.emotion_analyze"),
    JobKind.BEATSYNC: KindSpec(
        JobKind.BEATSYNC, "media", None, "jobs.handlers.beatsync_align", inputs=("video", "music"),
        probe=probe_media,
    ),
}


def spec(kind: str) -> KindSpec:
    return KINDS[kind]
