"""Beat-sync engine: probing, alignment accuracy and honesty, rendering, silence trimming, the whole job.

Fixtures are synthesised once per module (testing.media); ground truth comes from the analytic music, not
from the engine's own decoder, so a consistent bias in the engine (e.g. codec delay) would show up.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from media_ops import beatsync
from media_ops.errors import (
    ALIGNMENT_FAILED,
    AUDIO_TOO_LONG,
    EMPTY_FILE,
    FILE_TOO_LARGE,
    INVALID_FORMAT,
    NO_AUDIO_TRACK,
    MediaError,
)
from testing import media as mf

RATE = 16000
FPS = 25
POS_OFFSET = 1.37  # music (10 s) starts 1.37 s into a 12 s video: music shorter than the video
NEG_OFFSET = -2.61  # a 9 s video starts 2.61 s into the music (16 s): music longer than the video
QUIET_OFFSET = 1.6  # 14 s video, quiet room, music plays 1.6 .. 11.6 s


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("beatsync")
    return {
        "track": mf.make_music(d / "track.mp3", duration_s=10.0, seed=1),
        "long": mf.make_music(d / "long.m4a", duration_s=16.0, seed=2),
        "other": mf.make_music(d / "other.wav", duration_s=10.0, seed=7),
        "pos": mf.make_dance_video(
            d / "pos.mp4", offset_s=POS_OFFSET, music_duration_s=10.0, video_duration_s=12.0, seed=1
        ),
        "neg": mf.make_dance_video(
            d / "neg.mp4",
            offset_s=NEG_OFFSET,
            music_duration_s=16.0,
            video_duration_s=9.0,
            seed=2,
            codec="mpeg4",
        ),
        "quiet": mf.make_dance_video(
            d / "quiet.mp4",
            offset_s=QUIET_OFFSET,
            music_duration_s=10.0,
            video_duration_s=14.0,
            seed=1,
            noise_db=-50.0,
            gop=25,
        ),
        "mjpeg": mf.make_dance_video(
            d / "cam.mov",
            offset_s=-0.5,
            music_duration_s=10.0,
            video_duration_s=3.0,
            seed=1,
            codec="mjpeg",
            rotation=90,
        ),
        "mute": mf.make_silent_video(d / "mute.mp4", duration_s=2.0),
        "fake": mf.make_text_file(d / "fake.mp4"),
        "dir": d,
    }


# ------------------------------------------------------------------------------------------- helpers


def _decode_mono(path: Path, rate: int = RATE) -> np.ndarray:
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
    chunks = []
    with av.open(str(path)) as c:
        for frame in c.decode(audio=0):
            chunks.extend(f.to_ndarray()[0] for f in resampler.resample(frame))
    chunks.extend(f.to_ndarray()[0] for f in resampler.resample(None))
    return np.concatenate(chunks)


def _lag_ms(actual: np.ndarray, expected: np.ndarray, rate: int = RATE, max_ms: float = 200.0) -> float:
    """Where ``actual`` best matches ``expected`` (whitened cross-correlation): > 0 means actual is late."""
    n = min(actual.size, expected.size)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    cross = np.fft.rfft(actual[:n], size) * np.conj(np.fft.rfft(expected[:n], size))
    freqs = np.fft.rfftfreq(size, 1 / rate)
    cross = np.where((freqs > 100) & (freqs < 7000), cross / (np.abs(cross) + 1e-12), 0)
    corr = np.fft.irfft(cross, size)
    lags = np.arange(-int(max_ms * rate / 1000), int(max_ms * rate / 1000) + 1)
    return 1000 * lags[int(np.argmax(corr[lags % size]))] / rate


def _video_packets(path: Path) -> list[tuple[int, int | None, str]]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return [(p.pts, p.dts, hashlib.sha1(bytes(p)).hexdigest()) for p in c.demux(stream) if p.pts is not None]


def _video_seconds(path: Path) -> float:
    """Video stream duration from its packets: end of the last frame minus start of the first."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        spans = [(p.pts, p.pts + p.duration) for p in c.demux(stream) if p.pts is not None]
        return float((max(e for _, e in spans) - min(s for s, _ in spans)) * stream.time_base)


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _expected_soundtrack(seed: int, music_s: float, offset: float, start: float, length: float) -> np.ndarray:
    """Ground truth: output time u plays music time u + start - offset (silence outside the track)."""
    return mf.synth_music(music_s, RATE, seed=seed, start_s=start - offset, length_s=length, channels=1)[0]


# ------------------------------------------------------------------------------------------- probing


def test_probe_names_containers_from_their_bytes(media: dict[str, Path]) -> None:
    flac = mf.make_music(media["dir"] / "short.flac", duration_s=1.0)
    disguised = media["dir"] / "song_really_mp3.mp4"
    shutil.copy(media["track"], disguised)
    found = {
        name: beatsync.probe_media(path).container
        for name, path in {
            "track": media["track"],
            "long": media["long"],
            "other": media["other"],
            "flac": flac,
            "pos": media["pos"],
            "mjpeg": media["mjpeg"],
            "disguised": disguised,
        }.items()
    }
    assert found == {
        "track": "MP3",
        "long": "M4A",
        "other": "WAV",
        "flac": "FLAC",
        "pos": "MP4",
        "mjpeg": "MOV",
        "disguised": "MP3",
    }
    assert beatsync.ACCEPTED_CONTAINERS == {"MP4", "MOV", "M4A", "MP3", "WAV", "FLAC"}


def test_probe_reports_streams(media: dict[str, Path]) -> None:
    info = beatsync.probe_media(media["pos"])
    assert (info.has_video, info.has_audio) == (True, True)
    assert (info.video_codec, info.width, info.height, info.fps) == ("h264", 320, 240, 25.0)
    assert (info.audio_codec, info.audio_sample_rate, info.audio_channels) == ("aac", 48000, 1)
    assert info.duration_seconds == pytest.approx(12.0, abs=0.05)
    music = beatsync.probe_media(media["track"])
    assert (music.has_video, music.has_audio, music.audio_channels) == (False, True, 2)
    assert music.duration_seconds == pytest.approx(10.0, abs=0.05)
    assert json.loads(json.dumps(info.to_dict()))["container"] == "MP4"


def test_probe_rejects_text_named_mp4(media: dict[str, Path]) -> None:
    with pytest.raises(MediaError) as err:
        beatsync.probe_media(media["fake"])
    assert err.value.code == INVALID_FORMAT


def test_probe_rejects_containers_outside_the_list(media: dict[str, Path]) -> None:
    mka = mf.write_audio(media["dir"] / "song.mka", mf.synth_music(1.0, 8000, seed=3), 8000)
    with av.open(str(mka)) as c:  # the file is real, decodable audio...
        assert c.streams.audio
    with pytest.raises(MediaError) as err:  # ...but Matroska is not an accepted container
        beatsync.probe_media(mka)
    assert err.value.code == INVALID_FORMAT
    assert err.value.details["format"] == "matroska,webm"


def test_probe_rejects_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError) as err:
        beatsync.probe_media(empty)
    assert err.value.code == EMPTY_FILE


def test_probe_enforces_size_limit(media: dict[str, Path]) -> None:
    size = media["pos"].stat().st_size
    assert beatsync.probe_media(media["pos"], max_bytes=size).size_bytes == size
    with pytest.raises(MediaError) as err:
        beatsync.probe_media(media["pos"], max_bytes=size - 1)
    assert err.value.code == FILE_TOO_LARGE
    assert err.value.details == {"size_bytes": size, "max_bytes": size - 1}


def test_probe_enforces_duration_limit(media: dict[str, Path]) -> None:
    assert beatsync.probe_media(media["pos"], max_duration_seconds=12.5).has_video
    with pytest.raises(MediaError) as err:
        beatsync.probe_media(media["pos"], max_duration_seconds=11.0)
    assert err.value.code == AUDIO_TOO_LONG


# ------------------------------------------------------------------------------------------- alignment


def test_align_positive_offset_music_shorter_than_video(media: dict[str, Path]) -> None:
    result = beatsync.align(media["pos"], media["track"])
    assert abs(result.offset_seconds - POS_OFFSET) < 0.010
    assert result.confidence > 0.5
    assert result.overlap_seconds == pytest.approx(10.0, abs=0.05)  # the whole track lies inside the video


def test_align_negative_offset_music_longer_than_video(media: dict[str, Path]) -> None:
    result = beatsync.align(media["neg"], media["long"])
    assert abs(result.offset_seconds - NEG_OFFSET) < 0.010
    assert result.confidence > 0.5
    assert result.overlap_seconds == pytest.approx(9.0, abs=0.05)  # the whole video lies inside the track


def test_align_refuses_unrelated_music_at_the_same_tempo(media: dict[str, Path]) -> None:
    with pytest.raises(MediaError) as err:
        beatsync.align(media["pos"], media["other"])
    assert err.value.code == ALIGNMENT_FAILED


def test_align_refuses_the_wrong_track_of_the_same_kind(media: dict[str, Path]) -> None:
    with pytest.raises(MediaError) as err:  # the 16 s track under the video made with the 10 s one
        beatsync.align(media["pos"], media["long"])
    assert err.value.code == ALIGNMENT_FAILED


def test_align_video_without_audio(media: dict[str, Path]) -> None:
    with pytest.raises(MediaError) as err:
        beatsync.align(media["mute"], media["track"])
    assert err.value.code == NO_AUDIO_TRACK


# ------------------------------------------------------------------------------------------- rendering


def test_render_copies_video_and_places_music(media: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    info = beatsync.render(media["pos"], media["track"], POS_OFFSET, out)
    assert info.video_copied and info.video_codec == "h264" and not info.trimmed
    assert _video_packets(out) == _video_packets(media["pos"])  # same pictures, bit for bit, same timing
    assert abs(_video_seconds(out) - _video_seconds(media["pos"])) <= 1 / FPS
    assert _decoded_frames(out) == 12 * FPS
    audio = _decode_mono(out)
    assert abs(audio.size / RATE - 12.0) <= 1 / FPS
    expected = _expected_soundtrack(seed=1, music_s=10.0, offset=POS_OFFSET, start=0.0, length=12.0)
    assert abs(_lag_ms(audio, expected)) <= 2.0
    assert np.corrcoef(audio[: expected.size], expected[: audio.size])[0, 1] > 0.9
    assert np.sqrt(np.mean(audio[: int(1.3 * RATE)] ** 2)) < 1e-3  # padded with silence before the music


def test_render_negative_offset_cuts_the_music(media: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "neg.mp4"
    info = beatsync.render(media["neg"], media["long"], NEG_OFFSET, out)
    assert info.video_copied and info.video_codec == "mpeg4"
    assert _video_packets(out) == _video_packets(media["neg"])
    audio = _decode_mono(out)
    expected = _expected_soundtrack(seed=2, music_s=16.0, offset=NEG_OFFSET, start=0.0, length=9.0)
    assert abs(audio.size / RATE - 9.0) <= 1 / FPS
    assert abs(_lag_ms(audio, expected)) <= 2.0
    assert np.sqrt(np.mean(audio[:RATE] ** 2)) > 0.05  # the music is already playing at the first frame


def test_render_reencodes_codecs_mp4_cannot_carry(media: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cam.mp4"
    info = beatsync.render(media["mjpeg"], media["track"], -0.5, out)
    assert not info.video_copied and info.video_codec == "h264"
    assert _decoded_frames(out) == 3 * FPS
    assert abs(_video_seconds(out) - 3.0) <= 1 / FPS
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert next(c.decode(video=0)).rotation == 90  # the portrait flag survives the re-encode
    expected = _expected_soundtrack(seed=1, music_s=10.0, offset=-0.5, start=0.0, length=3.0)
    assert abs(_lag_ms(_decode_mono(out), expected)) <= 2.0


def test_trim_silence_cuts_to_the_sound_at_keyframes(media: dict[str, Path], tmp_path: Path) -> None:
    with av.open(str(media["quiet"])) as c:
        stream = c.streams.video[0]
        keys = sorted(float(p.pts * stream.time_base) for p in c.demux(stream) if p.is_keyframe)
    music_end = QUIET_OFFSET + 10.0
    out = tmp_path / "trimmed.mp4"
    info = beatsync.render(media["quiet"], media["track"], QUIET_OFFSET, out, trim_silence=True)
    assert info.trimmed and info.video_copied
    span = info.silence_span_seconds
    assert span is not None
    assert QUIET_OFFSET - 0.1 <= span[0] <= QUIET_OFFSET + 0.1
    assert music_end - 0.1 <= span[1] <= music_end + 0.5  # the room's reverb tail counts as sound
    # Cut outward to keyframes: the last one at or before the sound starts, the first one after it ends.
    assert info.source_start_seconds == pytest.approx(max(k for k in keys if k <= span[0]))
    assert info.source_end_seconds == pytest.approx(min(k for k in keys if k >= span[1]))
    assert info.source_start_seconds > 0 and info.source_end_seconds < 14.0
    length = info.source_end_seconds - info.source_start_seconds
    assert abs(_video_seconds(out) - length) <= 1 / FPS
    assert _decoded_frames(out) == round(length * FPS)
    source = {digest for _, _, digest in _video_packets(media["quiet"])}
    assert {digest for _, _, digest in _video_packets(out)} <= source  # still a copy, not a re-encode
    expected = _expected_soundtrack(
        seed=1, music_s=10.0, offset=QUIET_OFFSET, start=info.source_start_seconds, length=length
    )
    assert abs(_lag_ms(_decode_mono(out), expected)) <= 2.0


def test_trim_silence_keeps_everything_when_the_room_is_never_quiet(media: dict[str, Path], tmp_path: Path) -> None:
    info = beatsync.render(media["pos"], media["track"], POS_OFFSET, tmp_path / "o.mp4", trim_silence=True)
    assert not info.trimmed
    assert (info.source_start_seconds, info.source_end_seconds) == (0.0, 12.0)


# ------------------------------------------------------------------------------------------- the job


def test_run_reports_progress_and_returns_json(media: dict[str, Path], tmp_path: Path) -> None:
    calls: list[tuple[int, str]] = []
    out = tmp_path / "job.mp4"
    result = beatsync.run(media["pos"], media["track"], out, progress=lambda p, m: calls.append((p, m)))
    assert json.loads(json.dumps(result)) == result
    assert abs(result["offset_seconds"] - POS_OFFSET) < 0.010
    assert 0.5 < result["confidence"] <= 1.0
    assert result["video_duration_seconds"] == pytest.approx(12.0, abs=0.05)
    assert result["output"]["video_copied"] is True and Path(result["output"]["path"]) == out
    assert out.exists()
    percents = [p for p, _ in calls]
    assert percents[0] == 0 and percents[-1] == 100 and percents == sorted(percents)
    messages = " ".join(m for _, m in calls)
    for stage in ("decoding", "correlating", "writing"):
        assert stage in messages


def test_run_fails_fast_on_a_video_without_audio(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError) as err:
        beatsync.run(media["mute"], media["track"], tmp_path / "x.mp4")
    assert err.value.code == NO_AUDIO_TRACK
    assert not (tmp_path / "x.mp4").exists()
