"""Upload-time checks of a video or music file: ``probe_media`` and ``MediaInfo``.

Why this module exists: an upload must be accepted or refused in the web process, from its headers alone
(its bytes, not its name), before any job decodes it; this is that check, with the size and duration limits
and the video limits (``VideoLimits``: pixels per frame, frames and pixels per second), which bound what
decoding and re-encoding the picture can cost a worker.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import av

from media_ops.beatsync.streams import _codec_name, _main_video_stream, _open_input
from media_ops.errors import (
    AUDIO_TOO_LONG,
    EMPTY_FILE,
    FILE_TOO_LARGE,
    FRAME_RATE_TOO_HIGH,
    INVALID_FORMAT,
    PROCESSING_FAILED,
    VIDEO_TOO_LARGE,
    MediaError,
)

ACCEPTED_CONTAINERS: frozenset[str] = frozenset({"MP4", "MOV", "M4A", "MP3", "WAV", "FLAC"})


@dataclass(frozen=True)
class MediaInfo:
    """What the headers say about an upload; enough to accept or refuse it before any decoding."""

    container: str  # one of ACCEPTED_CONTAINERS
    format_name: str  # FFmpeg demuxer name, for diagnostics
    size_bytes: int
    duration_seconds: float
    has_video: bool
    has_audio: bool
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VideoLimits:
    """The largest picture a job may decode: pixels per frame (width × height), frames per second, and
    pixels per second (width × height × fps). None: no limit."""

    max_pixels_per_frame: int | None = None
    max_fps: float | None = None
    max_pixels_per_second: int | None = None


def check_video_limits(info: MediaInfo, limits: VideoLimits) -> None:
    """Raise VIDEO_TOO_LARGE (frame size or pixel rate) or FRAME_RATE_TOO_HIGH when ``info``'s video stream
    is over ``limits``. The details always carry the video's size and rate and every limit."""
    if not info.has_video or not info.width or not info.height:
        return
    pixels = info.width * info.height
    fps = info.fps or 0.0
    rate = round(pixels * fps)
    details: dict[str, Any] = {
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "pixels_per_frame": pixels,
        "pixels_per_second": rate,
        "max_pixels_per_frame": limits.max_pixels_per_frame,
        "max_fps": limits.max_fps,
        "max_pixels_per_second": limits.max_pixels_per_second,
    }
    size = f"{info.width}×{info.height}"
    checks = (  # (limit name, value, limit, code, message), in the order they are reported
        ("pixels_per_frame", pixels, limits.max_pixels_per_frame, VIDEO_TOO_LARGE,
         f"The video's frames are {size} ({pixels:,} pixels); the limit is {{limit:,}} pixels per frame."),
        ("fps", fps, limits.max_fps, FRAME_RATE_TOO_HIGH,
         f"The video runs at {fps:g} frames per second; the limit is {{limit:g}}."),
        ("pixels_per_second", rate, limits.max_pixels_per_second, VIDEO_TOO_LARGE,
         f"The video is {size} at {fps:g} frames per second ({rate:,} pixels per second); the limit is "
         "{limit:,} pixels per second."),
    )
    for name, value, limit, code, message in checks:
        if limit is not None and value > limit:
            raise MediaError(code, message.format(limit=limit), {**details, "limit": name})


def probe_media(
    path: str | os.PathLike[str],
    *,
    max_bytes: int | None = None,
    max_duration_seconds: float | None = None,
    video_limits: VideoLimits | None = None,
) -> MediaInfo:
    """Identify an upload from its bytes (not its name) and enforce the size, duration and video limits.

    Reads headers only (FFmpeg's stream probing), so it is cheap enough to run at upload time. Raises
    MediaError: EMPTY_FILE, FILE_TOO_LARGE, INVALID_FORMAT (not media, or a container we don't accept),
    AUDIO_TOO_LONG (media longer than ``max_duration_seconds``), VIDEO_TOO_LARGE / FRAME_RATE_TOO_HIGH
    (see ``check_video_limits``).
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise MediaError(PROCESSING_FAILED, "Could not read the file.", {"error": str(exc)}, retryable=True) from exc
    if size == 0:
        raise MediaError(EMPTY_FILE, "The file is empty.")
    if max_bytes is not None and size > max_bytes:
        raise MediaError(FILE_TOO_LARGE, "The file is too large.", {"size_bytes": size, "max_bytes": max_bytes})
    with _open_input(path) as container:
        kind = _container_kind(container.format.name, head)
        if kind is None:
            raise MediaError(
                INVALID_FORMAT,
                "Unsupported container; upload MP4, MOV, M4A, MP3, WAV or FLAC.",
                {"format": container.format.name, "accepted": sorted(ACCEPTED_CONTAINERS)},
            )
        video = _main_video_stream(container)
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise MediaError(INVALID_FORMAT, "The file has neither audio nor video.", {"format": kind})
        duration = _container_duration(container)
        info = MediaInfo(
            container=kind,
            format_name=container.format.name,
            size_bytes=size,
            duration_seconds=round(duration, 3),
            has_video=video is not None,
            has_audio=audio is not None,
            video_codec=_codec_name(video) if video is not None else None,
            width=video.codec_context.width if video is not None else None,
            height=video.codec_context.height if video is not None else None,
            fps=_fps(video) if video is not None else None,
            audio_codec=_codec_name(audio) if audio is not None else None,
            audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
        )
    if max_duration_seconds is not None and duration > max_duration_seconds:
        raise MediaError(
            AUDIO_TOO_LONG,
            "The media is too long.",
            {"duration_seconds": round(duration, 3), "max_duration_seconds": max_duration_seconds},
        )
    if video_limits is not None:
        check_video_limits(info, video_limits)
    return info


def _container_kind(format_name: str, head: bytes) -> str | None:
    """Map FFmpeg's demuxer (chosen by content probing) to our container names.

    FFmpeg uses one demuxer for the whole ISO-BMFF family, so MP4/MOV/M4A are told apart by the ftyp
    major brand. 3GP and Motion JPEG 2000 share that demuxer but are not accepted.
    """
    names = set(format_name.split(","))
    for demuxer, kind in (("mp3", "MP3"), ("wav", "WAV"), ("flac", "FLAC")):
        if demuxer in names:
            return kind
    if not names & {"mov", "mp4"}:
        return None
    if head[4:8] != b"ftyp":
        return "MOV"  # classic QuickTime files start with moov/mdat/wide/free atoms, no ftyp
    brand = head[8:12]
    if brand == b"qt  ":
        return "MOV"
    if brand in (b"M4A ", b"M4B ", b"M4P "):
        return "M4A"
    if brand.startswith(b"3g") or brand.startswith(b"mj"):
        return None
    return "MP4"


def _fps(stream: av.video.stream.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return round(float(rate), 3) if rate else None


def _container_duration(container: av.container.InputContainer) -> float:
    """Duration from the headers, falling back to a packet scan (no decoding) when they don't say."""
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    best = 0.0
    for stream in container.streams:
        if stream.duration and stream.time_base:
            best = max(best, float(stream.duration * stream.time_base))
    if best > 0:
        return best
    end = 0.0
    for packet in container.demux():
        if packet.pts is not None and packet.time_base is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    return end
