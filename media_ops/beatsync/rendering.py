"""Writing the result: ``render`` puts the music under the video's picture in an MP4, and ``RenderInfo``.

Why this module exists: muxing is the other half of beat-sync and has its own concerns: copying the picture
packet for packet where the codec allows it (else re-encoding to H.264), cutting on keyframes when trimming
silence, and encoding the AAC soundtrack just ahead of the video so the file is properly interleaved.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from media_ops.beatsync.alignment import ANALYSIS_RATE
from media_ops.beatsync.progress import Progress, _reporter
from media_ops.beatsync.streams import _codec_name, _decode_audio, _main_video_stream, _open_input, _Track
from media_ops.errors import INVALID_FORMAT, NO_AUDIO_TRACK, PROCESSING_FAILED, MediaError

# Picture codecs that play from an MP4 in browsers and phones; anything else is re-encoded to H.264.
MP4_COPYABLE_VIDEO_CODECS: frozenset[str] = frozenset({"h264", "hevc", "mpeg4", "av1", "vp9"})

# trim_silence: a 50 ms block is "sound" when its RMS is within SILENCE_BELOW_PEAK_DB of the recording's
# loud level (95th percentile of block levels) and above SILENCE_FLOOR_DBFS.
SILENCE_BLOCK_SECONDS = 0.05
SILENCE_BELOW_PEAK_DB = 35.0
SILENCE_FLOOR_DBFS = -60.0

OUTPUT_AUDIO_RATES = (44100, 48000)


@dataclass(frozen=True)
class RenderInfo:
    path: str
    duration_seconds: float  # video stream duration of the output
    size_bytes: int
    video_codec: str
    video_copied: bool  # True: packets copied bit-for-bit; False: re-encoded to H.264
    audio_codec: str
    audio_sample_rate: int
    audio_channels: int
    source_start_seconds: float  # video time of the output's first frame (> 0 only when trimmed)
    source_end_seconds: float
    trimmed: bool
    silence_span_seconds: tuple[float, float] | None  # the recording's non-silent span, when trimming

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["silence_span_seconds"] = list(self.silence_span_seconds) if self.silence_span_seconds else None
        return out


@dataclass(frozen=True)
class _VideoIndex:
    """Packet timing of the video stream (demuxed, not decoded), in the stream's time base."""

    time_base: Fraction
    start_pts: int  # video time 0
    end_pts: int  # end of the last frame
    keyframes: list[int]  # pts of keyframes, ascending


def _index_video(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> _VideoIndex:
    default_duration = 0
    rate = stream.average_rate or stream.guessed_rate
    if rate:
        default_duration = max(1, int(round(1 / (rate * stream.time_base))))
    first: int | None = None
    end: int | None = None
    keyframes: list[int] = []
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        first = packet.pts if first is None else min(first, packet.pts)
        frame_end = packet.pts + (packet.duration or default_duration)
        end = frame_end if end is None else max(end, frame_end)
        if packet.is_keyframe:
            keyframes.append(packet.pts)
    if first is None or end is None:
        raise MediaError(INVALID_FORMAT, "The video stream has no frames.")
    start = stream.start_time if stream.start_time is not None else first
    return _VideoIndex(stream.time_base, start, end, sorted(keyframes))


def render(
    video_path: str | os.PathLike[str],
    music_path: str | os.PathLike[str],
    offset_seconds: float,
    out_path: str | os.PathLike[str],
    *,
    trim_silence: bool = False,
    progress: Progress | None = None,
) -> RenderInfo:
    """Write an MP4: the video's picture, with the music (AAC) placed so music time t plays at t + offset.

    The picture is copied packet for packet when its codec plays from MP4 (H.264, HEVC, MPEG-4, AV1,
    VP9), else re-encoded to H.264. The music is cut or padded with silence to cover exactly the video.

    ``trim_silence``: the output is cut to the span where the *recording* (the video's own soundtrack)
    is not silent: 50 ms blocks within 35 dB of the recording's loud level (95th percentile) and above
    -60 dBFS; the span runs from the first such block to the end of the last. Picture cuts snap outward
    to keyframes so the copy stays decodable without re-encoding: the output starts at the last keyframe
    at or before the span start and ends just before the first keyframe at or after the span end (or at
    the video's end), so up to one keyframe interval of silence may remain at either side.
    """
    report = _reporter(progress)
    video_path, music_path, out_path = os.fspath(video_path), os.fspath(music_path), os.fspath(out_path)
    with _open_input(video_path) as vin:
        vstream = _main_video_stream(vin)
        if vstream is None:
            raise MediaError(INVALID_FORMAT, "The video file has no video stream.")
        index = _index_video(vin, vstream)
    tb = index.time_base
    cut_start, cut_end = index.start_pts, index.end_pts
    span: tuple[float, float] | None = None
    if trim_silence:
        report(5, "finding silence")
        recording = _decode_audio(video_path, ANALYSIS_RATE, "mono", role="video", on_video_timeline=True)
        span = _sound_span(recording)
        if span is not None:
            cut_start, cut_end = _keyframe_cut(index, span)
    report(15, "decoding the music")
    rate, layout = _output_format(music_path)
    music = _decode_audio(music_path, rate, layout, role="music", on_video_timeline=False)
    source_start = float((cut_start - index.start_pts) * tb)
    out_seconds = float((cut_end - cut_start) * tb)
    soundtrack = _place_music(music, offset_seconds - source_start, out_seconds)
    report(30, "writing the video")
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    partial = out_path + ".part"  # never leave a truncated MP4 under the final name
    try:
        copied, codec = _write_mp4(video_path, partial, soundtrack, music.rate, cut_start, cut_end, report)
        os.replace(partial, out_path)
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise MediaError(PROCESSING_FAILED, "Could not write the output video.", {"error": str(exc)}) from exc
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    report(100, "rendered")
    return RenderInfo(
        path=out_path,
        duration_seconds=round(out_seconds, 6),
        size_bytes=os.path.getsize(out_path),
        video_codec=codec,
        video_copied=copied,
        audio_codec="aac",
        audio_sample_rate=music.rate,
        audio_channels=soundtrack.shape[0],
        source_start_seconds=round(source_start, 6),
        source_end_seconds=round(float((cut_end - index.start_pts) * tb), 6),
        trimmed=(cut_start, cut_end) != (index.start_pts, index.end_pts),
        silence_span_seconds=(round(span[0], 3), round(span[1], 3)) if span else None,
    )


def _output_format(music_path: str) -> tuple[int, str]:
    """AAC at the music's own rate when that is 44.1/48 kHz (else 48 kHz); mono stays mono, else stereo."""
    with _open_input(music_path) as container:
        if not container.streams.audio:
            raise MediaError(NO_AUDIO_TRACK, "The music has no audio track.", {"role": "music"})
        ctx = container.streams.audio[0].codec_context
        rate, channels = ctx.sample_rate, ctx.channels
    return (rate if rate in OUTPUT_AUDIO_RATES else 48000), ("mono" if channels == 1 else "stereo")


def _place_music(music: _Track, shift_seconds: float, out_seconds: float) -> np.ndarray:
    """Output samples for [0, out_seconds): output time u plays music time u - shift_seconds."""
    n_out = int(round(out_seconds * music.rate))
    out = np.zeros((music.samples.shape[0], n_out), dtype=np.float32)
    first = int(round(-shift_seconds * music.rate))  # music sample under output sample 0
    src_lo = max(0, first)
    dst_lo = src_lo - first
    length = min(music.samples.shape[1] - src_lo, n_out - dst_lo)
    if length > 0:
        out[:, dst_lo : dst_lo + length] = music.samples[:, src_lo : src_lo + length]
    return out


def _sound_span(recording: _Track) -> tuple[float, float] | None:
    """Video-time span of the recording from its first to its last non-silent block (see render)."""
    x = recording.samples[0]
    block = int(SILENCE_BLOCK_SECONDS * recording.rate)
    n = x.size // block
    if n == 0:
        return None
    rms = np.sqrt(np.mean(x[: n * block].reshape(n, block).astype(np.float64) ** 2, axis=1))
    level = 20 * np.log10(rms + 1e-12)
    threshold = max(float(np.percentile(level, 95)) - SILENCE_BELOW_PEAK_DB, SILENCE_FLOOR_DBFS)
    active = np.flatnonzero(level > threshold)
    if active.size == 0:
        return None
    start = recording.start_seconds + active[0] * SILENCE_BLOCK_SECONDS
    end = recording.start_seconds + (active[-1] + 1) * SILENCE_BLOCK_SECONDS
    return float(start), float(end)


def _keyframe_cut(index: _VideoIndex, span: tuple[float, float]) -> tuple[int, int]:
    """Snap the span outward to keyframes (pts, stream time base): [last key <= start, first key >= end)."""
    start_pts = index.start_pts + int(math.floor(span[0] / index.time_base))
    end_pts = index.start_pts + int(math.ceil(span[1] / index.time_base))
    keys = index.keyframes or [index.start_pts]
    before = [k for k in keys if k <= start_pts]
    cut_start = max(before) if before else min(keys)
    after = [k for k in keys if k >= end_pts and k > cut_start]
    cut_end = min(after) if after else index.end_pts
    return cut_start, cut_end


def _write_mp4(
    video_path: str,
    out_path: str,
    soundtrack: np.ndarray,
    rate: int,
    cut_start: int,
    cut_end: int,
    report: Callable[[int, str], None],
) -> tuple[bool, str]:
    """Mux the (copied or re-encoded) picture packets in [cut_start, cut_end) with the AAC soundtrack.

    Audio is encoded just ahead of the video as we go, so the file is properly interleaved and the muxer
    never buffers the whole video waiting for audio.
    """
    with (
        _open_input(video_path) as vin,
        av.open(out_path, "w", format="mp4", container_options={"movflags": "+faststart"}) as out,
    ):
        vstream = _main_video_stream(vin)
        assert vstream is not None
        codec = _codec_name(vstream)
        copy = codec in MP4_COPYABLE_VIDEO_CODECS
        tb = vstream.time_base
        if copy:
            out_video = out.add_stream_from_template(vstream, opaque=True)  # decoder-only codecs (AV1)
            if codec == "hevc":
                out_video.codec_context.codec_tag = "hvc1"  # what Apple players require
        else:
            out_video = _h264_stream(out, vstream)
            rotation = _source_rotation(video_path)
            if rotation:
                out_video.set_display_rotation(rotation)  # a copy keeps it; a re-encode must restate it
        layout = "stereo" if soundtrack.shape[0] == 2 else "mono"
        out_audio = out.add_stream("aac", rate=rate, layout=layout)
        out_audio.bit_rate = 192_000 if layout == "stereo" else 128_000
        audio = _AacFeeder(out, out_audio, soundtrack, rate)
        total = max(1, cut_end - cut_start)
        decoder = vstream.codec_context
        reached = cut_start  # latest picture written so far (packets come in decode order, pts jump back)
        for packet in _packets_in_cut(vin, vstream, cut_start, cut_end):
            reached = max(reached, packet.pts)
            report(30 + int(65 * min(1.0, (reached - cut_start) / total)), "writing the video")
            if copy:
                stamp = packet.dts if packet.dts is not None else packet.pts
                audio.feed_until(float((stamp - cut_start) * tb))
                packet.pts -= cut_start
                if packet.dts is not None:
                    packet.dts -= cut_start
                packet.stream = out_video
                out.mux(packet)
            else:
                for frame in decoder.decode(packet):
                    _encode_frame(out, out_video, frame, cut_start, cut_end, tb, audio)
        if not copy:
            for frame in decoder.decode(None):  # pictures the decoder still holds (B-frame reordering)
                _encode_frame(out, out_video, frame, cut_start, cut_end, tb, audio)
            for enc_packet in out_video.encode(None):
                out.mux(enc_packet)
        audio.finish()
    return copy, (codec if copy else "h264")


def _packets_in_cut(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, cut_start: int, cut_end: int
) -> Iterator[av.Packet]:
    """Video packets in decode order from the keyframe at ``cut_start`` up to the keyframe at ``cut_end``.

    Pictures before the opening keyframe, and leading pictures after it in decode order that display
    before it (open-GOP streams), would reference frames we drop, so they are skipped too.
    """
    started = False
    for packet in container.demux(stream):
        if packet.pts is None:  # the demuxer's end-of-stream packet, or a broken one
            continue
        if not started:
            if not (packet.is_keyframe and packet.pts >= cut_start):
                continue
            started = True
        elif packet.is_keyframe and packet.pts >= cut_end:
            return
        if packet.pts >= cut_start:
            yield packet


def _h264_stream(out: av.container.OutputContainer, source: av.video.stream.VideoStream):
    rate = source.average_rate or source.guessed_rate or Fraction(30)
    stream = out.add_stream("libx264", rate=rate)
    stream.width = source.codec_context.width - source.codec_context.width % 2
    stream.height = source.codec_context.height - source.codec_context.height % 2
    stream.pix_fmt = "yuv420p"
    stream.time_base = source.time_base
    stream.codec_context.time_base = source.time_base
    stream.codec_context.options = {"preset": "veryfast", "crf": "20"}
    return stream


def _source_rotation(video_path: str) -> int:
    """The display rotation (degrees, counter-clockwise) phones put on portrait videos; 0 when none."""
    with _open_input(video_path) as container:
        stream = _main_video_stream(container)
        if stream is None:
            return 0
        for frame in container.decode(stream):
            return int(frame.rotation or 0)
    return 0


def _encode_frame(
    out: av.container.OutputContainer,
    out_video: av.video.stream.VideoStream,
    frame: av.VideoFrame,
    cut_start: int,
    cut_end: int,
    tb: Fraction,
    audio: _AacFeeder,
) -> None:
    if frame.pts is None or frame.pts < cut_start or frame.pts >= cut_end:
        return
    image = frame.reformat(width=out_video.codec_context.width, height=out_video.codec_context.height, format="yuv420p")
    image.pts = frame.pts - cut_start
    image.time_base = tb
    for enc_packet in out_video.encode(image):
        audio.feed_until(float((enc_packet.dts if enc_packet.dts is not None else 0) * enc_packet.time_base))
        out.mux(enc_packet)


class _AacFeeder:
    """Encodes the soundtrack in 1024-sample frames on demand, up to a given output time."""

    FRAME = 1024
    LEAD_SECONDS = 0.5

    def __init__(self, out: av.container.OutputContainer, stream, samples: np.ndarray, rate: int) -> None:
        self.out, self.stream, self.samples, self.rate = out, stream, samples, rate
        self.layout = "stereo" if samples.shape[0] == 2 else "mono"
        self.pos = 0

    def feed_until(self, seconds: float) -> None:
        target = min(self.samples.shape[1], int((seconds + self.LEAD_SECONDS) * self.rate))
        while self.pos < target:
            chunk = np.ascontiguousarray(np.clip(self.samples[:, self.pos : self.pos + self.FRAME], -1, 1))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
            frame.sample_rate = self.rate
            frame.pts = self.pos
            frame.time_base = Fraction(1, self.rate)
            self.pos += chunk.shape[1]
            for packet in self.stream.encode(frame):
                self.out.mux(packet)

    def finish(self) -> None:
        self.feed_until(self.samples.shape[1] / self.rate)
        for packet in self.stream.encode(None):
            self.out.mux(packet)
