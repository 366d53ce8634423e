"""Uploads for the API tests: the committed fixture audio, generated tones, and the bad-input cases that every
job-creating endpoint must refuse (watermark, emotion, …) — reused, not copied."""

from __future__ import annotations

import io
import wave
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

FIXTURES = Path(__file__).resolve().parent.parent / "media_ops" / "tests" / "fixtures"


def upload(name: str, *, as_name: str | None = None, content: bytes | None = None) -> SimpleUploadedFile:
    data = content if content is not None else (FIXTURES / name).read_bytes()
    return SimpleUploadedFile(as_name or name, data)


def stored_files(media_root: Path) -> list[Path]:
    return sorted(p for p in Path(media_root).rglob("*") if p.is_file())


def tone_wav_bytes(seconds: float, rate: int = 16_000) -> bytes:
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _truncated_wav() -> bytes:
    data = tone_wav_bytes(2.0)
    return data[: len(data) // 3]


def _long_flac_bytes(hours: float = 3.0) -> bytes:
    """A small FLAC file (silence) that decodes to hours: a decompression bomb for duration limits."""
    import numpy as np
    import soundfile as sf

    rate = 8000
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=rate, channels=1, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros(rate * 60, dtype=np.int16)
        for _ in range(int(hours * 60)):
            f.write(block)
    return buf.getvalue()


# name -> (file name, bytes factory, expected status, expected code)
BAD_AUDIO_CASES = {
    "empty": ("empty.wav", lambda: b"", 400, "EMPTY_FILE"),
    "text_named_wav": ("notes.wav", lambda: b"this is not audio at all\n" * 40, 415, "INVALID_FORMAT"),
    "truncated_wav": ("cut.wav", _truncated_wav, 415, "INVALID_FORMAT"),
    "too_long_bomb": ("long.flac", _long_flac_bytes, 422, "AUDIO_TOO_LONG"),
}


def bad_audio_upload(case: str) -> tuple[SimpleUploadedFile, int, str]:
    name, factory, status, code = BAD_AUDIO_CASES[case]
    return SimpleUploadedFile(name, factory()), status, code


