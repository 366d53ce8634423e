"""What training and evaluating the demo watermark both need: the synthetic speech and the MP3 round trip.

Why this module exists: ``train_demo_watermark.py`` evaluates its checkpoints with
``eval_demo_watermark.py``, and both must build the very same held-out speech (sentences and voices that
training never sees) and the very same MP3 round trip; keeping them here lets the two scripts share them
without importing each other (train -> eval -> here, and train -> here).

Speech comes from espeak-ng, seeded and cached under the scratch directory, so a seed always gives the same
data.
"""

from __future__ import annotations

import io
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

SR = 16_000
NBITS = 16


# ----------------------------------------------------------------------------------------------------------
# Synthetic speech.  Training and held-out sets differ in sentences AND in voices (base voice and variant).
# ----------------------------------------------------------------------------------------------------------
TRAIN_VOICES = ["en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "de", "fr", "es", "it", "nl"]
TRAIN_VARIANTS = ["m1", "m2", "m3", "m4", "m6", "f1", "f2", "f3", "klatt", "klatt3", "Annie", "john", "Andy"]
HELDOUT_VOICES = ["en-gb-scotland", "en-us-nyc", "en-gb-x-gbcwmd", "pt"]
HELDOUT_VARIANTS = ["m5", "m7", "f4", "f5", "klatt2", "belinda", "david"]

_NAMES = (
    "Anna Ben Clara David Emma Felix Grace Henry Iris Jack Karen Leo Maria Noah Olga Paul Rosa Sam Tina "
    "Victor"
)
_NOUNS = (
    "river garden window teacher engine harbor mountain letter kitchen bicycle concert village market forest "
    "station painter doctor lantern blanket island bridge meadow factory museum library tower signal wagon "
    "orchard carpet castle pocket camera violin compass engineer ocean valley desert canyon street harvest"
)
_VERBS = "found painted carried opened watched repaired described remembered counted followed noticed built"
_ADJS = "quiet golden narrow ancient bright heavy gentle purple distant crowded frozen silver hidden curious"
_ADVS = "slowly quickly carefully suddenly quietly happily nearly barely proudly"
_PLACES = (
    "near the station|after the storm|before dinner|in the old town|under the bridge|at the market|"
    "by the lake"
)
_QUESTIONS = "Did you hear|Have you seen|Could you bring|Why did they move|Where is"


def _sentence(rng: random.Random, held_out: bool) -> str:
    """Write one sentence.  Held-out sentences use their own templates so they never repeat a training one."""
    names, nouns = _NAMES.split(), _NOUNS.split()
    verbs, adjs, advs = _VERBS.split(), _ADJS.split(), _ADVS.split()
    places, questions = _PLACES.split("|"), _QUESTIONS.split("|")
    n = rng.randint(2, 9999)
    if held_out:
        t = rng.randrange(3)
        if t == 0:
            return f"{rng.choice(questions)} the {rng.choice(adjs)} {rng.choice(nouns)} {rng.choice(places)}?"
        if t == 1:
            return (f"Number {n}: {rng.choice(names)} and {rng.choice(names)} {rng.choice(advs)} "
                    f"{rng.choice(verbs)} {rng.randint(2, 40)} {rng.choice(nouns)}s.")
        return (f"Yesterday, the {rng.choice(nouns)} was {rng.choice(adjs)}, "
                f"and the {rng.choice(nouns)} was {rng.choice(adjs)} too.")
    t = rng.randrange(4)
    if t == 0:
        return (f"{rng.choice(names)} {rng.choice(advs)} {rng.choice(verbs)} the {rng.choice(adjs)} "
                f"{rng.choice(nouns)} {rng.choice(places)}.")
    if t == 1:
        return (f"The {rng.choice(adjs)} {rng.choice(nouns)} {rng.choice(verbs)} {rng.randint(2, 99)} "
                f"{rng.choice(nouns)}s, said {rng.choice(names)}.")
    if t == 2:
        return (f"In {1800 + rng.randrange(220)}, a {rng.choice(nouns)} {rng.choice(places)} was "
                f"{rng.choice(adjs)} and {rng.choice(adjs)}.")
    return (f"{rng.choice(names)} and the {rng.choice(nouns)} {rng.choice(verbs)} a {rng.choice(adjs)} "
            f"{rng.choice(nouns)}, then {rng.choice(advs)} left.")


def espeak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """Synthesize one utterance with espeak-ng and return float32 mono at 16 kHz."""
    out = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(speed), "-p", str(pitch), text],
        check=True, capture_output=True,
    ).stdout
    # espeak-ng writes a streaming WAV header with bogus sizes; parse the PCM after the "data" chunk id.
    idx = out.find(b"data")
    sr = int.from_bytes(out[24:28], "little")
    pcm = np.frombuffer(out[idx + 8:], dtype="<i2").astype(np.float32) / 32768.0
    audio = soxr.resample(pcm, sr, SR).astype(np.float32)
    return audio


@dataclass
class Utterance:
    text: str
    voice: str
    speed: int
    pitch: int


def make_utterances(n: int, held_out: bool, seed: int) -> list[Utterance]:
    """Pick sentences and voice settings; training never produces a held-out sentence (checked by caller)."""
    rng = random.Random(seed * 1000 + (7 if held_out else 1))
    voices = HELDOUT_VOICES if held_out else TRAIN_VOICES
    variants = HELDOUT_VARIANTS if held_out else TRAIN_VARIANTS
    utts, seen = [], set()
    while len(utts) < n:
        text = _sentence(rng, held_out)
        if text in seen:
            continue
        seen.add(text)
        utts.append(Utterance(text, f"{rng.choice(voices)}+{rng.choice(variants)}",
                              rng.randint(120, 230), rng.randint(15, 85)))
    return utts


def synthesize(utts: list[Utterance], cache: Path) -> list[np.ndarray]:
    """Synthesize (or load from the scratch cache) every utterance."""
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for i, u in enumerate(utts):
        f = cache / f"{i:05d}.npy"
        if f.exists():
            out.append(np.load(f))
            continue
        a = espeak(u.text, u.voice, u.speed, u.pitch)
        np.save(f, a)
        out.append(a)
    return out


def build_datasets(scratch: Path, seed: int, n_train: int = 800, n_heldout: int = 64) -> dict[str, Any]:
    """Generate train and held-out speech; the held-out set shares no sentence and no voice with training."""
    train_u = make_utterances(n_train, held_out=False, seed=seed)
    held_u = make_utterances(n_heldout, held_out=True, seed=seed)
    assert not {u.text for u in train_u} & {u.text for u in held_u}
    assert not {u.voice for u in train_u} & {u.voice for u in held_u}
    tag = f"seed{seed}"
    train = synthesize(train_u, scratch / f"train_{tag}_{n_train}")
    held = synthesize(held_u, scratch / f"heldout_{tag}_{n_heldout}")
    return {"train": train, "heldout": held, "train_utts": train_u, "heldout_utts": held_u}


def heldout_clips(held: list[np.ndarray], seed: int) -> dict[str, list[np.ndarray]]:
    """Fixed evaluation clips: 1 s crops and 3-5 s clips (utterances joined by pauses), varied levels."""
    rng = np.random.default_rng(seed + 99)
    short, long_ = [], []
    for a in held:
        if len(a) > SR:
            s = int(rng.integers(0, len(a) - SR))
            c = a[s:s + SR].copy()
        else:
            c = np.pad(a, (0, SR - len(a)))
        short.append(_set_rms(c, float(rng.uniform(-32, -16))))
    order = rng.permutation(len(held))
    for k in range(len(held) // 2):
        target = int(rng.uniform(3.0, 5.0) * SR)
        parts, n, j = [], 0, k
        while n < target:
            a = held[order[j % len(held)]]
            parts += [a, np.zeros(int(rng.uniform(0.05, 0.3) * SR), np.float32)]
            n += len(parts[-2]) + len(parts[-1])
            j += 7
        c = np.concatenate(parts)[:target]
        long_.append(_set_rms(c, float(rng.uniform(-32, -16))))
    return {"short": short, "long": long_}


def _set_rms(a: np.ndarray, db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(a**2)) + 1e-9)
    out = a * (10 ** (db / 20) / rms)
    peak = float(np.abs(out).max())
    if peak > 0.99:
        out *= 0.99 / peak
    return out.astype(np.float32)



# ----------------------------------------------------------------------------------------------------------
# Codec round trip (a training augmentation and an evaluation condition)
# ----------------------------------------------------------------------------------------------------------
def mp3_roundtrip_np(a: np.ndarray, sr_out: int = SR, bitrate: int | None = None) -> np.ndarray:
    """Encode a 16 kHz clip as MP3 (optionally at 44.1 kHz) with soundfile/libsndfile and decode it back."""
    x = a if sr_out == SR else soxr.resample(a, SR, sr_out)
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1, 1), sr_out, format="MP3", subtype="MPEG_LAYER_III")
    buf.seek(0)
    y, sr = sf.read(buf, dtype="float32")
    if y.ndim > 1:
        y = y.mean(axis=1)
    if sr != SR:
        y = soxr.resample(y, sr, SR).astype(np.float32)
    # Align: MP3 adds encoder/decoder delay; find the lag with cross-correlation.
    n = len(a)
    y = _align(a, y)
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def _align(ref: np.ndarray, y: np.ndarray, max_lag: int = 2400) -> np.ndarray:
    """Remove the codec delay: the lag (0..max_lag) that best correlates ``y`` with ``ref`` (via FFT)."""
    from scipy.signal import correlate

    n = min(len(ref), 16_000)
    if len(y) < n + max_lag:
        y = np.pad(y, (0, n + max_lag - len(y)))
    corr = correlate(y[: n + max_lag], ref[:n], mode="valid", method="fft")
    return y[int(np.argmax(corr)):]
