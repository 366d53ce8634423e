"""Where the music sits in the video's own soundtrack: ``align`` and ``AlignResult``.

The offset follows the package's sign convention (see ``media_ops.beatsync``): music time t plays at video
time t + offset_seconds.

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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sfft

from media_ops.beatsync.progress import Progress, _reporter
from media_ops.beatsync.streams import _decode_audio
from media_ops.errors import ALIGNMENT_FAILED, MediaError

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
# height of a no-match peak). Measured on the synthetic tracks of testing/media.py: the
# right offset scores >= ~20 even with noise 10 dB louder than the music; wrong beats and unrelated tracks
# at the same tempo and with the same drum sounds score <= ~12.
MIN_FINE_SNR = 15.0
FINE_NULL_SNR = 10.0
MIN_FINE_RATIO = 1.3
GOOD_FINE_RATIO = 2.0


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
