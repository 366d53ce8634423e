"""The attack battery: what happens to audio between the watermark and the detector, as named, versioned,
pure numpy functions.

Why this module exists: robustness is the watermark's promise, and three places must test it on the *same*
edits: the training augmentations of the demo model (scripts/train_demo_watermark.py), the customer
robustness report (a job kind) and ``make bench-robustness`` (bench/robustness.py). One list, one version
string: a report or a benchmark figure names ``BATTERY_VERSION`` so a number can be traced to the edits that
produced it. Change an attack's parameters, add or remove one, and the version must change.

Contract of every attack: ``attack(signal, sr=16000, rng=None) -> signal``. ``signal`` is float audio shaped
(samples,) or (channels, samples) at ``sr``; the result has the same rank, channel count, dtype float32 and
sample rate (``sr`` is never changed: resampling attacks go down and come back). The length is kept unless
``Attack.changes_length`` (trims, crops, speed, inserted silence). ``rng`` (a ``numpy.random.Generator``)
drives the random ones (noise, mixing material, where silence goes); the same seed gives the same output.
Nothing here imports Django or torch; codecs run through PyAV (bundled FFmpeg), effects through pedalboard.

The list follows what the field uses (AudioMarkBench, RAW-Bench, the AudioSeal paper) and what customers
do to audio: re-encode at low bitrates, band-limit (telephone 8 kHz, 11.025 kHz), filter, add noise, put
it in a room, compress, shift pitch or speed, cut it, invert it, change its level, clip it, mix it under
other material, insert pauses.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from media_ops.audio.dsp import resample

BATTERY_VERSION = "2026-12-1"

AttackFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Attack:
    """One named edit. ``family`` groups the report's rows (codec, resample, filter, noise, room, dynamics,
    pitch, speed, cut, level, mix); ``params`` documents the settings (they are also in ``description``)."""

    name: str
    family: str
    description: str
    fn: AttackFn = field(repr=False)
    params: dict[str, Any] = field(default_factory=dict)
    changes_length: bool = False

    def __call__(self, signal: np.ndarray, sr: int = 16000, rng: np.random.Generator | None = None) -> np.ndarray:
        """Apply the attack; (channels, samples) input is attacked channel by channel."""
        rng = rng if rng is not None else np.random.default_rng(0)
        x = np.asarray(signal, dtype=np.float32)
        if x.ndim == 1:
            return np.ascontiguousarray(self.fn(x, int(sr), rng), dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"expected (samples,) or (channels, samples), got shape {x.shape}")
        # the same edit on every channel: random choices (silence position, mixing material) are shared
        seed = int(rng.integers(2**63))
        channels = [self.fn(c, int(sr), np.random.default_rng(seed)) for c in x]
        return np.ascontiguousarray(np.stack(channels), dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------
def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded at the end to ``n`` samples, float32."""
    y = np.asarray(y, dtype=np.float32)
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.asarray(x, np.float64) ** 2)) if len(x) else 0.0


def _codec_delay(ref: np.ndarray, y: np.ndarray, max_lag: int) -> int:
    """The lag (0..max_lag) by which ``y`` lags ``ref`` (FFT cross-correlation on the loudest second)."""
    from scipy.signal import correlate

    n = min(len(ref), 48_000)
    if n == 0:
        return 0
    y = np.pad(y, (0, max(0, n + max_lag - len(y))))
    corr = correlate(y[: n + max_lag], ref[:n], mode="valid", method="fft")
    return int(np.argmax(np.abs(corr)))


_LAYOUT = "mono"


def codec_roundtrip(x: np.ndarray, sr: int, codec: str, bitrate: int) -> np.ndarray:
    """Encode mono ``x`` with PyAV (``libmp3lame`` in MP3, ``aac`` in ADTS, ``libopus`` in Ogg at 48 kHz),
    decode it back to ``sr`` and remove the codec's delay, so the result lines up with the input as a
    well-behaved player's output would (the priming samples FFmpeg keeps for ADTS would otherwise shift it)."""
    import av

    fmt, rate = {"libmp3lame": ("mp3", sr), "aac": ("adts", sr), "libopus": ("ogg", 48_000)}[codec]
    y_in = resample(x, sr, rate) if rate != sr else np.asarray(x, np.float32)
    y_in = np.clip(y_in, -1.0, 1.0).astype(np.float32)
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=_LAYOUT)
        stream.bit_rate = int(bitrate)
        block = 4608
        for start in range(0, len(y_in), block):
            chunk = y_in[start : start + block]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout=_LAYOUT)
            frame.sample_rate = rate
            frame.time_base = Fraction(1, rate)
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    pieces = []
    with av.open(buf, "r") as inp:
        dec_rate = inp.streams.audio[0].rate
        for frame in inp.decode(audio=0):
            arr = frame.to_ndarray()
            arr = arr.reshape(-1) if frame.format.is_packed else arr.mean(axis=0)
            pieces.append(arr.astype(np.float32))
    y = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if dec_rate != sr:
        y = resample(y, dec_rate, sr)
    y = y[_codec_delay(np.asarray(x, np.float32), y, max_lag=int(0.15 * sr)) :]
    return _fit(y, len(x))


def _butter(x: np.ndarray, sr: int, cutoff: float, kind: str, order: int = 8) -> np.ndarray:
    """Zero-phase Butterworth filtering (``sosfiltfilt``, forward and backward: the band is limited, the timing
    is not moved; -6 dB at ``cutoff``, about -48 dB an octave beyond it)."""
    from scipy.signal import butter, sosfiltfilt

    if cutoff >= sr / 2:
        return np.asarray(x, np.float32).copy()
    sos = butter(order, cutoff, btype=kind, fs=sr, output="sos")
    return sosfiltfilt(sos, np.asarray(x, np.float64)).astype(np.float32)


def _pedalboard(x: np.ndarray, sr: int, *plugins: Any) -> np.ndarray:
    from pedalboard import Pedalboard

    board = Pedalboard(list(plugins))
    return _fit(board(np.asarray(x, np.float32)[None, :], sr)[0], len(x))


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` below the signal's mean power."""
    p = _power(x)
    sigma = np.sqrt(p / 10 ** (snr_db / 10)) if p > 0 else 1e-4
    return (x + rng.normal(0.0, sigma, len(x))).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# Synthetic non-speech material (mixing partner here; non-speech training material and bench clips too)
# ----------------------------------------------------------------------------------------------------------
def synthetic_music(n: int, sr: int, rng: np.random.Generator, level_db: float = -20.0) -> np.ndarray:
    """``n`` samples of procedurally generated music at RMS ``level_db`` dBFS: a random tempo, a chord
    progression of plucked harmonic notes (random timbres, exponential decays), a bass line and a noise
    hi-hat/kick on the beats. Nothing recorded: reproducible from ``rng`` and free of any licence."""
    t_total = n / sr
    out = np.zeros(n, np.float64)
    bpm = rng.uniform(70, 160)
    beat = 60.0 / bpm
    root = rng.uniform(40, 52)  # MIDI note of the key's root
    scale = np.array([0, 2, 4, 5, 7, 9, 11]) if rng.random() < 0.5 else np.array([0, 2, 3, 5, 7, 8, 10])
    harmonics = rng.uniform(0.1, 1.0, 8) ** rng.uniform(1, 3)
    t = 0.0
    while t < t_total:
        degree = int(rng.integers(0, 7))
        chord = [root + 12 + scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]
        bar = 4 * beat
        for step in range(int(rng.choice([2, 4, 8]))):
            onset = t + step * bar / 4 if step < 4 else t + (step - 4 + 0.5) * bar / 4
            note = float(rng.choice(chord)) + 12 * int(rng.integers(0, 2))
            _note(out, sr, onset, beat * rng.uniform(0.5, 2.0), note, harmonics, rng.uniform(0.3, 1.0))
        _note(out, sr, t, bar, chord[0] - 12, harmonics[:3], 0.8)  # bass
        for b in range(4):
            _drum(out, sr, t + b * beat, rng, kick=(b % 2 == 0))
        t += bar
    rms = np.sqrt(np.mean(out**2)) or 1.0
    return (out / rms * 10 ** (level_db / 20)).astype(np.float32)


def _note(out: np.ndarray, sr: int, onset: float, dur: float, midi: float, harmonics: np.ndarray, amp: float) -> None:
    i0 = int(onset * sr)
    if i0 >= len(out):
        return
    m = min(len(out) - i0, int(dur * sr))
    tt = np.arange(m) / sr
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    tone = sum(h * np.sin(2 * np.pi * f0 * (k + 1) * tt) for k, h in enumerate(harmonics) if f0 * (k + 1) < sr / 2)
    env = np.exp(-tt * (3.0 / max(dur, 1e-3))) * np.minimum(1.0, tt * 200)
    out[i0 : i0 + m] += amp * env * tone


def _drum(out: np.ndarray, sr: int, onset: float, rng: np.random.Generator, kick: bool) -> None:
    i0 = int(onset * sr)
    if i0 >= len(out):
        return
    m = min(len(out) - i0, int(0.15 * sr))
    tt = np.arange(m) / sr
    if kick:
        hit = np.sin(2 * np.pi * (50 + 100 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 25)
    else:
        hit = np.diff(rng.normal(0, 1, m + 1)) * np.exp(-tt * 60) * 0.3
    out[i0 : i0 + m] += hit


def coloured_noise(n: int, sr: int, rng: np.random.Generator, level_db: float = -30.0) -> np.ndarray:
    """``n`` samples of noise with a random spectral slope (-6..+3 dB/octave: brown to blue-ish) at RMS
    ``level_db`` dBFS, slowly amplitude-modulated: a stand-in for ambience, fans and hiss."""
    spec = np.fft.rfft(rng.normal(0, 1, n))
    f = np.fft.rfftfreq(n, 1 / sr)
    slope = rng.uniform(-6, 3)
    spec *= (np.maximum(f, 20.0) / 1000.0) ** (slope / 6.02)
    y = np.fft.irfft(spec, n)
    y *= 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 2.0) * np.arange(n) / sr + rng.uniform(0, 6.3))
    rms = np.sqrt(np.mean(y**2)) or 1.0
    return (y / rms * 10 ** (level_db / 20)).astype(np.float32)


def mix(x: np.ndarray, other: np.ndarray, rel_db: float) -> np.ndarray:
    """``x`` plus ``other`` scaled to ``rel_db`` dB relative to ``x``'s power."""
    other = _fit(other, len(x))
    px, po = _power(x), _power(other)
    scale = np.sqrt(px / po * 10 ** (rel_db / 10)) if po > 0 and px > 0 else 0.0
    return (x + scale * other).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# The attacks
# ----------------------------------------------------------------------------------------------------------
def _codec(codec: str, kbps: int) -> AttackFn:
    return lambda x, sr, rng: codec_roundtrip(x, sr, codec, kbps * 1000)


def _via_rate(rate: int) -> AttackFn:
    return lambda x, sr, rng: resample(resample(x, sr, rate), rate, sr, num_samples=len(x))


def _filter(cutoff: float, kind: str) -> AttackFn:
    return lambda x, sr, rng: _butter(x, sr, cutoff, kind)


def _noise(snr_db: float) -> AttackFn:
    return lambda x, sr, rng: add_noise(x, snr_db, rng)


def _reverb(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    from pedalboard import Reverb

    return _pedalboard(x, sr, Reverb(room_size=0.5, damping=0.5, wet_level=0.33, dry_level=0.7, width=1.0))


def _echo(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    from pedalboard import Delay

    return _pedalboard(x, sr, Delay(delay_seconds=0.25, feedback=0.3, mix=0.35))


def _compress(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    from pedalboard import Compressor, Gain

    return _pedalboard(x, sr, Compressor(threshold_db=-30, ratio=6, attack_ms=5, release_ms=80), Gain(6))


def _pitch(semitones: float) -> AttackFn:
    def fn(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        from pedalboard import PitchShift

        return _pedalboard(x, sr, PitchShift(semitones=semitones))

    return fn


def _speed(factor: float) -> AttackFn:
    """Played ``factor`` times faster (tempo and pitch together, as a changed playback rate): length / factor."""
    return lambda x, sr, rng: resample(x, int(round(sr * factor)), sr)


def _trim(seconds: float | None = None, samples: int | None = None) -> AttackFn:
    def fn(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        k = samples if samples is not None else int(round(seconds * sr))
        return x[min(k, max(len(x) - 1, 0)) :].copy()

    return fn


def _crop_middle(fraction: float) -> AttackFn:
    def fn(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        keep = max(1, int(round(len(x) * fraction)))
        start = (len(x) - keep) // 2
        return x[start : start + keep].copy()

    return fn


def _gain(db: float) -> AttackFn:
    return lambda x, sr, rng: (x * 10 ** (db / 20)).astype(np.float32)


def _clip(fraction_of_peak: float) -> AttackFn:
    def fn(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        t = fraction_of_peak * float(np.max(np.abs(x))) if len(x) else 0.0
        return np.clip(x, -t, t).astype(np.float32)

    return fn


def _mix_music(rel_db: float) -> AttackFn:
    return lambda x, sr, rng: mix(x, synthetic_music(len(x), sr, rng), rel_db)


def _mix_noise(rel_db: float) -> AttackFn:
    return lambda x, sr, rng: mix(x, coloured_noise(len(x), sr, rng), rel_db)


def _insert_silence(seconds: float) -> AttackFn:
    def fn(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        at = int(rng.uniform(0.25, 0.75) * len(x))
        return np.concatenate([x[:at], np.zeros(int(round(seconds * sr)), np.float32), x[at:]])

    return fn


def _polarity(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    return (-np.asarray(x, np.float32)).astype(np.float32)


def _a(name: str, family: str, description: str, fn: AttackFn, changes_length: bool = False, **params: Any) -> Attack:
    return Attack(name, family, description, fn, params, changes_length)


BATTERY: tuple[Attack, ...] = (
    _a("mp3_24k", "codec", "MP3 (LAME) at 24 kbit/s", _codec("libmp3lame", 24), codec="mp3", kbps=24),
    _a("mp3_64k", "codec", "MP3 (LAME) at 64 kbit/s", _codec("libmp3lame", 64), codec="mp3", kbps=64),
    _a("aac_32k", "codec", "AAC-LC (FFmpeg) at 32 kbit/s", _codec("aac", 32), codec="aac", kbps=32),
    _a("aac_64k", "codec", "AAC-LC (FFmpeg) at 64 kbit/s", _codec("aac", 64), codec="aac", kbps=64),
    _a("opus_24k", "codec", "Opus (libopus, 48 kHz) at 24 kbit/s", _codec("libopus", 24), codec="opus", kbps=24),
    _a("opus_48k", "codec", "Opus (libopus, 48 kHz) at 48 kbit/s", _codec("libopus", 48), codec="opus", kbps=48),
    _a("resample_8k", "resample", "down to 8 kHz and back (telephone band)", _via_rate(8000), rate=8000),
    _a("resample_11k", "resample", "down to 11.025 kHz and back", _via_rate(11025), rate=11025),
    _a("lowpass_3k", "filter", "low-pass 3 kHz (Butterworth order 8, forward-backward)", _filter(3000, "lowpass"),
       cutoff_hz=3000),
    _a("lowpass_4k", "filter", "low-pass 4 kHz (Butterworth order 8, forward-backward)", _filter(4000, "lowpass"),
       cutoff_hz=4000),
    _a("highpass_500", "filter", "high-pass 500 Hz (Butterworth order 8, forward-backward)",
       _filter(500, "highpass"), cutoff_hz=500),
    _a("noise_20db", "noise", "white noise at 20 dB SNR", _noise(20), snr_db=20),
    _a("noise_10db", "noise", "white noise at 10 dB SNR", _noise(10), snr_db=10),
    _a("reverb", "room", "room reverb (pedalboard Reverb, room 0.5, wet 0.33)", _reverb),
    _a("echo", "room", "echo 250 ms, feedback 0.3, mix 0.35 (pedalboard Delay)", _echo),
    _a("compressor", "dynamics", "compressor -30 dB threshold, ratio 6, +6 dB make-up", _compress),
    _a("pitch_up_1", "pitch", "pitch +1 semitone, same length (pedalboard PitchShift)", _pitch(1), semitones=1),
    _a("pitch_down_1", "pitch", "pitch -1 semitone, same length (pedalboard PitchShift)", _pitch(-1),
       semitones=-1),
    _a("speed_0.95", "speed", "played 5 % slower (tempo and pitch, resampled)", _speed(0.95), True, factor=0.95),
    _a("speed_1.05", "speed", "played 5 % faster (tempo and pitch, resampled)", _speed(1.05), True, factor=1.05),
    _a("trim_123", "cut", "the first 123 samples cut off", _trim(samples=123), True, samples=123),
    _a("trim_0.5s", "cut", "the first 0.5 s cut off", _trim(seconds=0.5), True, seconds=0.5),
    _a("crop_middle_50", "cut", "only the middle 50 % kept", _crop_middle(0.5), True, fraction=0.5),
    _a("polarity", "level", "polarity inverted (every sample negated)", _polarity),
    _a("gain_-10db", "level", "10 dB quieter", _gain(-10), db=-10),
    _a("gain_+6db", "level", "6 dB louder (may clip in a file; kept as float here)", _gain(6), db=6),
    _a("clipping", "level", "hard clipping at 50 % of the peak", _clip(0.5), fraction_of_peak=0.5),
    _a("mix_music_-6db", "mix", "synthetic music mixed in 6 dB below the signal", _mix_music(-6), rel_db=-6),
    _a("mix_noise_-6db", "mix", "coloured ambience noise mixed in 6 dB below the signal", _mix_noise(-6),
       rel_db=-6),
    _a("silence_0.5s", "cut", "0.5 s of silence inserted at a random point (25-75 %)", _insert_silence(0.5),
       True, seconds=0.5),
)

ATTACKS: dict[str, Attack] = {a.name: a for a in BATTERY}


def get(name: str) -> Attack:
    """The attack called ``name``; KeyError names the battery's attacks."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise KeyError(f"unknown attack {name!r}; battery {BATTERY_VERSION}: {', '.join(ATTACKS)}") from None


def describe() -> list[dict[str, Any]]:
    """The battery as rows (name, family, description, params, changes_length): what a report documents."""
    return [
        {"name": a.name, "family": a.family, "description": a.description, "params": dict(a.params),
         "changes_length": a.changes_length}
        for a in BATTERY
    ]
