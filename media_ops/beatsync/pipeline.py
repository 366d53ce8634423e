"""The beat-sync job as the worker runs it: probe both uploads, align, render, summarise.

Why this module exists: it is the one entry point the jobs app calls (``run``), and the only place that
knows the order of the stages and how their progress adds up.
"""

from __future__ import annotations

import os
from typing import Any

from media_ops.beatsync.alignment import align
from media_ops.beatsync.probing import VideoLimits, probe_media
from media_ops.beatsync.progress import Progress, _reporter, _scaled
from media_ops.beatsync.rendering import render
from media_ops.errors import INVALID_FORMAT, NO_AUDIO_TRACK, MediaError


def run(
    video_path: str | os.PathLike[str],
    music_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    trim_silence: bool = False,
    progress: Progress | None = None,
    max_bytes: int | None = None,
    max_duration_seconds: float | None = None,
    video_limits: VideoLimits | None = None,
) -> dict[str, Any]:
    """The whole beat-sync job: probe, align, render. Returns a JSON-safe summary.

    ``progress(percent, message)`` is called at each stage (probing 0, decoding/aligning 5-60,
    rendering 60-99, done 100). MediaErrors from any stage propagate unchanged. ``video_limits`` refuses
    a picture too large to decode before any decoding (the upload check already applied the tenant's).
    """
    report = _reporter(progress)
    report(0, "probing the uploads")
    video_info = probe_media(
        video_path, max_bytes=max_bytes, max_duration_seconds=max_duration_seconds, video_limits=video_limits
    )
    music_info = probe_media(music_path, max_bytes=max_bytes, max_duration_seconds=max_duration_seconds)
    if not video_info.has_video:
        raise MediaError(INVALID_FORMAT, "The video file has no video stream.", {"role": "video"})
    if not video_info.has_audio:
        raise MediaError(NO_AUDIO_TRACK, "The video has no audio track to align the music to.", {"role": "video"})
    if not music_info.has_audio:
        raise MediaError(NO_AUDIO_TRACK, "The music file has no audio track.", {"role": "music"})
    result = align(video_path, music_path, progress=_scaled(report, 5, 60))
    rendered = render(
        video_path,
        music_path,
        result.offset_seconds,
        out_path,
        trim_silence=trim_silence,
        progress=_scaled(report, 60, 99),
    )
    report(100, "done")
    return {
        "offset_seconds": round(result.offset_seconds, 4),
        "confidence": result.confidence,
        "overlap_seconds": round(result.overlap_seconds, 3),
        "video_duration_seconds": video_info.duration_seconds,
        "music_duration_seconds": music_info.duration_seconds,
        "alignment": result.to_dict(),
        "video": video_info.to_dict(),
        "music": music_info.to_dict(),
        "output": rendered.to_dict(),
    }
