#!/usr/bin/env python
"""Regenerate the committed speech fixtures in media_ops/tests/fixtures/.

Why: tests need real speech in every input container the product accepts, small enough to commit, and
reproducible by anyone (no downloads, no model hub). espeak-ng synthesises the speech; soundfile
(libsndfile: WAV, FLAC, Ogg/Vorbis, MP3 via LAME) and PyAV (FFmpeg's AAC in M4A) write the containers.
The fixtures are written with other code paths and settings than ``media_ops.audio.encode`` on purpose
(libsndfile's MP3 writer, FFmpeg's default millisecond edit list in the M4A, moov atom at the end), so
the tests read files the module did not produce itself.

Deterministic: same espeak-ng version -> same bytes. libsndfile picks a random Ogg stream serial number,
so the script rewrites it (and the page checksums) to a fixed value; the M4A is muxed bit-exact.

Usage (needs the espeak-ng binary; tests never do):  python scripts/make_fixtures.py [--out DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "media_ops" / "tests" / "fixtures"

SENTENCE_1 = "The quick brown fox jumps over the lazy dog near the quiet river."
VOICE_1 = ("en-us", 165, 50)  # voice, words per minute, pitch
SENTENCE_2 = "Please call Stella and ask her to bring these things from the store."
VOICE_2 = ("en-gb+f3", 170, 65)
OGG_SERIAL = 0x41534C31  # "ASL1"


def synthesise(text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """espeak-ng -> mono float32 at espeak's native 22050 Hz, silence trimmed, peak at -3 dBFS."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "tts.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text], check=True
        )
        audio, sr = sf.read(wav, dtype="float32", always_2d=False)
    voiced = np.flatnonzero(np.abs(audio) > 1e-3)
    pad = int(0.1 * sr)
    audio = audio[max(0, voiced[0] - pad) : voiced[-1] + pad]
    audio = 0.7 * audio / np.max(np.abs(audio))
    return audio.astype(np.float32), sr


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def fix_ogg_serial(path: Path, serial: int = OGG_SERIAL) -> None:
    """Rewrite every page's stream serial number to ``serial`` and recompute the page checksums."""
    data = bytearray(path.read_bytes())
    pos = 0
    while pos < len(data):
        if data[pos : pos + 4] != b"OggS":
            raise ValueError(f"not an Ogg page at byte {pos}")
        segments = data[pos + 26]
        body = sum(data[pos + 27 : pos + 27 + segments])
        end = pos + 27 + segments + body
        data[pos + 14 : pos + 18] = serial.to_bytes(4, "little")
        data[pos + 22 : pos + 26] = b"\0\0\0\0"
        data[pos + 22 : pos + 26] = _ogg_crc(bytes(data[pos:end])).to_bytes(4, "little")
        pos = end
    path.write_bytes(bytes(data))


def write_m4a(audio: np.ndarray, sr: int, path: Path, bitrate: int = 64_000) -> None:
    """AAC-LC in M4A with FFmpeg's defaults (millisecond edit list, moov at the end), bit-exact."""
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format="ipod", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("aac", rate=sr, layout=layout, options={"flags": "+bitexact"})
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio, dtype=np.float32), format="fltp", layout=layout
        )
        frame.sample_rate = sr
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    speech, sr = synthesise(SENTENCE_1, *VOICE_1)  # 22050 Hz mono
    speech2, sr2 = synthesise(SENTENCE_2, *VOICE_2)

    s16 = soxr.resample(speech, sr, 16_000, quality="HQ")
    sf.write(out / "speech_16k_mono.wav", s16, 16_000, subtype="PCM_16")

    s44 = soxr.resample(speech, sr, 44_100, quality="HQ")
    delay = int(0.002 * 44_100)  # right channel: 2 ms later and 2 dB quieter, so the channels differ
    right = 0.8 * np.concatenate([np.zeros(delay, np.float32), s44[:-delay]])
    sf.write(out / "speech_44k_stereo.flac", np.stack([s44, right], axis=1), 44_100, subtype="PCM_16")

    # libsndfile's LAME writer at espeak's own 22.05 kHz (MPEG-2 layer III), with a gapless LAME tag.
    sf.write(out / "speech.mp3", speech, sr, format="MP3", bitrate_mode="CONSTANT", compression_level=0.7)

    s48 = soxr.resample(speech, sr, 48_000, quality="HQ")
    write_m4a(s48[None, :], 48_000, out / "speech.m4a")

    sf.write(out / "speech.ogg", s44, 44_100, format="OGG", subtype="VORBIS", compression_level=0.6)
    fix_ogg_serial(out / "speech.ogg")

    sf.write(
        out / "speech2_16k_mono.wav", soxr.resample(speech2, sr2, 16_000, quality="HQ"), 16_000, "PCM_16"
    )

    (out / "not_audio.wav").write_text(
        "This is a plain text file with a .wav name. The product must refuse it from its bytes.\n"
    )

    total = 0
    for path in sorted(out.iterdir()):
        if path.suffix in (".py",) or path.name.startswith("."):
            continue
        size = path.stat().st_size
        total += size
        info = ""
        if path.name != "not_audio.wav":
            i = sf.info(path) if path.suffix != ".m4a" else None
            info = f"{i.samplerate} Hz {i.channels} ch {i.duration:.2f} s" if i else ""
        print(f"{path.name:28s} {size / 1024:7.1f} KiB  {info}")
    print(f"{'total':28s} {total / 1024:7.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
