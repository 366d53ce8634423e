"""Cheap, bounded probes of an upload's headers, and ``probe``.

Why this module exists: uploads are checked in the web process, before a job is queued, so the check must
cost milliseconds whatever the file claims. ``probe`` checks the duration in the headers against
``max_duration_seconds``; where the header is missing or cannot be trusted (MP3 with or without a Xing/VBRI
header, raw ADTS, FLAC without a sample count) it counts packets/frames and stops as soon as the limit is
passed, so its cost is bounded by the limit. It reuses the readers' opening helpers (``decoding``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import soundfile as sf

from media_ops.audio.checks import _check_duration, _check_stream, _check_wav_structure, _empty_audio, _truncated
from media_ops.audio.decoding import (
    _SF_UNKNOWN_FRAMES,
    _av_audio_stream,
    _av_decode_stream,
    _av_header_frames,
    _av_open,
    _public,
    _sf_fallback,
    _sf_open,
)
from media_ops.audio.formats import DURATION_TOLERANCE_SECONDS, AudioInfo, PathLike
from media_ops.audio.sniffing import _kind

# libsndfile subtype -> FFmpeg-style codec name, so AudioInfo.codec reads the same whichever back end probed.
_SF_CODECS = {
    "PCM_S8": "pcm_s8",
    "PCM_U8": "pcm_u8",
    "PCM_16": "pcm_s16",
    "PCM_24": "pcm_s24",
    "PCM_32": "pcm_s32",
    "FLOAT": "pcm_f32",
    "DOUBLE": "pcm_f64",
    "ULAW": "pcm_mulaw",
    "ALAW": "pcm_alaw",
    "IMA_ADPCM": "adpcm_ima_wav",
    "MS_ADPCM": "adpcm_ms",
    "GSM610": "gsm_ms",
    "VORBIS": "vorbis",
    "OPUS": "opus",
    "MPEG_LAYER_III": "mp3",
}
_AV_CODEC_NAMES = {"mp3float": "mp3", "mp2float": "mp2", "mp1float": "mp1", "aac_fixed": "aac"}


def _sf_codec(fmt: str, subtype: str) -> str:
    if fmt == "flac":
        return "flac"
    return _SF_CODECS.get(subtype, subtype.lower())


def _sf_probe(path: PathLike, fmt: str, max_duration: float | None) -> AudioInfo:
    with _sf_open(path, fmt) as handle:
        sample_rate, channels, frames, subtype = (
            handle.samplerate,
            handle.channels,
            handle.frames,
            handle.subtype,
        )
        _check_stream(sample_rate, channels)
        if frames >= _SF_UNKNOWN_FRAMES:
            # A FLAC written to a pipe has no sample count; libsndfile fails at its end, FFmpeg does not.
            return replace(_av_probe(path, fmt, max_duration), subtype=subtype)
        duration = frames / sample_rate
        _check_duration(duration, max_duration)
        if frames == 0:
            raise _empty_audio()
        if fmt == "flac":
            # Cheap truncation check: seeking to the last frame fails when the stream ends early.
            try:
                handle.seek(frames - 1)
                if handle.read(1, dtype="float32").shape[0] != 1:
                    raise _truncated(fmt)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise _truncated(fmt) from exc
    return AudioInfo(fmt, _sf_codec(fmt, subtype), sample_rate, channels, duration, subtype)



def _av_codec_name(stream: Any) -> str | None:
    name = stream.codec_context.name
    return _AV_CODEC_NAMES.get(name, name) if name else None



def _av_count_seconds(container: Any, stream: Any, kind: str, limit_seconds: float | None) -> float:
    """Sum the packets' durations (demux only, no decoding), stopping once past ``limit_seconds``.

    Demuxing an MP3 or ADTS stream costs a few microseconds per frame, so this bounds the work by the
    limit rather than by the (possibly hostile) file. Falls back to decoding when packets carry no
    duration.
    """
    import av

    time_base = stream.time_base
    total = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if not packet.duration:
                container.seek(0)
                return _av_decode_stream(container, stream, kind, limit_seconds, count_only=True)[1]
            total += packet.duration
            if limit_seconds is not None and total * time_base > limit_seconds:
                break
    except av.error.FFmpegError as exc:
        raise _truncated(_public(kind)) from exc
    return float(total * time_base)


def _av_tail_present(container: Any, stream: Any) -> bool:
    """Whether the stream's last packet can be read: a cheap truncation check for MP4 files whose index
    (moov) comes first and whose sample data was cut off."""
    import av

    end = (stream.start_time or 0) + stream.duration - 1
    try:
        container.seek(max(0, end), stream=stream, backward=True, any_frame=True)
        for packet in container.demux(stream):
            return packet.size > 0
    except av.error.FFmpegError:
        return False
    return False



def _av_probe(path: PathLike, kind: str, max_duration: float | None) -> AudioInfo:
    fmt = _public(kind)
    limit_seconds = None if max_duration is None else max_duration + DURATION_TOLERANCE_SECONDS
    with _av_open(path, kind) as container:
        stream = _av_audio_stream(container, kind)
        ctx = stream.codec_context
        sample_rate, channels = ctx.sample_rate, ctx.channels
        _check_stream(sample_rate, channels)
        header_frames = _av_header_frames(stream, sample_rate)
        header_seconds = None if header_frames is None else header_frames / sample_rate
        if kind == "m4a" and header_seconds is not None:
            # The MP4 sample table is what the demuxer will deliver: it is the length (decode re-checks).
            _check_duration(header_seconds, max_duration)
            duration = header_seconds
            if not _av_tail_present(container, stream):
                raise _truncated(fmt, " (its audio data stops before the end announced by its index)")
        else:
            # MP3 (Xing/VBRI header optional and unverified, or an estimate from the bit rate, which can
            # be wrong either way), raw ADTS (no header at all), FLAC without a sample count, Ogg: never
            # refuse on the header; count packets, which is cheap and bounded by the limit.
            counted = _av_count_seconds(container, stream, kind, limit_seconds)
            _check_duration(counted, max_duration, at_least=True)
            # A gapless (LAME-tagged) MP3 header is sample exact and agrees with the count to within the
            # encoder delay and padding (a few 576/1152-sample frames); prefer it then.
            close = header_seconds is not None and abs(header_seconds - counted) * sample_rate <= 4096
            duration = header_seconds if close else counted
        if duration <= 0:
            raise _empty_audio()
        return AudioInfo(fmt, _av_codec_name(stream), sample_rate, channels, float(duration), None)


def probe(path: PathLike, *, max_duration_seconds: float | None = None) -> AudioInfo:
    """Format, codec, rate, channels and duration of an upload, cheaply, refusing hostile files.

    Reads headers (libsndfile / FFmpeg stream metadata); where they may be missing or wrong (MP3, raw
    ADTS, FLAC without a sample count) it counts frames, stopping once ``max_duration_seconds`` is passed,
    so a few-KB file that would decode to hours costs milliseconds. Raises EMPTY_FILE (no bytes, or no
    samples), INVALID_FORMAT (not audio, truncated WAV/FLAC, corrupt, too many channels, absurd rate),
    NO_AUDIO_TRACK (an MP4 without audio) and AUDIO_TOO_LONG (longer than the limit plus
    DURATION_TOLERANCE_SECONDS). Truncation of compressed streams that only a full decode can see is
    reported by ``decode``.
    """
    kind, size = _kind(path)
    if kind == "wav":
        _check_wav_structure(path, size)
    if kind in ("wav", "flac", "ogg"):
        return _sf_fallback(_sf_probe, path, kind, max_duration_seconds, _av_probe)
    return _av_probe(path, kind, max_duration_seconds)

