"""Which container a file is, from its bytes: the first decision about any upload.

Why this module exists: users rename files, and browsers send whatever content type the extension suggests;
the magic numbers are the only thing that decides which decoder may touch a file. Everything here reads at
most the first 64 KiB (or past a large ID3 tag) and decodes nothing.
"""

from __future__ import annotations

import os

from media_ops.audio.formats import SUPPORTED_INPUT_FORMATS, PathLike
from media_ops.errors import EMPTY_FILE, INVALID_FORMAT, PROCESSING_FAILED, MediaError

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


def _kind(path: PathLike) -> tuple[str, int]:
    head, size = _read_head(path)
    kind = _sniff_kind(head)
    if kind is None:
        raise _not_audio(head)
    return kind, size
