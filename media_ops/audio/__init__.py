"""Audio I/O for the whole product: sniff, probe, decode, resample and encode.

Why this package exists: every product line (watermarking, emotion, beat-sync) takes user uploads in several
containers and must (a) reject bad or hostile files cheaply at upload time, (b) decode them into one array
layout, and (c) hand back a file that has the input's sample rate, channel count and *length*. It is a pure
library: no Django, no torch, so the web process can probe uploads without loading a model.

Back ends: libsndfile (``soundfile``) reads WAV, FLAC and Ogg, and writes those and MP3 (LAME); PyAV
(bundled FFmpeg) reads MP3, MP4/M4A/raw-AAC, and the Ogg/WAV/FLAC files libsndfile cannot (Ogg/FLAC,
MP3-in-WAV, FLAC without a sample count), and writes M4A (FFmpeg's AAC). Which back end reads a file is
chosen from its *bytes* (``sniff_format``), never its name.

Layers, each a module (callers import the names below from the package, not from the modules):

* ``formats``: the accepted/produced formats, content types, extensions, limits and ``AudioInfo``;
* ``sniffing``: the container family from a file's first bytes;
* ``checks``: the limits and refusals every reader shares (rate, channels, duration, truncated WAV);
* ``decoding``: the libsndfile and PyAV readers, and ``decode``;
* ``probing``: the bounded header probes, and ``probe``;
* ``dsp``: ``to_mono`` and ``resample``;
* ``encoding``: ``encode``, ``can_encode`` and ``output_format_for``.

Defences against hostile input (a few KB that decode to hours, lying headers, truncated files) are
described in ``probing``, ``decoding`` and ``checks``; how each output codec keeps the input's length, in
``encoding``.
"""

from media_ops.audio.decoding import decode
from media_ops.audio.dsp import resample, to_mono
from media_ops.audio.encoding import can_encode, encode, output_format_for
from media_ops.audio.formats import (
    CONTENT_TYPES,
    DURATION_TOLERANCE_SECONDS,
    FILE_EXTENSIONS,
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    OUTPUT_FORMATS,
    SUPPORTED_INPUT_FORMATS,
    AudioInfo,
    PathLike,
)
from media_ops.audio.probing import probe
from media_ops.audio.sniffing import sniff_format

__all__ = [
    "CONTENT_TYPES",
    "DURATION_TOLERANCE_SECONDS",
    "FILE_EXTENSIONS",
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "OUTPUT_FORMATS",
    "SUPPORTED_INPUT_FORMATS",
    "AudioInfo",
    "PathLike",
    "can_encode",
    "decode",
    "encode",
    "output_format_for",
    "probe",
    "resample",
    "sniff_format",
    "to_mono",
]
