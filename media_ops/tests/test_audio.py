"""Tests for media_ops.audio: sniffing, probing, hostile inputs, resampling and encode/decode round trips.

The speech fixtures are committed (scripts/make_fixtures.py regenerates them); hostile files (truncated,
"bombs" that decode to hours) are generated here, in a tmp dir, by byte manipulation so they cost
milliseconds.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from media_ops import audio
from media_ops.errors import (
    AUDIO_TOO_LONG,
    EMPTY_FILE,
    INVALID_FORMAT,
    NO_AUDIO_TRACK,
    PROCESSING_FAILED,
    MediaError,
)
from testing.uploads import FIXTURES

SPEECH_SECONDS = 3.854  # the first sentence, in every container

# name: (format, codec, sample_rate, channels, duration)
FIXTURE_FACTS = {
    "speech_16k_mono.wav": ("wav", "pcm_s16", 16_000, 1, SPEECH_SECONDS),
    "speech_44k_stereo.flac": ("flac", "flac", 44_100, 2, SPEECH_SECONDS),
    "speech.mp3": ("mp3", "mp3", 22_050, 1, SPEECH_SECONDS),
    "speech.m4a": ("m4a", "aac", 48_000, 1, SPEECH_SECONDS),
    "speech.ogg": ("ogg", "vorbis", 44_100, 1, SPEECH_SECONDS),
    "speech2_16k_mono.wav": ("wav", "pcm_s16", 16_000, 1, 3.537),
}


def raises(code: str, fn, *args, **kwargs) -> MediaError:
    with pytest.raises(MediaError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, (info.value.code, info.value.message)
    assert info.value.message  # a human-readable message, always
    return info.value


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    noise = np.sum((reference.astype(np.float64) - test) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(noise, 1e-20)))


def tone(freq: float, sr: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# ---------------------------------------------------------------------------------------------------------
# Hostile-file factories
# ---------------------------------------------------------------------------------------------------------


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _utf8_number(n: int) -> bytes:
    """FLAC's UTF-8-like coding of the frame number."""
    if n < 0x80:
        return bytes([n])
    length = next(k for k, limit in ((2, 0x800), (3, 0x10000), (4, 0x200000)) if n < limit)
    tail = []
    for _ in range(length - 1):
        tail.append(0x80 | (n & 0x3F))
        n >>= 6
    return bytes([((0xFF << (8 - length)) & 0xFF) | n, *reversed(tail)])


def silent_flac(seconds: float, sr: int = 16_000, *, declared_samples: int | None = None) -> bytes:
    """A valid FLAC of digital silence, hand-built: 16384-sample CONSTANT frames of ~11 bytes each, so
    three hours at 16 kHz take ~120 KB. ``declared_samples`` overrides STREAMINFO's total (0 = unknown)."""
    block = 16384
    total = int(seconds * sr)
    declared = total if declared_samples is None else declared_samples
    streaminfo = struct.pack(">HH", block, block) + b"\0" * 6
    streaminfo += ((sr << 44) | (15 << 36) | declared).to_bytes(8, "big") + b"\0" * 16  # mono, 16 bit
    parts = [b"fLaC", bytes([0x80, 0, 0, 34]), streaminfo]
    for index in range(-(-total // block)):
        size = min(block, total - index * block)
        header = bytes([0xFF, 0xF8, 0x70, 0x08]) + _utf8_number(index) + struct.pack(">H", size - 1)
        frame = header + bytes([_crc8(header)]) + b"\x00\x00\x00"  # CONSTANT subframe, value 0
        parts.append(frame + struct.pack(">H", _crc16(frame)))
    return b"".join(parts)


def _mp3_frames(samples: np.ndarray, sr: int, bitrate: int) -> bytes:
    """Bare MP3 frames: no ID3 tag, no Xing/Info header (so nothing tells a reader the length)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3", options={"write_xing": "0", "id3v2_version": "0"}) as container:
        stream = container.add_stream("libmp3lame", rate=sr, layout="mono")
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
        frame.sample_rate = sr
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def lying_mp3(path: Path) -> None:
    """~1000 s of MP3 (~1 MB) whose Xing/Info header says 2 s.

    2 s of tone written by libsndfile (with an Info header: frame count and byte count), then 1000 s of
    8 kb/s silence appended, and the header's byte count patched to the new file size so that FFmpeg's
    own sanity check (byte count vs file size) passes and it believes the frame count.
    """
    sr = 16_000
    sf.write(path, tone(440, sr, 2.0), sr, format="MP3")
    data = bytearray(path.read_bytes())
    data += _mp3_frames(np.zeros(sr * 10, np.float32), sr, 8000) * 100
    tag = max(data.find(b"Info"), data.find(b"Xing"))
    assert tag > 0 and struct.unpack(">I", data[tag + 4 : tag + 8])[0] & 0x3 == 0x3  # frames and bytes
    data[tag + 12 : tag + 16] = struct.pack(">I", len(data))
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------------------
# Sniffing
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FIXTURE_FACTS))
def test_sniff_fixtures(name: str) -> None:
    assert audio.sniff_format(FIXTURES / name) == FIXTURE_FACTS[name][0]


def test_sniff_uses_bytes_not_name(tmp_path: Path) -> None:
    renamed = tmp_path / "clip.mp3"
    shutil.copy(FIXTURES / "speech_16k_mono.wav", renamed)
    assert audio.sniff_format(renamed) == "wav"
    assert audio.probe(renamed).format == "wav"
    m4a_as_ogg = tmp_path / "clip.ogg"
    shutil.copy(FIXTURES / "speech.m4a", m4a_as_ogg)
    assert audio.sniff_format(m4a_as_ogg) == "m4a"
    x, sr = audio.decode(m4a_as_ogg)
    assert sr == 48_000 and x.shape[0] == 1


def test_text_named_wav_is_invalid_format() -> None:
    path = FIXTURES / "not_audio.wav"
    for fn in (audio.sniff_format, audio.probe, audio.decode):
        error = raises(INVALID_FORMAT, fn, path)
        assert "supported" in error.details


def test_known_unsupported_container_is_named(tmp_path: Path) -> None:
    path = tmp_path / "clip.wav"
    sf.write(path, tone(440, 16_000, 0.2), 16_000, format="AIFF")
    error = raises(INVALID_FORMAT, audio.probe, path)
    assert error.details["detected"] == "AIFF"
    assert "AIFF" in error.message


def test_sniff_mp3_behind_large_id3_tag(tmp_path: Path) -> None:
    """Cover art can make the ID3 tag larger than the first read; the audio after it decides."""
    mp3 = (FIXTURES / "speech.mp3").read_bytes()
    art = b"\0" * 100_000
    size = len(art)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    path = tmp_path / "tagged.bin"
    path.write_bytes(b"ID3\x03\x00\x00" + syncsafe + art + mp3)
    assert audio.sniff_format(path) == "mp3"
    assert audio.probe(path).sample_rate == 22_050


def test_raw_adts_counts_as_m4a(tmp_path: Path) -> None:
    path = tmp_path / "clip.aac"
    with av.open(str(path), "w", format="adts") as container:
        stream = container.add_stream("aac", rate=44_100, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone(440, 44_100, 2.0)[None, :], format="fltp", layout="mono")
        frame.sample_rate = 44_100
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    assert audio.sniff_format(path) == "m4a"
    info = audio.probe(path)
    assert (info.format, info.codec, info.sample_rate, info.channels) == ("m4a", "aac", 44_100, 1)
    # Raw ADTS has no length or gapless information: priming and padding (< 2 AAC frames) remain.
    assert 2.0 <= info.duration_seconds < 2.0 + 2 * 1024 / 44_100 + 1e-6
    raises(AUDIO_TOO_LONG, audio.probe, path, max_duration_seconds=1.0)
    x, sr = audio.decode(path)
    assert sr == 44_100 and x.shape[0] == 1 and 2.0 <= x.shape[1] / sr < 2.1


def test_ogg_codecs_libsndfile_cannot_read_go_through_ffmpeg(tmp_path: Path) -> None:
    x = np.tile(tone(440, 44_100, 1.0), (2, 1))
    opus = tmp_path / "clip.opus"
    sf.write(opus, x.T, 48_000, format="OGG", subtype="OPUS")
    info = audio.probe(opus)
    assert (info.format, info.codec, info.sample_rate, info.channels) == ("ogg", "opus", 48_000, 2)
    ogg_flac = tmp_path / "clip.oga"  # FLAC in Ogg: libsndfile refuses it, FFmpeg reads it
    with av.open(str(ogg_flac), "w", format="ogg") as container:
        stream = container.add_stream("flac", rate=44_100, layout="stereo")
        pcm = (x.T * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate = 44_100
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    info = audio.probe(ogg_flac)
    assert (info.format, info.codec, info.sample_rate, info.channels) == ("ogg", "flac", 44_100, 2)
    y, sr = audio.decode(ogg_flac)
    assert sr == 44_100 and y.shape == x.shape and snr_db(x, y) > 80


# ---------------------------------------------------------------------------------------------------------
# Probe and decode of the fixtures
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FIXTURE_FACTS))
def test_probe_fixture(name: str) -> None:
    fmt, codec, sr, channels, seconds = FIXTURE_FACTS[name]
    info = audio.probe(FIXTURES / name, max_duration_seconds=60)
    assert (info.format, info.codec, info.sample_rate, info.channels) == (fmt, codec, sr, channels)
    assert info.duration_seconds == pytest.approx(seconds, abs=0.005)
    assert json.loads(json.dumps(info.to_dict()))["sample_rate"] == sr
    if fmt in ("wav", "flac"):
        assert info.subtype == "PCM_16"


@pytest.mark.parametrize("name", sorted(FIXTURE_FACTS))
def test_decode_fixture(name: str) -> None:
    _, _, sr, channels, seconds = FIXTURE_FACTS[name]
    x, rate = audio.decode(FIXTURES / name, max_duration_seconds=60)
    assert rate == sr
    assert x.dtype == np.float32 and x.ndim == 2 and x.shape[0] == channels
    assert x.flags["C_CONTIGUOUS"]
    assert x.shape[1] / sr == pytest.approx(seconds, abs=0.005)
    assert 0.5 < np.max(np.abs(x)) < 1.0  # the speech was normalised to a 0.7 peak
    info = audio.probe(FIXTURES / name)
    assert abs(x.shape[1] - info.duration_seconds * sr) <= 1


def test_stereo_fixture_has_distinct_channels() -> None:
    x, _ = audio.decode(FIXTURES / "speech_44k_stereo.flac")
    assert not np.allclose(x[0], x[1])
    assert rms(x[1]) == pytest.approx(0.8 * rms(x[0]), rel=0.02)


def test_all_speech_containers_hold_the_same_sentence() -> None:
    reference, _ = audio.decode(FIXTURES / "speech_16k_mono.wav")
    reference = reference[0]
    for name in ("speech_44k_stereo.flac", "speech.mp3", "speech.m4a", "speech.ogg"):
        x, sr = audio.decode(FIXTURES / name)
        y = audio.resample(audio.to_mono(x[:1]), sr, 16_000, num_samples=reference.size)
        # Aligned to the sample (lossy codecs' delays are removed) and close to the PCM original.
        assert snr_db(reference, y) > 10, name
    other, _ = audio.decode(FIXTURES / "speech2_16k_mono.wav")
    n = min(other.shape[1], reference.size)
    assert snr_db(reference[:n], other[0, :n]) < 1  # a different clip


# ---------------------------------------------------------------------------------------------------------
# Empty, truncated and corrupt files
# ---------------------------------------------------------------------------------------------------------


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    for fn in (audio.sniff_format, audio.probe, audio.decode):
        raises(EMPTY_FILE, fn, path)


def test_wav_without_samples_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 16_000, subtype="PCM_16")
    assert path.stat().st_size > 0
    raises(EMPTY_FILE, audio.probe, path)
    raises(EMPTY_FILE, audio.decode, path)


def test_truncated_wav_is_invalid_format(tmp_path: Path) -> None:
    """libsndfile would return the half that is present; the product must say the file is incomplete."""
    data = (FIXTURES / "speech_16k_mono.wav").read_bytes()
    path = tmp_path / "truncated.wav"
    path.write_bytes(data[: len(data) // 2])
    for fn in (audio.probe, audio.decode):
        error = raises(INVALID_FORMAT, fn, path)
        assert error.details["reason"] == "truncated"
        assert "truncated" in error.message
    path.write_bytes(data[:30])  # not even a complete header
    raises(INVALID_FORMAT, audio.probe, path)


def test_truncated_flac_is_invalid_format(tmp_path: Path) -> None:
    data = (FIXTURES / "speech_44k_stereo.flac").read_bytes()
    path = tmp_path / "truncated.flac"
    path.write_bytes(data[: len(data) * 2 // 3])
    raises(INVALID_FORMAT, audio.probe, path)
    raises(INVALID_FORMAT, audio.decode, path)


def test_truncated_m4a_is_invalid_format(tmp_path: Path) -> None:
    # The fixture has its index (moov) at the end: cut, it has no index at all.
    data = (FIXTURES / "speech.m4a").read_bytes()
    path = tmp_path / "cut_index.m4a"
    path.write_bytes(data[: len(data) // 2])
    raises(INVALID_FORMAT, audio.probe, path)
    # encode() puts the index first (faststart): cut, the index outlives the samples it points to.
    source = tmp_path / "whole.m4a"
    audio.encode(np.tile(tone(440, 48_000, 3.0), (2, 1)), 48_000, "m4a", source)
    data = source.read_bytes()
    path = tmp_path / "cut_samples.m4a"
    path.write_bytes(data[: len(data) // 2])
    raises(INVALID_FORMAT, audio.probe, path)
    raises(INVALID_FORMAT, audio.decode, path)


@pytest.mark.parametrize("magic", [b"fLaC", b"OggS", b"\x00\x00\x00\x18ftypM4A ", b"\xff\xfb\x90\x00"])
def test_garbage_behind_magic_number_is_invalid_format(tmp_path: Path, magic: bytes) -> None:
    path = tmp_path / "garbage.bin"
    path.write_bytes(magic + bytes(range(256)) * 20)
    raises(INVALID_FORMAT, audio.probe, path)
    raises(INVALID_FORMAT, audio.decode, path)


def test_mp4_without_audio_is_no_audio_track(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    assert audio.sniff_format(path) == "m4a"
    raises(NO_AUDIO_TRACK, audio.probe, path)
    raises(NO_AUDIO_TRACK, audio.decode, path)


# ---------------------------------------------------------------------------------------------------------
# Duration limits and decompression bombs
# ---------------------------------------------------------------------------------------------------------


def test_duration_limit_has_a_small_tolerance() -> None:
    path = FIXTURES / "speech.mp3"  # 3.85 s
    assert (
        audio.probe(path, max_duration_seconds=3.5).duration_seconds < 3.5 + audio.DURATION_TOLERANCE_SECONDS
    )
    error = raises(AUDIO_TOO_LONG, audio.probe, path, max_duration_seconds=3.0)
    assert error.details["max_duration_seconds"] == 3.0
    raises(AUDIO_TOO_LONG, audio.decode, FIXTURES / "speech_16k_mono.wav", max_duration_seconds=3.0)


def test_flac_bomb_rejected_from_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.flac"
    path.write_bytes(silent_flac(3 * 3600))  # three hours of silence
    assert path.stat().st_size < 200_000
    error = raises(AUDIO_TOO_LONG, audio.probe, path, max_duration_seconds=600)
    assert error.details["duration_seconds"] == pytest.approx(3 * 3600)
    raises(AUDIO_TOO_LONG, audio.decode, path, max_duration_seconds=600)
    # Without a limit probe only reads the header: it reports the truth.
    assert audio.probe(path).duration_seconds == pytest.approx(3 * 3600)


def test_flac_bomb_without_length_is_counted_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.flac"
    path.write_bytes(silent_flac(3 * 3600, declared_samples=0))  # STREAMINFO: length unknown
    error = raises(AUDIO_TOO_LONG, audio.probe, path, max_duration_seconds=60)
    assert error.details["duration_is_lower_bound"] is True
    assert error.details["duration_seconds"] < 3600  # it stopped counting early
    raises(AUDIO_TOO_LONG, audio.decode, path, max_duration_seconds=60)
    short = tmp_path / "short.flac"
    short.write_bytes(silent_flac(2.0, declared_samples=0))
    assert audio.probe(short, max_duration_seconds=60).duration_seconds == pytest.approx(2.0)
    assert audio.decode(short, max_duration_seconds=60)[0].shape == (1, 32_000)


def test_mp3_whose_header_lies_is_counted_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "liar.mp3"
    lying_mp3(path)
    assert path.stat().st_size < 1_200_000
    with av.open(str(path)) as container:  # the premise: FFmpeg's header-based length is 2 s
        stream = container.streams.audio[0]
        assert float(stream.duration * stream.time_base) < 3
    error = raises(AUDIO_TOO_LONG, audio.probe, path, max_duration_seconds=60)
    assert error.details["duration_is_lower_bound"] is True
    error = raises(AUDIO_TOO_LONG, audio.decode, path, max_duration_seconds=60)
    assert error.details["duration_seconds"] <= 60 + audio.DURATION_TOLERANCE_SECONDS + 0.1
    # No limit: counted in full (2 s + 100 x 10 s, each 10 s chunk with its own encoder delay and padding).
    assert 1002 <= audio.probe(path).duration_seconds < 1015


def test_bad_stream_parameters_are_invalid_format(tmp_path: Path) -> None:
    path = tmp_path / "many.wav"
    sf.write(path, np.zeros((100, audio.MAX_CHANNELS + 1), np.float32), 16_000)
    raises(INVALID_FORMAT, audio.probe, path)
    path = tmp_path / "slow.wav"
    sf.write(path, np.zeros((100, 1), np.float32), 1000)
    raises(INVALID_FORMAT, audio.decode, path)


# ---------------------------------------------------------------------------------------------------------
# Signal helpers
# ---------------------------------------------------------------------------------------------------------


def test_to_mono() -> None:
    stereo = np.stack([np.ones(10), -np.ones(10) * 0.5]).astype(np.float64)
    mono = audio.to_mono(stereo)
    assert mono.shape == (10,) and mono.dtype == np.float32
    assert np.allclose(mono, 0.25)
    assert audio.to_mono(np.ones(5)).shape == (5,)


def test_resample_keeps_passband_and_removes_what_would_alias() -> None:
    middle = slice(2000, -2000)  # ignore the filter's edge transients
    kept = audio.resample(tone(7000, 44_100, 1.0), 44_100, 16_000)
    assert kept.dtype == np.float32 and kept.shape == (16_000,)
    assert rms(kept[middle]) == pytest.approx(0.5 / np.sqrt(2), rel=0.06)  # within ~0.5 dB
    removed = audio.resample(tone(10_000, 44_100, 1.0), 44_100, 16_000)
    # Naive decimation would fold 10 kHz onto 6 kHz at full level; the anti-alias filter leaves < -60 dB.
    assert rms(removed[middle]) < 0.5 / np.sqrt(2) * 1e-3


def test_resample_shapes_lengths_and_identity() -> None:
    x = np.random.default_rng(0).standard_normal((2, 44_101)).astype(np.float64)
    y = audio.resample(x, 44_100, 16_000)
    assert y.shape == (2, 16_000) and y.dtype == np.float32
    assert audio.resample(x, 44_100, 16_000, num_samples=16_005).shape == (2, 16_005)
    assert audio.resample(x[0], 44_100, 16_000, num_samples=15_000).shape == (15_000,)
    same = audio.resample(x, 44_100, 44_100)
    assert same.dtype == np.float32 and np.allclose(same, x, atol=1e-6)
    # Down and back up returns to the original length when asked (what watermark embedding needs).
    back = audio.resample(audio.resample(x[0], 44_100, 16_000), 16_000, 44_100, num_samples=x.shape[1])
    assert back.shape == (44_101,)


# ---------------------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------------------

# fmt, sample rate, channels, minimum SNR in dB of decode(encode(x)) against x (speech). Measured on this
# build: PCM16 ~74-81 dB, Vorbis 28-31, MP3 51-67 (MPEG-1 rates) / ~25 (MPEG-2 rates), AAC 29-33. The
# thresholds also prove sample alignment: the same comparison shifted by one sample gives 8-16 dB.
ROUND_TRIPS = [
    ("wav", 44_100, 2, 70),
    ("wav", 16_000, 1, 70),
    ("flac", 44_100, 2, 70),
    ("flac", 22_050, 1, 70),
    ("ogg", 44_100, 2, 22),
    ("ogg", 16_000, 1, 22),
    ("mp3", 44_100, 2, 40),
    ("mp3", 48_000, 1, 40),
    ("mp3", 16_000, 1, 20),
    ("mp3", 22_050, 2, 20),
    ("m4a", 48_000, 2, 22),
    ("m4a", 44_100, 1, 22),
    ("m4a", 16_000, 1, 22),
]


@pytest.fixture(scope="module")
def speech_stereo() -> tuple[np.ndarray, int]:
    return audio.decode(FIXTURES / "speech_44k_stereo.flac")


@pytest.mark.parametrize(("fmt", "sr", "channels", "min_snr"), ROUND_TRIPS)
def test_round_trip_keeps_rate_channels_length(
    tmp_path: Path, speech_stereo: tuple[np.ndarray, int], fmt: str, sr: int, channels: int, min_snr: float
) -> None:
    source, source_sr = speech_stereo
    x = audio.resample(source[:channels], source_sr, sr)
    x = x[:, : x.shape[1] - 7]  # an odd length, not a multiple of any codec frame
    path = tmp_path / f"out{audio.FILE_EXTENSIONS[fmt]}"
    audio.encode(x, sr, fmt, path)
    assert audio.sniff_format(path) == fmt
    info = audio.probe(path)
    assert (info.format, info.sample_rate, info.channels) == (fmt, sr, channels)
    assert info.duration_seconds * sr == pytest.approx(x.shape[1], abs=1)
    y, rate = audio.decode(path)
    assert rate == sr
    assert y.shape == x.shape  # sample-exact length: encoder delay and padding are removed
    assert snr_db(x, y) > min_snr  # and aligned: a delay of even one sample would cost most of this


def test_long_vorbis_encode(tmp_path: Path) -> None:
    """Regression: libsndfile's Vorbis writer segfaults on a minute of stereo written in one call."""
    x = np.stack([tone(440, 44_100, 70.0, 0.3), tone(660, 44_100, 70.0, 0.3)])
    path = tmp_path / "long.ogg"
    audio.encode(x, 44_100, "ogg", path)
    assert audio.decode(path)[0].shape == x.shape


def test_encode_clips_and_cleans(tmp_path: Path) -> None:
    x = np.array([[0.0, 1.5, -3.0, np.nan, np.inf, 0.25] * 100], dtype=np.float32)
    for fmt in ("wav", "flac"):
        path = tmp_path / f"clipped.{fmt}"
        audio.encode(x, 16_000, fmt, path)
        y, _ = audio.decode(path)
        expected = np.clip(np.nan_to_num(x, posinf=1.0), -1, 1)
        assert np.allclose(y, expected, atol=1 / 32768 + 1e-7)  # clipped, not wrapped around


def test_encode_keeps_lossless_subtype(tmp_path: Path) -> None:
    x = (tone(440, 16_000, 0.5) * 0.9)[None, :]
    cases = [
        ("wav", None, "PCM_16"),
        ("wav", "PCM_24", "PCM_24"),
        ("wav", "FLOAT", "FLOAT"),
        ("wav", "ULAW", "PCM_16"),
        ("flac", "PCM_24", "PCM_24"),
        ("flac", "FLOAT", "PCM_24"),
        ("flac", None, "PCM_16"),
    ]
    for fmt, subtype, expected in cases:
        path = tmp_path / f"out.{fmt}"
        audio.encode(x, 16_000, fmt, path, subtype=subtype)
        assert audio.probe(path).subtype == expected, (fmt, subtype)
    audio.encode(x, 16_000, "wav", tmp_path / "f.wav", subtype="FLOAT")
    assert np.array_equal(audio.decode(tmp_path / "f.wav")[0], x)


def test_encode_accepts_mono_vector(tmp_path: Path) -> None:
    audio.encode(tone(440, 16_000, 0.5), 16_000, "ogg", tmp_path / "mono.ogg")
    assert audio.decode(tmp_path / "mono.ogg")[0].shape == (1, 8000)


def test_encode_refuses_what_the_codec_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "out.mp3"
    raises(PROCESSING_FAILED, audio.encode, np.zeros((1, 1000), np.float32), 96_000, "mp3", path)
    raises(PROCESSING_FAILED, audio.encode, np.zeros((3, 1000), np.float32), 48_000, "mp3", path)
    raises(PROCESSING_FAILED, audio.encode, np.zeros((1, 0), np.float32), 48_000, "wav", tmp_path / "e.wav")
    raises(INVALID_FORMAT, audio.encode, np.zeros((1, 10), np.float32), 48_000, "aiff", tmp_path / "x")
    assert not path.exists()
    with pytest.raises(ValueError):
        audio.encode(np.zeros((1000, 2), np.float32), 48_000, "wav", tmp_path / "t.wav")  # transposed


def test_can_encode() -> None:
    assert audio.can_encode("mp3", 44_100, 2)
    assert not audio.can_encode("mp3", 96_000, 2)
    assert not audio.can_encode("mp3", 44_100, 3)
    assert audio.can_encode("m4a", 96_000, 6)
    assert not audio.can_encode("m4a", 192_000, 2)
    assert audio.can_encode("flac", 192_000, 8)
    assert audio.can_encode(".WAV", 8_000, 1)
    assert not audio.can_encode("aiff", 44_100, 2)


def test_output_format_for() -> None:
    for fmt in audio.SUPPORTED_INPUT_FORMATS:
        assert audio.output_format_for(fmt) == fmt
    assert audio.output_format_for("mp3", "FLAC") == "flac"
    assert audio.output_format_for("wav", ".mp4") == "m4a"
    assert audio.output_format_for("m4a", sample_rate=192_000, channels=2) == "flac"  # e.g. hi-res ALAC
    assert audio.output_format_for("something") == "flac"
    raises(INVALID_FORMAT, audio.output_format_for, "wav", "aiff")
    raises(INVALID_FORMAT, audio.output_format_for, "wav", "mp3", sample_rate=96_000, channels=2)


def test_constants_are_consistent() -> None:
    assert set(audio.OUTPUT_FORMATS) == set(audio.CONTENT_TYPES) == set(audio.FILE_EXTENSIONS)
    assert set(audio.SUPPORTED_INPUT_FORMATS) == set(audio.OUTPUT_FORMATS)
    assert all(ext == f".{fmt}" for fmt, ext in audio.FILE_EXTENSIONS.items())
    assert audio.CONTENT_TYPES["mp3"] == "audio/mpeg"


def test_module_stays_light() -> None:
    """The web process probes uploads with this module: it must not drag in torch or Django."""
    code = (
        "import sys, media_ops.audio\n"
        "heavy = [m for m in ('torch', 'django', 'funasr', 'audioseal') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
