"""Decoding uploads to float32 (channels, samples): the libsndfile and PyAV readers, and ``decode``.

Why this module exists: it is the one place that turns a file into samples, and the second line of defence
against hostile input (``probe``, which trusted the headers, is the first):

* ``decode`` never produces more than ``max_duration_seconds + DURATION_TOLERANCE_SECONDS`` of audio; it
  raises AUDIO_TOO_LONG instead (defence in depth: a header may claim less than the stream holds).
* a FLAC that ends early and an MP4 whose sample data stops short of its index are INVALID_FORMAT
  (libsndfile would silently return the part present, and the product would then watermark and return a
  shorter file than the user uploaded; WAVs are checked on their bytes, see ``checks``).

libsndfile reads WAV, FLAC and Ogg; PyAV (FFmpeg) reads MP3, MP4/M4A, raw ADTS and the Ogg/WAV/FLAC files
libsndfile cannot. The opening helpers here are shared with ``probing``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import soundfile as sf

from media_ops.audio.checks import (
    _check_duration,
    _check_stream,
    _check_wav_structure,
    _corrupt,
    _empty_audio,
    _frame_limit,
    _too_long,
    _truncated,
)
from media_ops.audio.formats import DURATION_TOLERANCE_SECONDS, PathLike
from media_ops.audio.sniffing import _kind
from media_ops.errors import INVALID_FORMAT, NO_AUDIO_TRACK, PROCESSING_FAILED, MediaError

_READ_BLOCK_FRAMES = 1 << 18


# --------------------------------------------------------------------------------------------------------
# libsndfile back end (WAV, FLAC, Ogg)
# --------------------------------------------------------------------------------------------------------

_SF_UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's SF_COUNT_MAX: "length unknown" (FLAC without a sample count)


def _sf_open(path: PathLike, fmt: str) -> sf.SoundFile:
    try:
        return sf.SoundFile(os.fspath(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        error = _corrupt(fmt, exc)
        error.details["reason"] = "unreadable"
        raise error from exc



def _sf_decode(path: PathLike, fmt: str, max_duration: float | None) -> tuple[np.ndarray, int]:
    with _sf_open(path, fmt) as handle:
        sample_rate, channels, frames = handle.samplerate, handle.channels, handle.frames
        _check_stream(sample_rate, channels)
        if frames >= _SF_UNKNOWN_FRAMES:
            return _av_decode(path, fmt, max_duration)  # see _sf_probe
        limit = _frame_limit(max_duration, sample_rate)
        _check_duration(frames / sample_rate, max_duration)
        blocks: list[np.ndarray] = []
        total = 0
        try:
            while True:
                want = _READ_BLOCK_FRAMES
                if limit is not None:
                    want = min(want, limit + 1 - total)
                block = handle.read(want, dtype="float32", always_2d=True)
                if block.shape[0]:
                    blocks.append(block)
                    total += block.shape[0]
                if limit is not None and total > limit:
                    raise _too_long(max_duration or 0.0, total / sample_rate, at_least=True)
                if block.shape[0] < want:
                    break
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise _truncated(fmt) from exc
    # (A WAV's completeness is checked on its bytes, _check_wav_structure: for compressed WAV codecs
    # libsndfile's frame count is an estimate from the fact chunk.)
    if total < frames and fmt == "flac":
        raise _truncated(fmt, f" (decoded {total} of {frames} samples)")
    if total == 0:
        raise _empty_audio()
    audio = np.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]
    return np.ascontiguousarray(audio.T, dtype=np.float32), sample_rate



# --------------------------------------------------------------------------------------------------------
# PyAV back end (MP3, MP4/M4A, ADTS, Ogg streams libsndfile cannot read)
# --------------------------------------------------------------------------------------------------------

_AV_DEMUXERS = {"mp3": "mp3", "m4a": "mp4", "adts": "aac", "ogg": "ogg", "flac": "flac", "wav": "wav"}


def _av_open(path: PathLike, kind: str):  # -> av.container.InputContainer
    import av  # imported lazily: the WAV/FLAC paths do not need FFmpeg loaded

    try:
        return av.open(os.fspath(path), format=_AV_DEMUXERS[kind], metadata_errors="replace")
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        if _looks_truncated(exc):
            raise _truncated(_public(kind)) from exc
        raise _corrupt(_public(kind), exc) from exc


def _looks_truncated(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "moov atom not found" in text or "end of file" in text


def _public(kind: str) -> str:
    return "m4a" if kind == "adts" else kind


def _av_audio_stream(container: Any, kind: str):
    streams = list(container.streams.audio)
    if not streams:
        raise MediaError(NO_AUDIO_TRACK, "The file has no audio track.", {"format": _public(kind)})
    stream = streams[0]
    if stream.codec_context.sample_rate <= 0 or stream.codec_context.channels <= 0:
        raise _corrupt(_public(kind))
    return stream



def _av_header_frames(stream: Any, sample_rate: int) -> int | None:
    """Length in samples from the container's index/headers, or None when the container has none."""
    if stream.duration is None or stream.time_base is None or stream.duration <= 0:
        return None
    return round(stream.duration * stream.time_base * sample_rate)



def _to_float_planar(frame: Any) -> np.ndarray:
    """An FFmpeg AudioFrame as float32 (channels, samples), whatever its sample format."""
    data = frame.to_ndarray()
    channels = (
        frame.layout.nb_channels if hasattr(frame.layout, "nb_channels") else len(frame.layout.channels)
    )
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    name = frame.format.name.rstrip("p")
    if name == "flt":
        return data.astype(np.float32, copy=False)
    if name == "dbl":
        return data.astype(np.float32)
    if name == "s16":
        return data.astype(np.float32) / 32768.0
    if name == "s32":
        return (data.astype(np.float64) / 2147483648.0).astype(np.float32)
    if name == "u8":
        return (data.astype(np.float32) - 128.0) / 128.0
    if name == "s64":
        return (data.astype(np.float64) / 9.223372036854775808e18).astype(np.float32)
    raise MediaError(PROCESSING_FAILED, f"Unexpected decoded sample format {frame.format.name}.")


def _av_decode_stream(
    container: Any, stream: Any, kind: str, limit_seconds: float | None, *, count_only: bool = False
) -> tuple[list[np.ndarray], float, int]:
    """Decode ``stream``; returns (blocks, seconds decoded, channels). Stops past ``limit_seconds``.

    A corrupt packet in the middle of an MP3 is skipped (as FFmpeg's command line does) rather than
    failing the whole file; a file where many packets fail, or none decode, is INVALID_FORMAT.
    """
    import av

    fmt = _public(kind)
    sample_rate = stream.codec_context.sample_rate
    channels = stream.codec_context.channels
    limit = None if limit_seconds is None else math.floor(limit_seconds * sample_rate)
    blocks: list[np.ndarray] = []
    total = packets = bad = 0
    try:
        for packet in container.demux(stream):
            packets += 1 if packet.size else 0
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                bad += 1
                if bad > 10 and bad > packets // 20:
                    raise _corrupt(fmt) from None
                continue
            for frame in frames:
                if frame.sample_rate != sample_rate:
                    raise MediaError(
                        INVALID_FORMAT, "The audio changes sample rate mid-stream.", {"format": fmt}
                    )
                if count_only:
                    total += frame.samples
                else:
                    block = _to_float_planar(frame)
                    if block.shape[0] != channels:
                        if total:
                            raise MediaError(
                                INVALID_FORMAT, "The audio changes channel count mid-stream.", {"format": fmt}
                            )
                        channels = block.shape[0]
                    blocks.append(block)
                    total += block.shape[1]
                if limit is not None and total > limit:
                    return blocks, total / sample_rate, channels
    except av.error.FFmpegError as exc:
        raise _truncated(fmt) from exc
    if bad and total == 0:
        raise _corrupt(fmt)
    return blocks, total / sample_rate, channels



def _av_decode(path: PathLike, kind: str, max_duration: float | None) -> tuple[np.ndarray, int]:
    fmt = _public(kind)
    limit_seconds = None if max_duration is None else max_duration + DURATION_TOLERANCE_SECONDS
    with _av_open(path, kind) as container:
        stream = _av_audio_stream(container, kind)
        sample_rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        _check_stream(sample_rate, channels)
        header_frames = _av_header_frames(stream, sample_rate)
        if header_frames is not None and kind == "m4a":
            _check_duration(header_frames / sample_rate, max_duration)
        blocks, seconds, channels = _av_decode_stream(container, stream, kind, limit_seconds)
    _check_stream(sample_rate, channels)
    if max_duration is not None and limit_seconds is not None and seconds > limit_seconds:
        raise _too_long(max_duration, seconds, at_least=True)
    if not blocks:
        raise _empty_audio()
    audio = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    if kind == "m4a" and header_frames is not None:
        # FFmpeg skips the edit list's priming samples but not the end padding: trim to the declared length.
        # A stream that stops well short of its own index lost sample data (truncated upload).
        if audio.shape[1] > header_frames:
            audio = audio[:, :header_frames]
        elif header_frames - audio.shape[1] > max(2048, sample_rate // 10):
            raise _truncated(fmt, f" (decoded {audio.shape[1]} of {header_frames} samples)")
    if audio.shape[1] == 0:
        raise _empty_audio()
    return np.ascontiguousarray(audio, dtype=np.float32), sample_rate



# --------------------------------------------------------------------------------------------------------
# Public API: decode
# --------------------------------------------------------------------------------------------------------


def _sf_fallback(fn: Any, path: PathLike, kind: str, max_duration: float | None, av_fn: Any) -> Any:
    """Ogg and WAV hold more codecs than libsndfile reads (Ogg/FLAC, Speex, MP3-in-WAV, ...): when
    libsndfile cannot open such a file, let FFmpeg try before calling it invalid."""
    try:
        return fn(path, kind, max_duration)
    except MediaError as exc:
        if kind not in ("ogg", "wav") or exc.details.get("reason") != "unreadable":
            raise
        try:
            return av_fn(path, kind, max_duration)
        except MediaError as av_exc:
            if av_exc.code == INVALID_FORMAT:
                raise exc from av_exc
            raise



def decode(path: PathLike, *, max_duration_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode to float32 (channels, samples) at the file's own sample rate.

    Never produces more than ``max_duration_seconds + DURATION_TOLERANCE_SECONDS`` of audio: it raises
    AUDIO_TOO_LONG instead, whatever the headers said (probe trusted them; this is the second line).
    Truncated WAV/FLAC/M4A files raise INVALID_FORMAT rather than returning a shorter signal. MP4/M4A
    output is trimmed to the container's declared length (edit list), so AAC encoder padding is removed.
    """
    kind, size = _kind(path)
    if kind == "wav":
        _check_wav_structure(path, size)
    if kind in ("wav", "flac", "ogg"):
        return _sf_fallback(_sf_decode, path, kind, max_duration_seconds, _av_decode)
    return _av_decode(path, kind, max_duration_seconds)

