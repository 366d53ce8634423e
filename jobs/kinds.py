"""What each job kind needs: its queue, its input files, how an upload is probed, and its handler.

Adding a product line means adding a ``KindSpec`` here, a handler in ``jobs.worker.handlers`` and an endpoint;
the lifecycle, storage, quotas and the worker are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobs.models import JobKind


def probe_audio(path, max_duration_seconds: float, field: str = "file") -> dict[str, Any]:
    from media_ops import audio

    return audio.probe(path, max_duration_seconds=max_duration_seconds).to_dict()


def probe_media(path, max_duration_seconds: float, field: str = "video") -> dict[str, Any]:
    """Probe a beat-sync upload; the video must have picture and sound, the music sound."""
    from media_ops import beatsync
    from media_ops.errors import INVALID_FORMAT, NO_AUDIO_TRACK, MediaError

    info = beatsync.probe_media(path, max_duration_seconds=max_duration_seconds)
    if field == "video" and not info.has_video:
        raise MediaError(INVALID_FORMAT, "The video file has no video stream.", {"field": field})
    if not info.has_audio:
        what = "video has no audio track to align the music to" if field == "video" else "music has no audio"
        raise MediaError(NO_AUDIO_TRACK, f"The {what}.", {"field": field})
    data = info.to_dict()
    data.update(
        format=info.container.lower(), sample_rate=info.audio_sample_rate, channels=info.audio_channels
    )
    return data


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
        JobKind.WATERMARK_EMBED, "watermark", "watermark", "jobs.worker.handlers.watermark_embed"
    ),
    JobKind.WATERMARK_DETECT: KindSpec(
        JobKind.WATERMARK_DETECT, "watermark", "watermark", "jobs.worker.handlers.watermark_detect"
    ),
    JobKind.EMOTION: KindSpec(JobKind.EMOTION, "emotion", "emotion", "jobs.worker.handlers.emotion_analyze"),
    JobKind.BEATSYNC: KindSpec(
        JobKind.BEATSYNC, "media", None, "jobs.worker.handlers.beatsync_align", inputs=("video", "music"),
        probe=probe_media,
    ),
}


def spec(kind: str) -> KindSpec:
    return KINDS[kind]
