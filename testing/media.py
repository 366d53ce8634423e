"""Synthetic media for the beat-sync tests (and the API tests that upload real files).

Everything is generated with PyAV from a deterministic seed, in a second or two, so tests never depend on
fixture files checked into the repository or on a system ffmpeg.

The music is *analytic*: every instrument is a sum of sinusoids with envelopes, evaluated at arbitrary
sample times. That lets the "recording" in a dance video be the same music evaluated at ``t - offset`` at
another sample rate (48 kHz, like a phone) with an exact ground-truth offset, instead of resampling a
rendered file and wondering about resampler delay.

Sign convention (the one of ``media_ops.beatsync``): music time ``t`` plays at video time ``t + offset``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

MUSIC_RATE = 44100
RECORDING_RATE = 48000
STEP_SECONDS = 0.125  # a 16th note at 120 BPM

_AUDIO_FORMATS = {
    # suffix: (container format, codec, sample format)
    ".wav": ("wav", "pcm_s16le", "s16"),
    ".flac": ("flac", "flac", "s16"),
    ".mp3": ("mp3", "libmp3lame", "fltp"),
    ".m4a": ("ipod", "aac", "fltp"),
    ".mka": ("matroska", "flac", "s16"),  # a real audio file in a container we don't accept
}


_FAST_ENCODING = {"libmp3lame": {"compression_level": "9"}, "aac": {"aac_coder": "fast"}}


@dataclass(frozen=True)
class _Note:
    start: float
    duration: float
    freqs: tuple[float, ...]
    amps: tuple[float, ...]
    phases: tuple[float, ...]
    attack: float
    decay: float  # exponential decay time constant, seconds
    pan: float  # 0 = left, 1 = right
    sweep: float = 0.0  # relative downward pitch sweep (kick drum)


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12)


def _score(duration_s: float, seed: int) -> list[_Note]:
    """The events of a short, deliberately non-loop-like dance track at 120 BPM.

    Drums follow a backbeat with random fills and the melody is random, so the track has beats (the
    hard case for an aligner: many near-equal peaks one beat apart) but no exact repetition. Timbres
    (kick pitch, harmonic mix) and note phases come from the seed, so two seeds are two different
    recordings at the same tempo, not the same instruments playing other notes.
    """
    rng = np.random.default_rng(seed)
    notes: list[_Note] = []
    scale = [0, 2, 3, 5, 7, 8, 10]
    root = 40 + int(rng.integers(0, 12))
    kick_hz = float(rng.uniform(45, 70))
    kick_sweep = float(rng.uniform(1.0, 2.5))
    lead_mix = tuple(float(a) for a in rng.uniform(0.02, 0.25, 4))

    def phases(n: int) -> tuple[float, ...]:
        return tuple(float(p) for p in rng.uniform(0, 2 * np.pi, n))

    steps = int(np.ceil(duration_s / STEP_SECONDS))
    for step in range(steps):
        t = step * STEP_SECONDS
        beat_pos = step % 4
        if beat_pos == 0 and ((step // 4) % 2 == 0 or rng.random() < 0.5) or rng.random() < 0.08:
            kick = (kick_hz, 2 * kick_hz)
            notes.append(_Note(t, 0.35, kick, (1.0, 0.3), phases(2), 0.002, 0.09, 0.5, sweep=kick_sweep))
        if beat_pos == 0 and (step // 4) % 2 == 1 or rng.random() < 0.06:
            freqs = tuple(rng.uniform(180, 4500, 40))
            amps = tuple(rng.uniform(0.02, 0.06, 40))
            notes.append(_Note(t, 0.2, freqs, amps, phases(40), 0.001, 0.05, 0.45))
        if rng.random() < 0.55:
            freqs = tuple(rng.uniform(5000, 14000, 30))
            amps = tuple(rng.uniform(0.01, 0.025, 30))
            pan = float(rng.uniform(0.2, 0.8))
            notes.append(_Note(t, 0.06, freqs, amps, phases(30), 0.0005, 0.015, pan))
    t = 0.0
    while t < duration_s:
        length = float(rng.choice([0.125, 0.25, 0.375, 0.5]))
        if rng.random() < 0.85:
            pitch = root + 24 + scale[int(rng.integers(0, 7))] + 12 * int(rng.integers(0, 2))
            f0 = _midi_hz(pitch)
            freqs = (f0, 2 * f0, 3 * f0, 4 * f0)
            notes.append(_Note(t, length, freqs, lead_mix, phases(4), 0.01, 0.25, 0.35))
        t += length
    for bar in range(int(np.ceil(duration_s / 2.0))):
        chord = root + 12 + scale[int(rng.integers(0, 7))]
        freqs = tuple(_midi_hz(chord + i) for i in (0, 3, 7))
        notes.append(_Note(bar * 2.0, 2.0, freqs, (0.08, 0.06, 0.06), phases(3), 0.05, 3.0, 0.7))
        for beat in range(4):
            f0 = _midi_hz(root + scale[int(rng.integers(0, 7))])
            start = bar * 2.0 + beat * 0.5
            notes.append(_Note(start, 0.45, (f0, 2 * f0), (0.35, 0.1), phases(2), 0.005, 0.2, 0.5))
    return notes


def synth_music(
    duration_s: float,
    sample_rate: int = MUSIC_RATE,
    *,
    seed: int = 1,
    start_s: float = 0.0,
    length_s: float | None = None,
    channels: int = 2,
) -> np.ndarray:
    """Render the track (``duration_s`` long) at ``sample_rate``: float32 ``(channels, samples)``.

    ``start_s``/``length_s`` select a window of music time (samples outside the track are silent), which is
    how a delayed copy is made without resampling.
    """
    length_s = duration_s - start_s if length_s is None else length_s
    n = int(round(length_s * sample_rate))
    times = start_s + np.arange(n) / sample_rate
    out = np.zeros((2, n), dtype=np.float64)
    for note in _score(duration_s, seed):
        end = min(note.start + note.duration, duration_s)
        lo = int(np.searchsorted(times, note.start))
        hi = int(np.searchsorted(times, end))
        if hi <= lo:
            continue
        tt = times[lo:hi] - note.start
        env = np.minimum(tt / note.attack, 1.0) * np.exp(-tt / note.decay)
        env *= np.minimum((end - note.start - tt) / 0.005, 1.0)  # no click at the note's end
        freqs = np.asarray(note.freqs)[:, None]
        warp = tt + note.sweep * 0.03 * (1 - np.exp(-tt / 0.03)) if note.sweep else tt
        sig = np.asarray(note.amps) @ np.sin(2 * np.pi * freqs * warp + np.asarray(note.phases)[:, None])
        sig *= env
        out[0, lo:hi] += sig * (1 - note.pan) * 2
        out[1, lo:hi] += sig * note.pan * 2
    out = np.tanh(out * 0.8).astype(np.float32)
    return out[:channels] if channels == 2 else out.mean(axis=0, keepdims=True)


def write_audio(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Encode float ``(channels, samples)`` audio to ``path``; the format follows the suffix."""
    path = Path(path)
    fmt, codec, sample_fmt = _AUDIO_FORMATS[path.suffix.lower()]
    layout = "stereo" if samples.shape[0] == 2 else "mono"
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=sample_rate, layout=layout)
        stream.codec_context.options = _FAST_ENCODING.get(codec, {})
        _encode_audio(out, stream, samples, sample_rate, layout, sample_fmt)
    return path


def _encode_audio(out, stream, samples: np.ndarray, rate: int, layout: str, sample_fmt: str) -> None:
    stream.time_base = Fraction(1, rate)
    frame_size = 1024
    clipped = np.clip(samples, -1.0, 1.0)
    for start in range(0, clipped.shape[1], frame_size):
        chunk = np.ascontiguousarray(clipped[:, start : start + frame_size])
        if sample_fmt == "s16":
            data = (chunk.T * 32767).astype(np.int16).reshape(1, -1)
        else:
            data = chunk.astype(np.float32)
        frame = av.AudioFrame.from_ndarray(data, format=sample_fmt, layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def make_music(path: Path, *, duration_s: float = 10.0, seed: int = 1, sample_rate: int = MUSIC_RATE) -> Path:
    """The clean studio track a creator uploads (MP3, WAV, FLAC or M4A by suffix)."""
    return write_audio(path, synth_music(duration_s, sample_rate, seed=seed), sample_rate)


def room_recording(
    music_duration_s: float,
    video_duration_s: float,
    offset_s: float,
    *,
    seed: int = 1,
    sample_rate: int = RECORDING_RATE,
    noise_db: float = -10.0,
    echo: bool = True,
    gain_change: bool = True,
) -> np.ndarray:
    """What a phone hears when the track plays from a speaker: mono float32 at ``sample_rate``.

    Music time ``t`` lands at recording time ``t + offset_s``. On top: room reflections and a
    reverberant tail, a gain that sags from 1.0 to 0.35 half way (automatic gain control), and noise
    (white + rumble) ``noise_db`` below the music's RMS, present over the whole recording.
    """
    rng = np.random.default_rng(1000 + seed)
    # The recording window [0, video) in music time is [-offset, video - offset); outside the track: silence.
    dry = synth_music(
        music_duration_s, sample_rate, seed=seed, start_s=-offset_s, length_s=video_duration_s, channels=1
    )[0].astype(np.float64)
    if echo:
        ir = np.zeros(int(0.35 * sample_rate))
        ir[0] = 1.0
        for delay_ms, gain in ((7, 0.5), (19, -0.35), (43, 0.25), (71, 0.15)):
            ir[int(delay_ms * sample_rate / 1000)] += gain
        tail = rng.standard_normal(ir.size) * np.exp(-np.arange(ir.size) / (0.08 * sample_rate)) * 0.02
        tail[: int(0.01 * sample_rate)] = 0.0
        ir += tail
        spec_n = 1 << int(np.ceil(np.log2(dry.size + ir.size)))
        dry = np.fft.irfft(np.fft.rfft(dry, spec_n) * np.fft.rfft(ir, spec_n), spec_n)[: dry.size]
    if gain_change:
        ramp = np.clip((np.arange(dry.size) / sample_rate - video_duration_s / 2) / 0.5, 0.0, 1.0)
        dry *= 1.0 - 0.65 * ramp
    playing = dry[np.abs(dry) > 0]
    music_rms = float(np.sqrt(np.mean(playing**2))) if playing.size else 0.1
    noise = rng.standard_normal(dry.size)
    rumble = np.cumsum(rng.standard_normal(dry.size))
    smooth = np.cumsum(np.concatenate([[0.0], rumble]))
    rumble[200:-200] -= (smooth[400:] - smooth[:-400])[: rumble.size - 400] / 400  # drop the DC wander
    noise = noise / noise.std() + rumble / (rumble.std() + 1e-12)
    noise *= music_rms * 10 ** (noise_db / 20) / noise.std()
    return (0.5 * (dry + noise)).astype(np.float32)


def _frames(duration_s: float, fps: int, size: tuple[int, int]):
    """Scrolling colour gradients with a white square on a Lissajous path: every frame differs."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.uint8)
    for i in range(int(round(duration_s * fps))):
        t = i / fps
        img = np.empty((height, width, 3), dtype=np.uint8)
        img[..., 0] = xx + np.uint8(3 * i % 256)  # uint8 arithmetic wraps: a scrolling ramp
        img[..., 1] = yy * np.uint8(2) + np.uint8(5 * i % 256)
        img[..., 2] = 80
        cx = int((np.sin(t * 2.1) * 0.4 + 0.5) * width)
        cy = int((np.cos(t * 3.3) * 0.4 + 0.5) * height)
        img[max(cy - 20, 0) : cy + 20, max(cx - 20, 0) : cx + 20] = (255, 255, 255)
        yield img


def make_video(
    path: Path,
    audio: np.ndarray | None,
    *,
    duration_s: float,
    fps: int = 25,
    size: tuple[int, int] = (320, 240),
    codec: str = "libx264",
    gop: int = 25,
    audio_rate: int = RECORDING_RATE,
    rotation: int | None = None,
) -> Path:
    """A moving-picture video (``duration_s`` long, first frame at 0) with ``audio`` as its AAC track.

    The container follows the suffix (.mp4 or .mov); ``codec`` picks the picture codec (libx264, mpeg4,
    mjpeg...), ``gop`` the keyframe interval in frames; ``rotation`` (degrees) writes a display matrix,
    as phones do for portrait videos.
    """
    path = Path(path)
    fmt = {".mp4": "mp4", ".mov": "mov"}[path.suffix.lower()]
    with av.open(str(path), "w", format=fmt) as out:
        vstream = out.add_stream(codec, rate=fps)
        vstream.width, vstream.height = size
        vstream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        vstream.codec_context.gop_size = gop
        if rotation is not None:
            vstream.set_display_rotation(rotation)
        if codec == "libx264":  # with B-frames, so pts != dts and a remux must keep the reordering intact
            vstream.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency", "bf": "2"}
            vstream.codec_context.options["keyint_min"] = str(gop)
        astream = None
        if audio is not None:
            layout = "stereo" if audio.shape[0] == 2 else "mono"
            astream = out.add_stream("aac", rate=audio_rate, layout=layout)
            astream.codec_context.options = dict(_FAST_ENCODING["aac"])
        for i, img in enumerate(_frames(duration_s, fps, size)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(vstream.encode(frame))
        out.mux(vstream.encode(None))
        if astream is not None:
            samples = audio[:, : int(round(duration_s * audio_rate))]
            _encode_audio(out, astream, samples, audio_rate, layout, "fltp")
    return path


def make_dance_video(
    path: Path,
    *,
    offset_s: float,
    music_duration_s: float = 10.0,
    video_duration_s: float = 12.0,
    seed: int = 1,
    noise_db: float = -10.0,
    echo: bool = True,
    gain_change: bool = True,
    **video_kwargs,
) -> Path:
    """A phone video of a dance to track ``seed`` played from a speaker (see ``room_recording``)."""
    recording = room_recording(
        music_duration_s,
        video_duration_s,
        offset_s,
        seed=seed,
        noise_db=noise_db,
        echo=echo,
        gain_change=gain_change,
    )
    return make_video(path, recording[None, :], duration_s=video_duration_s, **video_kwargs)


def make_silent_video(path: Path, *, duration_s: float = 2.0, **video_kwargs) -> Path:
    """A video with no audio stream at all."""
    return make_video(path, None, duration_s=duration_s, **video_kwargs)


def make_text_file(path: Path) -> Path:
    """Not media at all, whatever the name says."""
    Path(path).write_text("this is not a video, just a text file with a misleading name\n" * 20)
    return Path(path)


def make_plain_video(
    path: Path, *, size: tuple[int, int], fps: int, frames: int, codec: str = "mjpeg", with_audio: bool = True
) -> Path:
    """A few flat grey frames of any size with a short quiet AAC track (``.mp4`` or ``.mov``).

    No per-pixel work in Python, so even an 8K (7680×4320) clip is written in well under a second: for the
    tests of the frame-size and frame-rate limits, where only the headers matter.
    """
    path = Path(path)
    fmt = {".mp4": "mp4", ".mov": "mov"}[path.suffix.lower()]
    width, height = size
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    with av.open(str(path), "w", format=fmt) as out:
        vstream = out.add_stream(codec, rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, pix_fmt
        astream = None
        if with_audio:
            astream = out.add_stream("aac", rate=RECORDING_RATE, layout="mono")
            astream.codec_context.options = dict(_FAST_ENCODING["aac"])
        frame = av.VideoFrame(width, height, pix_fmt)
        for plane in frame.planes:
            plane.update(bytes([128]) * plane.buffer_size)
        for i in range(frames):
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(vstream.encode(frame))
        out.mux(vstream.encode(None))
        if astream is not None:
            t = np.arange(int(round(frames / fps * RECORDING_RATE))) / RECORDING_RATE
            tone = (0.1 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)[None, :]
            _encode_audio(out, astream, tone, RECORDING_RATE, "mono", "fltp")
    return path
