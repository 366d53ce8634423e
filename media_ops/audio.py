"""Audio I/O for the whole product: sniff, probe, decode, resample and encode.

Why this module exists: every product line (watermarking, emotion, beat-sync) takes user uploads in several
containers and must (a) reject bad or hostile files cheaply at upload time, (b) decode them into one array
layout, and (c) hand back a file that has the input's sample rate, channel count and *length*. It is a pure
library: no Django, no torch, so the web process can probe uploads without loading a model.

Back ends: libsndfile (``soundfile``) reads WAV, FLAC and Ogg, and writes those and MP3 (LAME); PyAV
(bundled FFmpeg) reads MP3, MP4/M4A/raw-AAC, and the Ogg/WAV/FLAC files libsndfile cannot (Ogg/FLAC,
MP3-in-WAV, FLAC without a sample count), and writes M4A (FFmpeg's AAC). Which back end reads a file is
chosen from its *bytes* (``sniff_format``), never its name.

Defences against hostile input (a few KB that decode to hours, lying headers, truncated files):

* ``probe`` checks the duration in the headers against ``max_duration_seconds``; where the header is missing
  or cannot be trusted (MP3 with or without a Xing/VBRI header, raw ADTS, FLAC without a sample count) it
  counts packets/frames and stops as soon as the limit is passed, so its cost is bounded by the limit.
* ``decode`` never produces more than ``max_duration_seconds + DURATION_TOLERANCE_SECONDS`` of audio; it
  raises AUDIO_TOO_LONG instead (defence in depth: a header may claim less than the stream holds).
* a WAV whose data chunk claims more bytes than the file holds, a FLAC that ends early and an MP4 whose
  sample data stops short of its index are INVALID_FORMAT (libsndfile would silently return the part
  present, and the product would then watermark and return a shorter file than the user uploaded).
* channel count and sample rate are bounded (``MAX_CHANNELS``, ``MIN_SAMPLE_RATE``..``MAX_SAMPLE_RATE``) so
  a header cannot make a short file allocate gigabytes.

Length preservation on encode (the product promises the output has the input's length):

* WAV, FLAC: exact.
* Ogg/Vorbis (libvorbis via libsndfile): exact; the last page's granule position marks the end.
* MP3 (LAME via libsndfile): exact when read back by FFmpeg or libsndfile/mpg123 (and other gapless
  decoders): LAME writes its Info/LAME tag holding the encoder delay and the end padding. (FFmpeg's own
  libmp3lame + mp3 muxer path was measured to be off by 10-44 samples for some lengths, so it is not used.)
  One known exception: a clip of a single sample at an MPEG-2 rate (< 32 kHz) decodes to 530 samples.
* M4A/AAC: exact with this module's ``decode``: the file carries an edit list (priming samples skipped,
  duration in a movie timescale equal to the sample rate, so the duration is sample-exact), and ``decode``
  trims FFmpeg's output to that duration (FFmpeg honours the edit list's start but not its end). Players
  that honour edit lists (Apple, browsers) also see the exact length; a decoder that ignores edit lists
  sees up to 1024 priming samples in front and padding up to the next 1024-sample frame at the end.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from media_ops.errors import (
    AUDIO_TOO_LONG,
    EMPTY_FILE,
    INVALID_FORMAT,
    NO_AUDIO_TRACK,
    PROCESSING_FAILED,
    MediaError,
)

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

# Output encoders' limits (what FFmpeg's encoders accept; checked on this build).
_MP3_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
_AAC_RATES = frozenset(
    {7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}
)
_MAX_OUTPUT_CHANNELS = {"wav": MAX_CHANNELS, "flac": MAX_CHANNELS, "ogg": MAX_CHANNELS, "mp3": 2, "m4a": 6}
_AV_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1"}

_FORMAT_ALIASES = {"wave": "wav", "oga": "ogg", "vorbis": "ogg", "mpeg": "mp3", "mp4": "m4a", "aac": "m4a"}

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

# Subtypes an output WAV keeps; anything else is mapped to the nearest one (see encode).
_WAV_SUBTYPES = frozenset({"PCM_16", "PCM_24", "PCM_32", "FLOAT"})

_READ_BLOCK_FRAMES = 1 << 18
_ENCODE_BLOCK_FRAMES = 1 << 16


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


# --------------------------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------------------------

_SNIFF_BYTES = 64 * 1024


def _mpeg_audio_header(b: bytes, i: int) -> bool:
    """True when b[i:i+4] is a plausible MPEG-1/2/2.5 layer I-III frame header."""
    if i + 4 > len(b) or b[i] != 0xFF or (b[i + 1] & 0xE0) != 0xE0:
        return False
    version = (b[i + 1] >> 3) & 0x3
    layer = (b[i + 1] >> 1) & 0x3
    bitrate_index = b[i + 2] >> 4
    rate_index = (b[i + 2] >> 2) & 0x3
    return version != 1 and layer != 0 and bitrate_index != 0xF and rate_index != 3


def _adts_header(b: bytes, i: int) -> bool:
    """True when b[i:i+7] is a plausible ADTS (raw AAC) frame header."""
    if i + 7 > len(b) or b[i] != 0xFF or (b[i + 1] & 0xF6) != 0xF0:
        return False
    rate_index = (b[i + 2] >> 2) & 0xF
    frame_length = ((b[i + 3] & 0x3) << 11) | (b[i + 4] << 3) | (b[i + 5] >> 5)
    return rate_index < 13 and frame_length >= 7


def _sniff_bytes(head: bytes) -> str | None:
    """The format family of a file from its first bytes, or None. ``_sniff_kind`` adds the ADTS case."""
    kind = _sniff_kind(head)
    if kind is None:
        return None
    return "m4a" if kind == "adts" else kind


def _sniff_kind(head: bytes) -> str | None:
    if len(head) >= 12 and head[8:12] == b"WAVE" and head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64"):
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return "m4a"
    start = 0
    # ID3v2 tags may precede MP3, ADTS and (rarely) FLAC streams: skip the tag, then look at the audio.
    while head[start : start + 3] == b"ID3" and len(head) >= start + 10:
        footer = 10 if head[start + 5] & 0x10 else 0
        start += 10 + _syncsafe(head[start + 6 : start + 10]) + footer
    if start:
        # Some taggers pad with zeros after the tag; tolerate it.
        while start < len(head) - 4 and head[start] == 0:
            start += 1
        if head[start : start + 4] == b"fLaC":
            return "flac"
        if _adts_header(head, start):
            return "adts"
        # ID3v2 in front of anything else is, in practice, an MP3 (possibly with junk before the first
        # frame, which FFmpeg resynchronises past); the decoder has the last word.
        return "mp3"
    if _adts_header(head, 0):
        return "adts"
    if _mpeg_audio_header(head, 0):
        return "mp3"
    return None


def _describe_unsupported(head: bytes) -> str | None:
    """Name well-known containers we do not accept, for a friendlier error message."""
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[:4] == b"caff":
        return "CAF"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if head[:4] == b"\x30\x26\xb2\x75":
        return "WMA/ASF"
    if head[:5] == b"#!AMR":
        return "AMR"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    return None


def _read_head(path: PathLike) -> tuple[bytes, int]:
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except FileNotFoundError as exc:
        raise MediaError(PROCESSING_FAILED, "The file to read does not exist.", {"path": str(path)}) from exc
    if size == 0 or not head:
        raise MediaError(EMPTY_FILE, "The file is empty.")
    # An ID3 tag with cover art can be larger than the first 64 KiB: read past it (tags are capped at
    # 256 MB by their 28-bit size field; upload limits keep this far smaller in practice).
    if head[:3] == b"ID3" and len(head) >= 10:
        tag_end = 10 + _syncsafe(head[6:10]) + (10 if head[5] & 0x10 else 0)
        if tag_end + 16 > len(head) and size > len(head):
            with open(path, "rb") as f:
                head = f.read(min(size, tag_end + 4096))
    return head, size


def _syncsafe(data: bytes) -> int:
    value = 0
    for byte in data:
        value = (value << 7) | (byte & 0x7F)
    return value


def sniff_format(path: PathLike) -> str:
    """The container family of ``path`` from its magic numbers, never its name.

    Users rename files, and browsers send whatever content type the extension suggests; the bytes are the
    only thing that decides which decoder may touch the file. Returns one of SUPPORTED_INPUT_FORMATS.
    Raises EMPTY_FILE for a zero-byte file, INVALID_FORMAT for anything else.
    """
    head, _ = _read_head(path)
    fmt = _sniff_bytes(head)
    if fmt is None:
        raise _not_audio(head)
    return fmt


def _not_audio(head: bytes) -> MediaError:
    known = _describe_unsupported(head)
    what = f"{known} files are not supported" if known else "The file is not a supported audio file"
    return MediaError(
        INVALID_FORMAT,
        f"{what}; upload WAV, FLAC, Ogg, MP3 or M4A/AAC audio.",
        {"supported": list(SUPPORTED_INPUT_FORMATS), **({"detected": known} if known else {})},
    )


# --------------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------------


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


def _av_codec_name(stream: Any) -> str | None:
    name = stream.codec_context.name
    return _AV_CODEC_NAMES.get(name, name) if name else None


def _av_header_frames(stream: Any, sample_rate: int) -> int | None:
    """Length in samples from the container's index/headers, or None when the container has none."""
    if stream.duration is None or stream.time_base is None or stream.duration <= 0:
        return None
    return round(stream.duration * stream.time_base * sample_rate)


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
# Public API: probe, decode
# --------------------------------------------------------------------------------------------------------


def _kind(path: PathLike) -> tuple[str, int]:
    head, size = _read_head(path)
    kind = _sniff_kind(head)
    if kind is None:
        raise _not_audio(head)
    return kind, size


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


# --------------------------------------------------------------------------------------------------------
# Signal helpers
# --------------------------------------------------------------------------------------------------------


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(samples,) float32: the mean of the channels (a 1-D input is returned as float32).

    The models (AudioSeal, emotion2vec) take mono; averaging keeps the level of correlated channels.
    """
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio.astype(np.float32, copy=False)
    if audio.ndim != 2:
        raise ValueError(f"expected (samples,) or (channels, samples), got shape {audio.shape}")
    return audio.mean(axis=0, dtype=np.float64).astype(np.float32)


def resample(audio: np.ndarray, sr_from: int, sr_to: int, *, num_samples: int | None = None) -> np.ndarray:
    """Band-limited resampling with soxr ("HQ"), for (samples,) or (channels, samples) float input.

    Anti-aliased, so content above the new Nyquist frequency is removed rather than folded back (a
    watermark detector or emotion model would otherwise see spurious tones). Returns float32 with
    ``round(n * sr_to / sr_from)`` samples, or exactly ``num_samples`` when given (zero-padded or cut at
    the end), which is what callers need to add a resampled signal back onto the original. Identity (a
    float32 copy) when the rates are equal.
    """
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2):
        raise ValueError(f"expected (samples,) or (channels, samples), got shape {audio.shape}")
    if sr_from <= 0 or sr_to <= 0:
        raise ValueError("sample rates must be positive")
    if sr_from == sr_to or audio.shape[-1] == 0:
        out = audio.astype(np.float32, copy=True)
        if sr_from != sr_to:
            out = np.zeros(audio.shape[:-1] + (0,), dtype=np.float32)
    else:
        x = audio.astype(np.float32, copy=False)
        if x.ndim == 1:
            out = soxr.resample(x, sr_from, sr_to, quality="HQ")
        else:
            out = soxr.resample(np.ascontiguousarray(x.T), sr_from, sr_to, quality="HQ").T
        out = np.ascontiguousarray(out, dtype=np.float32)
    if num_samples is not None and out.shape[-1] != num_samples:
        if out.shape[-1] > num_samples:
            out = np.ascontiguousarray(out[..., :num_samples])
        else:
            pad = [(0, 0)] * (out.ndim - 1) + [(0, num_samples - out.shape[-1])]
            out = np.pad(out, pad)
    return out


# --------------------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------------------


def _normalize_format(fmt: str) -> str | None:
    name = fmt.strip().lower().lstrip(".")
    name = _FORMAT_ALIASES.get(name, name)
    return name if name in OUTPUT_FORMATS else None


def can_encode(fmt: str, sample_rate: int, channels: int) -> bool:
    """Whether ``encode`` can write ``fmt`` at this rate and channel count without changing either.

    MP3 stores 1-2 channels at the MPEG rates (8-48 kHz); AAC 1-6 channels at 7.35-96 kHz; WAV/FLAC/Ogg
    any rate in range and up to MAX_CHANNELS channels.
    """
    name = _normalize_format(fmt)
    if name is None or channels < 1 or channels > _MAX_OUTPUT_CHANNELS[name]:
        return False
    if name == "mp3":
        return sample_rate in _MP3_RATES
    if name == "m4a":
        return sample_rate in _AAC_RATES
    if name == "flac":
        return 1 <= sample_rate <= 655_350
    return 1 <= sample_rate <= MAX_SAMPLE_RATE


def output_format_for(
    input_format: str,
    requested: str | None = None,
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
) -> str:
    """The format to write a job's result in: the requested one, else the input's own, else FLAC.

    Users expect to get back what they sent; FLAC is the lossless fallback for inputs we cannot re-encode.
    ``requested`` is validated (case-insensitive, a leading dot and the aliases "mp4"/"aac"/"oga"/"wave"
    accepted) and raises INVALID_FORMAT when unknown. With ``sample_rate``/``channels`` given, a requested
    format that cannot hold them raises INVALID_FORMAT, and an input format that cannot falls back to FLAC.
    """
    rate = sample_rate or 44_100
    chans = channels or 1
    if requested:
        name = _normalize_format(requested)
        if name is None:
            raise MediaError(
                INVALID_FORMAT,
                f"Unknown output format {requested!r}; choose one of {', '.join(OUTPUT_FORMATS)}.",
                {"requested": requested, "supported": list(OUTPUT_FORMATS)},
            )
        if (sample_rate or channels) and not can_encode(name, rate, chans):
            raise MediaError(
                INVALID_FORMAT,
                f"{name.upper()} cannot hold {chans}-channel audio at {rate} Hz; choose WAV or FLAC.",
                {"requested": name, "sample_rate": sample_rate, "channels": channels},
            )
        return name
    name = _normalize_format(input_format) if input_format else None
    if name is not None and can_encode(name, rate, chans):
        return name
    return "flac"


def _prepare(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"expected (channels, samples), got shape {x.shape}")
    if x.shape[0] > MAX_CHANNELS:
        raise ValueError(f"{x.shape[0]} channels: is the array (samples, channels)? Pass (channels, samples)")
    x = np.nan_to_num(x.astype(np.float32, copy=True), nan=0.0, posinf=1.0, neginf=-1.0)
    np.clip(x, -1.0, 1.0, out=x)
    return x


def _lossless_subtype(fmt: str, subtype: str | None) -> str:
    """Map a source's libsndfile subtype to one the output format can hold, keeping the bit depth."""
    sub = (subtype or "PCM_16").upper()
    if fmt == "wav":
        if sub in _WAV_SUBTYPES:
            return sub
        return "FLOAT" if sub == "DOUBLE" else "PCM_16"
    # FLAC: 16 or 24 bit.
    if sub in ("PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        return "PCM_24"
    return "PCM_16"


def _aac_bitrate(sample_rate: int, channels: int) -> int:
    """128 kb/s per channel (capped below the encoder's per-frame maximum at low rates): high enough that
    the codec is not what erases a watermark."""
    return channels * min(128_000, sample_rate * 5)


# libsndfile maps an MP3 "compression level" to a CBR bit rate within the MPEG version's range: 0.0 is its
# maximum (320 kb/s MPEG-1, 160 kb/s MPEG-2, 64 kb/s MPEG-2.5), 0.25 gives 256 / 128 / 48 kb/s.
_MP3_LEVEL = {1: 0.25, 2: 0.0}


def _encode_sndfile(x: np.ndarray, sample_rate: int, fmt: str, path: PathLike, subtype: str | None) -> None:
    """WAV, FLAC, Ogg/Vorbis and MP3 through libsndfile, written in blocks: libsndfile 1.2.2's Vorbis
    writer crashes the process (SIGSEGV) when handed a minute of stereo audio in one call."""
    if fmt in ("wav", "flac"):
        kwargs: dict[str, Any] = {"format": fmt.upper(), "subtype": _lossless_subtype(fmt, subtype)}
    elif fmt == "ogg":
        # libsndfile sets Vorbis quality to 1 - compression_level.
        kwargs = {"format": "OGG", "subtype": "VORBIS", "compression_level": 0.3}
    else:
        kwargs = {
            "format": "MP3",
            "subtype": "MPEG_LAYER_III",
            "bitrate_mode": "CONSTANT",
            "compression_level": _MP3_LEVEL[x.shape[0]],
        }
    with sf.SoundFile(os.fspath(path), "w", sample_rate, x.shape[0], **kwargs) as handle:
        for start in range(0, x.shape[1], _ENCODE_BLOCK_FRAMES):
            handle.write(np.ascontiguousarray(x[:, start : start + _ENCODE_BLOCK_FRAMES].T))


def _encode_m4a(x: np.ndarray, sample_rate: int, path: PathLike) -> None:
    import av

    channels = x.shape[0]
    layout = _AV_LAYOUTS[channels]
    # movie_timescale = sample rate makes the edit list's duration sample exact (FFmpeg's default: 1 ms);
    # faststart puts the index first so browsers can play the file while it downloads.
    options = {"movie_timescale": str(sample_rate), "movflags": "+faststart"}
    with av.open(os.fspath(path), "w", format="ipod", options=options) as container:
        stream = container.add_stream("aac", rate=sample_rate, layout=layout)
        stream.bit_rate = _aac_bitrate(sample_rate, channels)
        time_base = Fraction(1, sample_rate)
        for start in range(0, x.shape[1], _ENCODE_BLOCK_FRAMES):
            block = np.ascontiguousarray(x[:, start : start + _ENCODE_BLOCK_FRAMES])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
            frame.sample_rate = sample_rate
            frame.time_base = time_base
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def encode(
    audio: np.ndarray,
    sample_rate: int,
    fmt: str,
    path: PathLike,
    *,
    subtype: str | None = None,
) -> None:
    """Write (channels, samples) float audio to ``path`` as ``fmt``, keeping rate, channels and length.

    Samples are clipped to [-1, 1] (NaN becomes 0) first: a watermark can push peaks past full scale, and
    libsndfile would wrap, not clip, out-of-range floats when writing integer PCM. A 1-D array is mono.

    * wav/flac: ``subtype`` is a libsndfile subtype, normally the input's ``AudioInfo.subtype``, to keep
      its bit depth: WAV keeps PCM_16/PCM_24/PCM_32/FLOAT (DOUBLE -> FLOAT, anything else -> PCM_16), FLAC
      keeps 16 or 24 bit (deeper or float -> PCM_24). Default PCM_16.
    * ogg: Vorbis (libvorbis via libsndfile), quality ~0.7 (about 140 kb/s per channel at 44.1 kHz).
    * mp3: LAME CBR (libsndfile), stereo 320 kb/s, mono 256 kb/s (160/128 kb/s at MPEG-2 rates below
      32 kHz, 64/48 kb/s at 8-12 kHz), with LAME's gapless Info tag.
    * m4a: FFmpeg AAC-LC, 128 kb/s per channel, edit list for the priming and padding, moov first.

    The rate, channel count and length are kept (see the module docstring for how, per codec): this
    raises PROCESSING_FAILED when ``fmt`` cannot hold the rate or channel count (see ``can_encode``), and
    removes a partially written file on failure.
    """
    name = _normalize_format(fmt)
    if name is None:
        raise MediaError(
            INVALID_FORMAT,
            f"Unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}.",
            {"requested": fmt, "supported": list(OUTPUT_FORMATS)},
        )
    x = _prepare(audio)
    channels, frames = x.shape
    if frames == 0:
        raise MediaError(PROCESSING_FAILED, "There is no audio to encode.")
    if not can_encode(name, sample_rate, channels):
        raise MediaError(
            PROCESSING_FAILED,
            f"{name.upper()} cannot hold {channels}-channel audio at {sample_rate} Hz.",
            {"format": name, "sample_rate": sample_rate, "channels": channels},
        )
    target = Path(path)
    try:
        if name == "m4a":
            _encode_m4a(x, sample_rate, target)
        else:
            _encode_sndfile(x, sample_rate, name, target, subtype)
    except MediaError:
        target.unlink(missing_ok=True)
        raise
    except Exception as exc:
        target.unlink(missing_ok=True)
        raise MediaError(
            PROCESSING_FAILED,
            f"Encoding the result as {name.upper()} failed.",
            {"format": name, "error": str(exc)[:300]},
        ) from exc
