"""Opening uploads with PyAV and decoding their audio: what probing, alignment and rendering share.

Why this module exists: every stage opens the same containers the same way (errors mapped to MediaError,
cover art not mistaken for video), and alignment and rendering both decode a soundtrack placed on the video
timeline (0 = the first video frame), using the audio's own timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import av.error
import numpy as np

from media_ops.errors import INVALID_FORMAT, NO_AUDIO_TRACK, MediaError


def _open_input(path: str) -> av.container.InputContainer:
    try:
        return av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise MediaError(INVALID_FORMAT, "Not a readable audio or video file.", {"error": str(exc)}) from exc



def _main_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first real video stream; cover art in MP3/M4A files is a one-frame 'video' we must ignore."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _codec_name(stream: av.stream.Stream) -> str:
    return stream.codec_context.codec.canonical_name


@dataclass(frozen=True)
class _Track:
    samples: np.ndarray  # float32 (channels, n)
    rate: int
    start_seconds: float  # timeline position of samples[:, 0] (video time for recordings, 0 for music)

    @property
    def seconds(self) -> float:
        return self.samples.shape[1] / self.rate


def _decode_audio(path: str, rate: int, layout: str, *, role: str, on_video_timeline: bool) -> _Track:
    """Decode the first audio stream to float32 at ``rate``/``layout``.

    With ``on_video_timeline`` the track is placed on the video timeline (0 = first video frame) using the
    audio's own timestamps, so an audio track that starts late or early in the container is honoured.
    Corrupt packets are skipped (phones do write the odd broken frame); a file that yields no audio at all
    is refused.
    """
    with _open_input(path) as container:
        if not container.streams.audio:
            raise MediaError(NO_AUDIO_TRACK, f"The {role} has no audio track.", {"role": role})
        stream = container.streams.audio[0]
        video = _main_video_stream(container)
        anchor = _stream_start_seconds(video) if (video is not None and on_video_timeline) else None
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        bad_packets = 0
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    bad_packets += 1
                    continue
                for frame in frames:
                    if first_time is None and frame.pts is not None and frame.time_base is not None:
                        first_time = float(frame.pts * frame.time_base)
                    for out in resampler.resample(frame):
                        chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except (av.error.FFmpegError, ValueError) as exc:  # ValueError: format change mid-stream
            raise MediaError(INVALID_FORMAT, f"Could not decode the {role}'s audio.", {"error": str(exc)}) from exc
    if not chunks:
        raise MediaError(
            NO_AUDIO_TRACK, f"The {role}'s audio track is empty or unreadable.", {"bad_packets": bad_packets}
        )
    samples = np.ascontiguousarray(np.concatenate(chunks, axis=1), dtype=np.float32)
    start = 0.0
    if on_video_timeline:
        audio_start = first_time if first_time is not None else _stream_start_seconds(stream)
        start = audio_start - (anchor if anchor is not None else audio_start)
    return _Track(samples, rate, start)


def _stream_start_seconds(stream: av.stream.Stream) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)
