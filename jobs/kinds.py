"""What each job kind needs: its queue, its input files, how an upload is probed, and its handler.

Adding a product line means adding a ``KindSpec`` here, a handler in ``jobs.worker.handlers`` and an endpoint;
the lifecycle, storage, quotas and the worker are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from jobs.models import JobKind
from media_ops import audio, beatsync
from media_ops.errors import INVALID_FORMAT, NO_AUDIO_TRACK, MediaError


def probe_audio(
    path, max_duration_seconds: float, field: str = "file", video_limits: beatsync.VideoLimits | None = None
) -> dict[str, Any]:
    """Probe an audio upload (``video_limits`` does not apply to audio)."""
    return audio.probe(path, max_duration_seconds=max_duration_seconds).to_dict()


def probe_report_audio(
    path, max_duration_seconds: float, field: str = "file", video_limits: beatsync.VideoLimits | None = None
) -> dict[str, Any]:
    """Probe a robustness report's upload: audio no longer than ``WATERMARK_REPORT_MAX_SECONDS`` (a report
    reads the file once per attack, so its cost is bounded here, before anything is stored)."""
    return probe_audio(path, min(max_duration_seconds, settings.WATERMARK_REPORT_MAX_SECONDS), field)


def primary_seconds(infos: dict[str, dict[str, Any]], primary: str) -> float:
    """Billable seconds of most kinds: the duration of the primary input."""
    return float(infos[primary].get("duration_seconds") or 0.0)


def report_seconds(infos: dict[str, dict[str, Any]], primary: str) -> float:
    """Billable seconds of a robustness report: the file's duration × the battery's attacks ×
    ``WATERMARK_REPORT_ATTACK_RATE`` (each attack is one detection of the file, billed at that fraction of a
    detection job); the original, when sent, is only compared, not billed."""
    from media_ops.watermark.attacks import BATTERY

    return primary_seconds(infos, primary) * len(BATTERY) * float(settings.WATERMARK_REPORT_ATTACK_RATE)


def probe_media(
    path, max_duration_seconds: float, field: str = "video", video_limits: beatsync.VideoLimits | None = None
) -> dict[str, Any]:
    """Probe a beat-sync upload; the video must have picture and sound, the music sound, and its picture must
    be within ``video_limits`` (frame size, frame rate, pixel rate)."""
    info = beatsync.probe_media(path, max_duration_seconds=max_duration_seconds, video_limits=video_limits)
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


def report_battery() -> dict[str, Any]:
    """The attack battery a robustness report runs, its version, its length limit and its price (what
    ``GET /api/v1/watermark/report/attacks`` returns)."""
    from media_ops.watermark import attacks

    rate = float(settings.WATERMARK_REPORT_ATTACK_RATE)
    return {
        "version": attacks.BATTERY_VERSION,
        "attacks": attacks.describe(),
        "max_duration_seconds": float(min(settings.WATERMARK_REPORT_MAX_SECONDS, settings.MAX_AUDIO_SECONDS)),
        "billing": {"attack_rate": rate, "seconds_per_audio_second": round(len(attacks.BATTERY) * rate, 4)},
    }


@dataclass(frozen=True)
class InputSpec:
    """One upload field of a kind: its form name, what a person calls it, and what it must contain."""

    name: str
    label: str
    media: str = "audio"  # audio | video | music: decides the accepted types shown in the dashboard
    required: bool = True  # an optional input may be left out; when sent it is probed and stored like the others


@dataclass(frozen=True)
class KindSpec:
    kind: str
    queue: str
    model_family: str | None  # which part of the worker's model pool the handler uses (None: no model)
    handler: str  # dotted path, imported only in the worker
    inputs: tuple[InputSpec, ...] = (InputSpec("file", "Audio file"),)  # the first is the primary input
    probe: Callable[..., dict[str, Any]] = probe_audio
    retryable: bool = True
    action: str = ""  # what the dashboard's New job page calls it ("Embed watermark")
    summary: str = ""  # one sentence for that page
    url_name: str = ""  # the API endpoint's URL name (``api:<url_name>``)
    # (probed inputs by name, primary name) -> the seconds reserved and billed (the job's ``audio_seconds``)
    billable_seconds: Callable[[dict[str, dict[str, Any]], str], float] = primary_seconds

    @property
    def input_names(self) -> tuple[str, ...]:
        """The upload field names, primary first."""
        return tuple(i.name for i in self.inputs)


KINDS: dict[str, KindSpec] = {
    JobKind.WATERMARK_EMBED: KindSpec(
        JobKind.WATERMARK_EMBED, "watermark", "watermark", "jobs.worker.handlers.watermark_embed",
        action="Embed watermark", url_name="watermark-embed",
        summary="Hide an inaudible 16-bit message in speech or music (AudioSeal).",
    ),
    JobKind.WATERMARK_DETECT: KindSpec(
        JobKind.WATERMARK_DETECT, "watermark", "watermark", "jobs.worker.handlers.watermark_detect",
        action="Detect watermark", url_name="watermark-detect",
        summary="Find where a watermark is and decode its message.",
    ),
    JobKind.EMOTION: KindSpec(
        JobKind.EMOTION, "emotion", "emotion", "jobs.worker.handlers.emotion_analyze",
        inputs=(InputSpec("file", "Speech recording"),),
        action="Speech emotion", url_name="emotion-analyze",
        summary="Score nine emotions for a recording, overall or over time (emotion2vec+).",
    ),
    JobKind.BEATSYNC: KindSpec(
        JobKind.BEATSYNC, "media", None, "jobs.worker.handlers.beatsync_align",
        inputs=(InputSpec("video", "Dance video", "video"), InputSpec("music", "Music track", "music")),
        probe=probe_media, action="Beat-sync video", url_name="beatsync-align",
        summary="Put the clean music track under a dance video, perfectly aligned.",
    ),
    JobKind.WATERMARK_REPORT: KindSpec(
        JobKind.WATERMARK_REPORT, "watermark", "watermark", "jobs.worker.handlers.watermark_report",
        inputs=(
            InputSpec("file", "Watermarked audio"),
            InputSpec("original", "Original audio (optional: adds the quality figures)", required=False),
        ),
        probe=probe_report_audio, billable_seconds=report_seconds, action="Robustness report",
        url_name="watermark-report",
        summary="Attack a watermarked file with a versioned battery of edits and see what the mark survives.",
    ),
}


def spec(kind: str) -> KindSpec:
    return KINDS[kind]
