"""Writing results: ``encode``, and choosing an output format that can hold the audio.

Why this module exists: the product promises the output has the input's sample rate, channel count and
length, whatever the codec; this module holds each encoder's limits and settings.

Length preservation on encode:

* WAV, FLAC: exact.
* Ogg/Vorbis (libvorbis via libsndfile): exact; the last page's granule position marks the end.
* MP3 (LAME via libsndfile): exact when read back by FFmpeg or libsndfile/mpg123 (and other gapless
  decoders): LAME writes its Info/LAME tag holding the encoder delay and the end padding. (FFmpeg's own
  libmp3lame + mp3 muxer path was measured to be off by 10-44 samples for some lengths, so it is not used.)
  One known exception: a clip of a single sample at an MPEG-2 rate (< 32 kHz) decodes to 530 samples.
* M4A/AAC: exact with this package's ``decode``: the file carries an edit list (priming samples skipped,
  duration in a movie timescale equal to the sample rate, so the duration is sample-exact), and ``decode``
  trims FFmpeg's output to that duration (FFmpeg honours the edit list's start but not its end). Players
  that honour edit lists (Apple, browsers) also see the exact length; a decoder that ignores edit lists
  sees up to 1024 priming samples in front and padding up to the next 1024-sample frame at the end.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from media_ops.audio.formats import MAX_CHANNELS, MAX_SAMPLE_RATE, OUTPUT_FORMATS, PathLike
from media_ops.errors import INVALID_FORMAT, PROCESSING_FAILED, MediaError

# Output encoders' limits (what FFmpeg's encoders accept; checked on this build).
_MP3_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
_AAC_RATES = frozenset(
    {7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}
)
_MAX_OUTPUT_CHANNELS = {"wav": MAX_CHANNELS, "flac": MAX_CHANNELS, "ogg": MAX_CHANNELS, "mp3": 2, "m4a": 6}
_AV_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1"}

_FORMAT_ALIASES = {"wave": "wav", "oga": "ogg", "vorbis": "ogg", "mpeg": "mp3", "mp4": "m4a", "aac": "m4a"}

# Subtypes an output WAV keeps; anything else is mapped to the nearest one (see encode).
_WAV_SUBTYPES = frozenset({"PCM_16", "PCM_24", "PCM_32", "FLOAT"})

_ENCODE_BLOCK_FRAMES = 1 << 16


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
