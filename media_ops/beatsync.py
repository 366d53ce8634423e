"""Beat-sync: put the clean studio track under a phone video of a dance filmed to that track.

The phone heard the music from a speaker: late, quieter, with room echo, crowd noise and automatic gain,
sometimes a different cut. We find where the music sits in the video's own soundtrack and replace that
soundtrack with the clean music, shifted to match.

Sign convention, used everywhere (``AlignResult.offset_seconds``, ``render``, ``run``)::

    music time t plays at video time t + offset_seconds

so a positive offset means the music starts ``offset`` seconds after the first frame of the video (the
video opens on silence or chatter); a negative offset means the video starts ``-offset`` seconds into the
music (the music was already playing when recording began). Video time 0 is the presentation time of the
video stream's first frame; music time 0 is the first decoded sample of the music file (after the codec's
encoder delay, which FFmpeg strips).

Alignment is two-stage. Coarse: multi-band onset envelopes (log band energy, half-wave rectified
difference) at 100 Hz, whose cross-correlation ignores gain, EQ and noise that are not onset-like and
tolerates echo (reflections smear energy but onsets stay onsets). The correlation covers every lag with
enough overlap, so music longer or shorter than the video both work; its COARSE_CANDIDATES highest peaks
are kept. Fine: for each candidate, GCC-PHAT between the raw 16 kHz signals within +-40 ms, the
cross-spectrum averaged over up to FINE_MAX_WINDOWS one-second windows; phase whitening gives a sharp peak
on the direct sound even with reflections, for sample-level accuracy.

Dance music is periodic, so the envelope correlation always has near-equal peaks one beat (or bar) apart,
and another track at the same tempo correlates almost as well as the right one: rhythm alone cannot be
trusted. Waveform coherence can: the fine peak of the right offset of the right track stands far above
the GCC's spread, while a beat-off offset or an unrelated track stays at the noise level. So the
candidate with the strongest fine peak wins, and is accepted only when that peak is both high
(MIN_FINE_SNR) and clearly above the runner-up candidate's (MIN_FINE_RATIO); otherwise ``ALIGNMENT_FAILED``
rather than a confident wrong offset. When the music appears at two offsets (a different cut of the
track), the stronger (usually longer) section wins.

Limits: one constant offset per video. If the speaker's clock runs fast or slow against the phone's, the
offset drifts over the video; the estimate is the one at the middle of the overlap, and drifts beyond
~150 ppm weaken the fine peak until alignment is refused. Time-stretched or re-mastered versions of the
track are not the same waveform and are refused as well.
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
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sfft

from media_ops.errors import (
    ALIGNMENT_FAILED,
    AUDIO_TOO_LONG,
    EMPTY_FILE,
    FILE_TOO_LARGE,
    INVALID_FORMAT,
    NO_AUDIO_TRACK,
    PROCESSING_FAILED,
    MediaError,
)

Progress = Callable[[int, str], None]

ACCEPTED_CONTAINERS: frozenset[str] = frozenset({"MP4", "MOV", "M4A", "MP3", "WAV", "FLAC"})

# Picture codecs that play from an MP4 in browsers and phones; anything else is re-encoded to H.264.
MP4_COPYABLE_VIDEO_CODECS: frozenset[str] = frozenset({"h264", "hevc", "mpeg4", "av1", "vp9"})

ANALYSIS_RATE = 16000  # Hz, mono: both alignment stages work on this
ENVELOPE_HOP = 160  # samples -> 100 Hz onset envelopes
ENVELOPE_WINDOW = 512  # 32 ms
BAND_EDGES_HZ = (40, 120, 250, 500, 1000, 2000, 4000, 7900)
MIN_INPUT_SECONDS = 1.0
MIN_OVERLAP_SECONDS = 3.0
PEAK_EXCLUSION_SECONDS = 0.15
COARSE_CANDIDATES = 8
FINE_SEARCH_SECONDS = 0.04
FINE_WINDOW = 16384  # samples at ANALYSIS_RATE, ~1 s
FINE_MAX_WINDOWS = 10  # more gains little, and speaker/phone clock drift would blur the peak
FINE_BAND_HZ = (100.0, 7000.0)

# Acceptance (see align): the best candidate's GCC-PHAT peak must stand MIN_FINE_SNR standard deviations
# above the GCC and MIN_FINE_RATIO times above the runner-up candidate (or FINE_NULL_SNR, the typical
# height of a no-match peak). Measured on the synthetic tracks of media_ops/tests/media_factory.py: the
# right offset scores >= ~20 even with noise 10 dB louder than the music; wrong beats and unrelated tracks
# at the same tempo and with the same drum sounds score <= ~12.
MIN_FINE_SNR = 15.0
FINE_NULL_SNR = 10.0
MIN_FINE_RATIO = 1.3
GOOD_FINE_RATIO = 2.0

# trim_silence: a 50 ms block is "sound" when its RMS is within SILENCE_BELOW_PEAK_DB of the recording's
# loud level (95th percentile of block levels) and above SILENCE_FLOOR_DBFS.
SILENCE_BLOCK_SECONDS = 0.05
SILENCE_BELOW_PEAK_DB = 35.0
SILENCE_FLOOR_DBFS = -60.0

OUTPUT_AUDIO_RATES = (44100, 48000)


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class MediaInfo:
    """What the headers say about an upload; enough to accept or refuse it before any decoding."""

    container: str  # one of ACCEPTED_CONTAINERS
    format_name: str  # FFmpeg demuxer name, for diagnostics
    size_bytes: int
    duration_seconds: float
    has_video: bool
    has_audio: bool
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AlignResult:
    """Where the music sits in the video: music time t plays at video time t + offset_seconds."""

    offset_seconds: float
    confidence: float  # 0..1: how far the match clears the acceptance bar; < ~0.5 means "barely" (see _match)
    overlap_seconds: float  # how much of the video the shifted music covers
    peak_ratio: float  # fine peak of the chosen offset / the best other candidate's (or a no-match level)
    peak_zscore: float  # fine (GCC-PHAT) peak in standard deviations of the GCC: the waveform evidence
    coarse_offset_seconds: float  # envelope-stage estimate of the chosen candidate (10 ms grid, interpolated)
    coarse_peak_ratio: float  # envelope correlation: best peak / best peak >= 150 ms away, above the median
    coarse_peak_zscore: float  # envelope correlation: best peak above the median, in robust std devs
    correlation: float  # normalised envelope correlation at the best coarse peak (-1..1)
    candidates_checked: int
    video_audio_seconds: float
    music_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


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


# --------------------------------------------------------------------------------------------- probing


def probe_media(
    path: str | os.PathLike[str],
    *,
    max_bytes: int | None = None,
    max_duration_seconds: float | None = None,
) -> MediaInfo:
    """Identify an upload from its bytes (not its name) and enforce the size and duration limits.

    Reads headers only (FFmpeg's stream probing), so it is cheap enough to run at upload time. Raises
    MediaError: EMPTY_FILE, FILE_TOO_LARGE, INVALID_FORMAT (not media, or a container we don't accept),
    AUDIO_TOO_LONG (media longer than ``max_duration_seconds``).
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise MediaError(PROCESSING_FAILED, "Could not read the file.", {"error": str(exc)}, retryable=True) from exc
    if size == 0:
        raise MediaError(EMPTY_FILE, "The file is empty.")
    if max_bytes is not None and size > max_bytes:
        raise MediaError(FILE_TOO_LARGE, "The file is too large.", {"size_bytes": size, "max_bytes": max_bytes})
    with _open_input(path) as container:
        kind = _container_kind(container.format.name, head)
        if kind is None:
            raise MediaError(
                INVALID_FORMAT,
                "Unsupported container; upload MP4, MOV, M4A, MP3, WAV or FLAC.",
                {"format": container.format.name, "accepted": sorted(ACCEPTED_CONTAINERS)},
            )
        video = _main_video_stream(container)
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise MediaError(INVALID_FORMAT, "The file has neither audio nor video.", {"format": kind})
        duration = _container_duration(container)
        info = MediaInfo(
            container=kind,
            format_name=container.format.name,
            size_bytes=size,
            duration_seconds=round(duration, 3),
            has_video=video is not None,
            has_audio=audio is not None,
            video_codec=_codec_name(video) if video is not None else None,
            width=video.codec_context.width if video is not None else None,
            height=video.codec_context.height if video is not None else None,
            fps=_fps(video) if video is not None else None,
            audio_codec=_codec_name(audio) if audio is not None else None,
            audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
        )
    if max_duration_seconds is not None and duration > max_duration_seconds:
        raise MediaError(
            AUDIO_TOO_LONG,
            "The media is too long.",
            {"duration_seconds": round(duration, 3), "max_duration_seconds": max_duration_seconds},
        )
    return info


def _open_input(path: str) -> av.container.InputContainer:
    try:
        return av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise MediaError(INVALID_FORMAT, "Not a readable audio or video file.", {"error": str(exc)}) from exc


def _container_kind(format_name: str, head: bytes) -> str | None:
    """Map FFmpeg's demuxer (chosen by content probing) to our container names.

    FFmpeg uses one demuxer for the whole ISO-BMFF family, so MP4/MOV/M4A are told apart by the ftyp
    major brand. 3GP and Motion JPEG 2000 share that demuxer but are not accepted.
    """
    names = set(format_name.split(","))
    for demuxer, kind in (("mp3", "MP3"), ("wav", "WAV"), ("flac", "FLAC")):
        if demuxer in names:
            return kind
    if not names & {"mov", "mp4"}:
        return None
    if head[4:8] != b"ftyp":
        return "MOV"  # classic QuickTime files start with moov/mdat/wide/free atoms, no ftyp
    brand = head[8:12]
    if brand == b"qt  ":
        return "MOV"
    if brand in (b"M4A ", b"M4B ", b"M4P "):
        return "M4A"
    if brand.startswith(b"3g") or brand.startswith(b"mj"):
        return None
    return "MP4"


def _main_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first real video stream; cover art in MP3/M4A files is a one-frame 'video' we must ignore."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _codec_name(stream: av.stream.Stream) -> str:
    return stream.codec_context.codec.canonical_name


def _fps(stream: av.video.stream.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return round(float(rate), 3) if rate else None


def _container_duration(container: av.container.InputContainer) -> float:
    """Duration from the headers, falling back to a packet scan (no decoding) when they don't say."""
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    best = 0.0
    for stream in container.streams:
        if stream.duration and stream.time_base:
            best = max(best, float(stream.duration * stream.time_base))
    if best > 0:
        return best
    end = 0.0
    for packet in container.demux():
        if packet.pts is not None and packet.time_base is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    return end


# ------------------------------------------------------------------------------------------- decoding


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


# ------------------------------------------------------------------------------------------- alignment


def align(
    video_path: str | os.PathLike[str],
    music_path: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> AlignResult:
    """Find ``offset_seconds`` such that music time t plays at video time t + offset (see module doc).

    Raises MediaError NO_AUDIO_TRACK (video or music without sound) or ALIGNMENT_FAILED (no credible
    match: unrelated music, silence, too little overlap, or two equally good offsets).
    """
    report = _reporter(progress)
    report(0, "decoding the video's audio")
    recording = _decode_audio(os.fspath(video_path), ANALYSIS_RATE, "mono", role="video", on_video_timeline=True)
    report(30, "decoding the music")
    music = _decode_audio(os.fspath(music_path), ANALYSIS_RATE, "mono", role="music", on_video_timeline=False)
    rec, mus = recording.samples[0], music.samples[0]
    report(55, "correlating onset envelopes")
    match = _match(rec, mus)
    offset = recording.start_seconds + match.fine.lag / ANALYSIS_RATE
    report(100, "aligned")
    return AlignResult(
        offset_seconds=float(offset),
        confidence=match.confidence,
        overlap_seconds=float(_overlap(rec.size, mus.size, match.fine.lag) / ANALYSIS_RATE),
        peak_ratio=match.ratio,
        peak_zscore=match.fine.snr,
        coarse_offset_seconds=float(recording.start_seconds + match.fine.coarse_lag / ANALYSIS_RATE),
        coarse_peak_ratio=match.coarse.peak_ratio,
        coarse_peak_zscore=match.coarse.peak_z,
        correlation=match.coarse.correlation,
        candidates_checked=match.candidates,
        video_audio_seconds=recording.seconds,
        music_seconds=music.seconds,
    )


@dataclass(frozen=True)
class _Match:
    fine: _Fine
    ratio: float
    coarse: _Coarse
    candidates: int
    confidence: float


def _match(rec: np.ndarray, mus: np.ndarray) -> _Match:
    """Locate ``mus`` in ``rec`` (both mono at ANALYSIS_RATE) or raise ALIGNMENT_FAILED (see module doc)."""
    lengths = {"video_audio_seconds": round(rec.size / ANALYSIS_RATE, 3)}
    lengths["music_seconds"] = round(mus.size / ANALYSIS_RATE, 3)
    if min(rec.size, mus.size) < MIN_INPUT_SECONDS * ANALYSIS_RATE:
        raise MediaError(ALIGNMENT_FAILED, "Too little audio to align.", lengths)
    coarse = _coarse_candidates(_onset_envelopes(rec), _onset_envelopes(mus))
    scored = sorted(
        (_refine_lag(rec, mus, lag * ENVELOPE_HOP) for lag in coarse.lags_frames),
        key=lambda fine: fine.snr,
        reverse=True,
    )
    best = scored[0]
    runner_up = scored[1].snr if len(scored) > 1 else 0.0
    ratio = best.snr / max(runner_up, FINE_NULL_SNR)
    details = {
        **lengths,
        "peak_zscore": round(best.snr, 2),
        "peak_ratio": round(ratio, 3),
        "coarse_peak_ratio": round(coarse.peak_ratio, 3),
        "coarse_peak_zscore": round(coarse.peak_z, 2),
    }
    if best.snr < MIN_FINE_SNR:
        raise MediaError(
            ALIGNMENT_FAILED, "Could not find the music in the video's soundtrack (no clear match).", details
        )
    if ratio < MIN_FINE_RATIO:
        raise MediaError(
            ALIGNMENT_FAILED, "The music matches the video at several offsets; cannot tell which.", details
        )
    # Confidence: how far the peak clears the thresholds. ~0.5 at snr 19 (4 above the bar), -> 1 by ~25;
    # scaled down when the runner-up candidate comes within a factor of GOOD_FINE_RATIO.
    strength = 1.0 / (1.0 + math.exp(-(best.snr - MIN_FINE_SNR - 4.0) / 2.5))
    separation = min(1.0, (ratio - 1.0) / (GOOD_FINE_RATIO - 1.0))
    return _Match(best, float(ratio), coarse, len(scored), round(strength * separation, 4))


def _overlap(n_rec: int, n_mus: int, lag: float) -> float:
    """Length of the common part when music sample j sits at recording sample j + lag."""
    return max(0.0, min(n_rec, n_mus + lag) - max(0.0, lag))


def _onset_envelopes(x: np.ndarray) -> np.ndarray:
    """Per-band onset strength at 100 Hz: (bands, frames), each band zero-mean and unit-variance.

    Log compression makes a gain change an additive constant that the time difference removes; half-wave
    rectification keeps onsets (what survives a speaker, a room and a phone mic) and drops decays (what
    reverberation smears). Several bands let a kick in the bass and a hi-hat in the treble both count
    even when noise swamps one of them.
    """
    if x.size < ENVELOPE_WINDOW:
        x = np.pad(x, (0, ENVELOPE_WINDOW - x.size))
    frames = sliding_window_view(x, ENVELOPE_WINDOW)[::ENVELOPE_HOP]
    window = np.hanning(ENVELOPE_WINDOW).astype(np.float32)
    freqs = np.fft.rfftfreq(ENVELOPE_WINDOW, 1.0 / ANALYSIS_RATE)
    edges = zip(BAND_EDGES_HZ[:-1], BAND_EDGES_HZ[1:], strict=True)
    bands = np.stack([(freqs >= lo) & (freqs < hi) for lo, hi in edges], axis=1).astype(np.float32)
    energy = np.empty((frames.shape[0], bands.shape[1]), dtype=np.float32)
    for start in range(0, frames.shape[0], 4096):  # chunked: a 10-minute file stays a few MB at a time
        spec = sfft.rfft(frames[start : start + 4096] * window, axis=1)
        energy[start : start + 4096] = (spec.real**2 + spec.imag**2) @ bands
    floor = 1e-3 * energy.mean(axis=0, keepdims=True) + 1e-10
    log_e = np.log(energy + floor)
    onset = np.maximum(np.diff(log_e, axis=0, prepend=log_e[:1]), 0.0)
    onset -= onset.mean(axis=0, keepdims=True)
    onset /= onset.std(axis=0, keepdims=True) + 1e-9
    return np.ascontiguousarray(onset.T)


@dataclass(frozen=True)
class _Coarse:
    lags_frames: list[float]  # candidate lags, best first: music frame j sits at recording frame j + lag
    peak_ratio: float  # best peak height / runner-up's, above the median
    peak_z: float  # best peak above the median, in robust standard deviations
    correlation: float  # normalised correlation at the best peak


def _coarse_candidates(rec_env: np.ndarray, mus_env: np.ndarray) -> _Coarse:
    """The COARSE_CANDIDATES highest peaks of the envelopes' normalised cross-correlation.

    Every lag with at least MIN_OVERLAP_SECONDS of overlap (or half the shorter input) is scored. At each
    lag the correlation is normalised by the energies of the overlapping parts only, then scaled by
    sqrt(overlap / shorter input): under "no relation" that statistic has about the same spread at every
    lag, so a short chance overlap cannot outscore a long genuine one. Peaks closer than
    PEAK_EXCLUSION_SECONDS to a better one are the same peak (echo, envelope smear) and are skipped.
    """
    n_r, n_m = rec_env.shape[1], mus_env.shape[1]
    n_fft = sfft.next_fast_len(n_r + n_m - 1, real=True)
    spec = sfft.rfft(rec_env, n_fft, axis=1) * np.conj(sfft.rfft(mus_env, n_fft, axis=1))
    circular = sfft.irfft(spec.sum(axis=0), n_fft)
    lags = np.arange(-(n_m - 1), n_r)
    numerator = circular[lags % n_fft]
    e_r = np.concatenate([[0.0], np.cumsum((rec_env.astype(np.float64) ** 2).sum(axis=0))])
    e_m = np.concatenate([[0.0], np.cumsum((mus_env.astype(np.float64) ** 2).sum(axis=0))])
    r_lo, r_hi = np.maximum(lags, 0), np.minimum(n_r, n_m + lags)
    m_lo, m_hi = np.maximum(-lags, 0), np.minimum(n_m, n_r - lags)
    overlap = r_hi - r_lo
    ncc = numerator / np.sqrt((e_r[r_hi] - e_r[r_lo]) * (e_m[m_hi] - e_m[m_lo]) + 1e-9)
    stat = ncc * np.sqrt(overlap / min(n_r, n_m))
    frames_per_second = ANALYSIS_RATE / ENVELOPE_HOP
    stat[overlap < min(MIN_OVERLAP_SECONDS * frames_per_second, 0.5 * min(n_r, n_m))] = -np.inf
    valid = np.isfinite(stat)
    median = float(np.median(stat[valid]))
    spread = 1.4826 * float(np.median(np.abs(stat[valid] - median))) + 1e-9
    exclusion = int(round(PEAK_EXCLUSION_SECONDS * frames_per_second))
    remaining = stat.copy()
    picks: list[int] = []
    while len(picks) < COARSE_CANDIDATES:
        i = int(np.argmax(remaining))
        if not np.isfinite(remaining[i]):
            break
        picks.append(i)
        remaining[max(0, i - exclusion) : i + exclusion + 1] = -np.inf
    lags_frames = [float(lags[i]) + _parabolic_offset(stat, i) for i in picks]
    top = stat[picks[0]]
    runner_up = stat[picks[1]] if len(picks) > 1 else median
    return _Coarse(
        lags_frames=lags_frames,
        peak_ratio=float((top - median) / max(runner_up - median, 1e-3 * spread)),
        peak_z=float((top - median) / spread),
        correlation=float(ncc[picks[0]]),
    )


def _parabolic_offset(values: np.ndarray, i: int) -> float:
    """Sub-sample position of the peak at ``i`` from a parabola through it and its neighbours."""
    if i <= 0 or i >= values.size - 1 or not np.isfinite(values[i - 1 : i + 2]).all():
        return 0.0
    a, b, c = values[i - 1], values[i], values[i + 1]
    denom = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom < 0 else 0.0


@dataclass(frozen=True)
class _Fine:
    lag: float  # samples at ANALYSIS_RATE: music sample j sits at recording sample j + lag
    snr: float  # GCC-PHAT peak over the GCC's standard deviation
    coarse_lag: float


def _refine_lag(rec: np.ndarray, mus: np.ndarray, coarse_lag: float) -> _Fine:
    """Sample-accurate lag and waveform evidence, by GCC-PHAT within FINE_SEARCH_SECONDS of a coarse lag.

    The cross-spectrum is averaged over up to FINE_MAX_WINDOWS consecutive ~1 s windows from the middle
    of the overlap before phase whitening, so noise in any one window averages out and reflections do
    not move the peak off the direct sound. Keeping the windows consecutive and few (~10 s) keeps the
    evidence coherent when the speaker's clock drifts against the phone's (a 100 ppm drift moves the
    lag by 1 ms over 10 s, but by 18 ms over a 3-minute overlap). ``snr`` is the waveform evidence:
    music matching only in rhythm (a beat off, or another track at the same tempo) stays near the noise
    level (< ~12), the right offset of the right track scores far higher.
    """
    base = int(round(coarse_lag))
    lo, hi = max(0, base), min(rec.size, mus.size + base)
    length = min(FINE_WINDOW, hi - lo)
    search = int(FINE_SEARCH_SECONDS * ANALYSIS_RATE)
    if length < 4 * search:
        return _Fine(coarse_lag, 0.0, coarse_lag)
    n_windows = min(FINE_MAX_WINDOWS, (hi - lo) // length)
    first = lo + ((hi - lo) - n_windows * length) // 2
    n_fft = sfft.next_fast_len(2 * length, real=True)
    window = np.hanning(length)
    cross = np.zeros(n_fft // 2 + 1, dtype=np.complex128)
    for k in range(n_windows):
        s = first + k * length
        r = sfft.rfft(rec[s : s + length] * window, n_fft)
        m = sfft.rfft(mus[s - base : s - base + length] * window, n_fft)
        cross += r * np.conj(m)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / ANALYSIS_RATE)
    band = (freqs >= FINE_BAND_HZ[0]) & (freqs <= FINE_BAND_HZ[1])
    gcc = sfft.irfft(np.where(band, cross / (np.abs(cross) + 1e-12), 0.0), n_fft)
    taus = np.arange(-search, search + 1)
    values = gcc[taus % n_fft]
    i = int(np.argmax(values))
    snr = float(values[i] / (gcc.std() + 1e-12))
    return _Fine(float(base + taus[i] + _parabolic_offset(values, i)), snr, coarse_lag)


# ------------------------------------------------------------------------------------------- rendering


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


# ------------------------------------------------------------------------------------------- the job


def run(
    video_path: str | os.PathLike[str],
    music_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    trim_silence: bool = False,
    progress: Progress | None = None,
    max_bytes: int | None = None,
    max_duration_seconds: float | None = None,
) -> dict[str, Any]:
    """The whole beat-sync job: probe, align, render. Returns a JSON-safe summary.

    ``progress(percent, message)`` is called at each stage (probing 0, decoding/aligning 5-60,
    rendering 60-99, done 100). MediaErrors from any stage propagate unchanged.
    """
    report = _reporter(progress)
    report(0, "probing the uploads")
    video_info = probe_media(video_path, max_bytes=max_bytes, max_duration_seconds=max_duration_seconds)
    music_info = probe_media(music_path, max_bytes=max_bytes, max_duration_seconds=max_duration_seconds)
    if not video_info.has_video:
        raise MediaError(INVALID_FORMAT, "The video file has no video stream.", {"role": "video"})
    if not video_info.has_audio:
        raise MediaError(NO_AUDIO_TRACK, "The video has no audio track to align the music to.", {"role": "video"})
    if not music_info.has_audio:
        raise MediaError(NO_AUDIO_TRACK, "The music file has no audio track.", {"role": "music"})
    result = align(video_path, music_path, progress=_scaled(report, 5, 60))
    rendered = render(
        video_path,
        music_path,
        result.offset_seconds,
        out_path,
        trim_silence=trim_silence,
        progress=_scaled(report, 60, 99),
    )
    report(100, "done")
    return {
        "offset_seconds": round(result.offset_seconds, 4),
        "confidence": result.confidence,
        "overlap_seconds": round(result.overlap_seconds, 3),
        "video_duration_seconds": video_info.duration_seconds,
        "music_duration_seconds": music_info.duration_seconds,
        "alignment": result.to_dict(),
        "video": video_info.to_dict(),
        "music": music_info.to_dict(),
        "output": rendered.to_dict(),
    }


def _reporter(progress: Progress | None) -> Callable[[int, str], None]:
    """Clamp percentages and drop repeats, so per-packet reporting doesn't flood the job's callback."""
    last: list[tuple[int, str]] = []

    def report(percent: int, message: str) -> None:
        update = (int(max(0, min(100, percent))), message)
        if progress is not None and (not last or last[-1] != update):
            last[:] = [update]
            progress(*update)

    return report


def _scaled(report: Callable[[int, str], None], lo: int, hi: int) -> Progress:
    """Map a stage's own 0-100 onto [lo, hi] of the job's progress."""
    return lambda percent, message: report(lo + (hi - lo) * percent // 100, message)


__all__ = [
    "ACCEPTED_CONTAINERS",
    "AlignResult",
    "MediaInfo",
    "RenderInfo",
    "align",
    "probe_media",
    "render",
    "run",
]
