"""Which of our output formats the C2PA SDK can carry a manifest in, and why the others cannot.

c2pa-rs (0.91, in c2pa-python 0.38) embeds a manifest in a RIFF chunk (WAV), an ID3v2 frame (MP3) or a
``uuid`` box (MP4/M4A). Such outputs decode sample-identical and are signed.

FLAC is *accepted* by the SDK but not signed here: it writes the manifest as an ID3v2 tag *in front of* the
``fLaC`` marker (measured: the signed file starts with ``ID3``), which is not FLAC; libsndfile still opens it but
cannot seek in it (our own upload probe then calls it truncated), so a customer's tools could break on it. Ogg
has no handler in the SDK. Those outputs stay unsigned and say why.
"""

from __future__ import annotations

SIGNABLE_MIME_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "mp4": "video/mp4",
}
"""Our format name -> the MIME type the SDK signs and reads it under."""

UNSIGNABLE_REASONS: dict[str, str] = {
    "flac": "The C2PA SDK would put the manifest in an ID3v2 tag before the FLAC stream, which FLAC decoders "
    "cannot seek in; FLAC outputs are not signed (choose WAV, MP3 or M4A for Content Credentials).",
    "ogg": "The C2PA SDK cannot embed a manifest in Ogg files (no Ogg asset handler in c2pa-rs).",
}

READABLE_MIME_TYPES: dict[str, str] = {**SIGNABLE_MIME_TYPES, "flac": "audio/flac"}
"""Formats verify reads a manifest from (someone else's signed FLAC included)."""

INGREDIENT_MIME_TYPES: dict[str, str] = {**READABLE_MIME_TYPES, "ogg": "audio/ogg", "mov": "video/quicktime"}
"""An ingredient is only hashed and described, so any input format can be one."""


def mime_type_for(fmt: str) -> str | None:
    """The MIME type to sign ``fmt`` as, or None when the SDK cannot embed a manifest in it."""
    return SIGNABLE_MIME_TYPES.get(fmt.lower())


def readable_mime_type_for(fmt: str) -> str | None:
    """The MIME type to read a manifest from ``fmt`` as, or None when the SDK has no reader for it."""
    return READABLE_MIME_TYPES.get(fmt.lower())


def unsignable_reason(fmt: str) -> str:
    """Why an output of ``fmt`` carries no manifest (for the job result)."""
    return UNSIGNABLE_REASONS.get(
        fmt.lower(), f"The C2PA SDK cannot embed a manifest in {fmt!r} files."
    )
