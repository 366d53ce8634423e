"""Train the small demo AudioSeal watermark checkpoints that ship with AudioSeal Studio.

Why this exists: the real AudioSeal weights live on a model hub that the product's machines cannot reach, so
the product ships a *tiny* model of the *real* AudioSeal architecture, trained here on synthetic speech, and
loads it through the real ``AudioSeal.load_generator(path)`` / ``AudioSeal.load_detector(path)``.  Swapping in
the real weights is a settings change (see the card this script writes).

One command does everything, seeded; the defaults are the shipped recipe (``make demo-models``):

    .venv/bin/python scripts/train_demo_watermark.py --steps 5326 --eval-every 500 --ship-early

1. generates speech with espeak-ng (many procedurally written sentences, several voices, speeds and pitches)
   and keeps a held-out set of sentences *and* voices that training never sees;
2. trains a generator/detector pair.  What made the 16-bit message learnable in CPU minutes (each measured):
   Kaiming re-init with an input gain (the init saddle, /work/shared/MODELS.md); a small initial bit
   embedding (no ELU saturation); a message loss that outweighs the detection loss; and a *carrier* loss that
   keeps every bit's change of the watermark audible (a floor on its energy share) and distinct (no two bits
   sharing a carrier).  Without the carrier loss the SNR penalty starves the bits the detector does not read
   yet and they stay at chance;
3. evaluates on held-out speech (short crops and 3-5 s clips, clean, after MP3 round trips, after 20 dB noise
   and trimmed) through the real loaders, and writes ``generator.pth``, ``detector.pth``, ``CARD.md`` and
   ``card.json``.

``--minutes`` is converted into a number of steps after a short speed calibration; the card records the
steps so that ``--steps N`` reproduces the run exactly (same seed, same data, same schedule).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from demo_watermark_common import (  # noqa: E402
    HELDOUT_VARIANTS,
    HELDOUT_VOICES,
    NBITS,
    SR,
    TRAIN_VARIANTS,
    TRAIN_VOICES,
    _set_rms,
    build_datasets,
    heldout_clips,
    mp3_roundtrip_np,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: media_ops
from media_ops.watermark import attacks  # noqa: E402

# ----------------------------------------------------------------------------------------------------------
# Architecture: the real AudioSeal SEANet, shrunk.  The loader forces norm "none", so we train without it.
# ----------------------------------------------------------------------------------------------------------
SEANET_CFG: dict[str, Any] = {
    "activation": "ELU",
    "activation_params": {"alpha": 1.0},
    "causal": False,
    "channels": 1,
    "compress": 2,
    "dilation_base": 2,
    "dimension": 32,
    "disable_norm_outer_blocks": 0,
    "kernel_size": 7,
    "last_kernel_size": 7,
    "lstm": 0,
    "n_filters": 8,
    "n_residual_layers": 1,
    "norm": "none",
    "norm_params": {},
    "pad_mode": "constant",
    "ratios": [8, 5, 4, 2],
    "residual_kernel_size": 3,
    "true_skip": True,
}
GENERATOR_CFG: dict[str, Any] = {
    "nbits": NBITS,
    "seanet": SEANET_CFG,
    "decoder": {"final_activation": None, "final_activation_params": None, "trim_right_ratio": 1.0},
}
DETECTOR_CFG: dict[str, Any] = {"nbits": NBITS, "seanet": SEANET_CFG, "detector": {"output_dim": 32}}

# Models
# ----------------------------------------------------------------------------------------------------------
def build_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """Build generator and detector with the real builder, then re-initialise (see MODELS.md: the saddle)."""
    from audioseal.builder import (
        AudioSealDetectorConfig,
        AudioSealWMConfig,
        create_detector,
        create_generator,
    )
    from audioseal.loader import AudioSeal

    gcfg = AudioSeal.parse_config(copy.deepcopy(GENERATOR_CFG), config_type=AudioSealWMConfig)
    dcfg = AudioSeal.parse_config(copy.deepcopy(DETECTOR_CFG), config_type=AudioSealDetectorConfig)
    gen, det = create_generator(gcfg), create_detector(dcfg)
    for model in (gen, det):
        first = True
        last: torch.nn.Module | None = None
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                # Kaiming-normal with linear gain: keeps the signal's scale layer after layer, so the detector
                # output depends on its input from step 0 instead of sitting at a saddle.
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)
                if first:
                    with torch.no_grad():
                        m.weight.mul_(10.0)  # input gain: speech at RMS ~0.05 would otherwise shrink
                    first = False
                last = m
        if model is gen and last is not None:
            with torch.no_grad():
                last.weight.mul_(0.02)  # start the watermark near the loud target instead of -28 dB SNR
    return gen, det


def _clean_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # The loader re-inserts "inner_conv." itself (convert_state_dict_for_scriptable_model); strip it here.
    return {k.replace("inner_conv.", ""): v.detach().clone() for k, v in model.state_dict().items()}


def save_checkpoints(gen: torch.nn.Module, det: torch.nn.Module, out: Path) -> tuple[Path, Path]:
    """Write loader-compatible checkpoint dicts ("xp.cfg" + "model")."""
    out.mkdir(parents=True, exist_ok=True)
    gp, dp = out / "generator.pth", out / "detector.pth"
    torch.save({"xp.cfg": copy.deepcopy(GENERATOR_CFG), "model": _clean_state(gen)}, gp)
    torch.save({"xp.cfg": copy.deepcopy(DETECTOR_CFG), "model": _clean_state(det)}, dp)
    return gp, dp


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Recipe:
    steps: int = 0
    batch: int = 8
    seconds: float = 0.5
    lr_max: float = 1e-3
    lr_min: float = 1e-4
    warmup: int = 30
    grad_clip: float = 1.0
    snr_loud_db: float = 10.0
    snr_final_db: float = 22.0
    loud_until: float = 0.25  # fraction of the run held at snr_loud_db
    ramp_until: float = 0.6  # fraction by which the target reaches snr_final_db
    snr_weight: float = 1.0
    msg_weight_max: float = 20.0
    msg_ramp_steps: int = 1
    # LR multiplier for the message-only parameters (generator's bit embedding, detector's output layer): bits are
    # discovered one by one (saddle-to-saddle), and a faster step on these factors shortens each escape.
    msg_lr_mult: float = 1.0
    aug_from: int = 800  # augmentations start once detection and most bits work
    partial_prob: float = 0.2
    nonspeech_prob: float = 0.1
    mp3_st_prob: float = 0.0  # straight-through MP3 augmentation probability (costly on CPU)
    init: str = ""  # checkpoint dir to continue from
    frame_msg_weight: float = 0.0  # weight of the per-sample bit BCE next to the BCE of the time mean
    augs: str = "product"  # "all", or "product": only edits the product promises to survive (MP3, mild noise/EQ)
    # Overrides of SEANET_CFG fields, or "output_dim" of the detector.
    arch: dict[str, Any] = field(default_factory=lambda: {"dimension": 128})
    # Scale of the generator's bit embedding at init.  PyTorch's N(0, 1) summed over 16 bits gives a latent
    # offset of std 4, which drives the decoder's ELUs into saturation, where a single bit barely matters.
    msg_init_scale: float = 0.25
    # Carrier floor: flipping any one bit must change at least this share of the watermark's energy.  Without
    # it the SNR penalty starves the carriers the detector does not read yet, the detector cannot learn to read
    # a carrier that is not there, and those bits stay at chance (measured on the 0.79 model: flipping a learned
    # bit moved 23-49 % of the watermark energy, flipping an unlearned one 0.3-3 %).
    carrier_floor: float = 0.25
    carrier_weight: float = 5.0
    # ...and two bits must not share one carrier (measured with the floor alone: bits 3 and 11 ended with carriers
    # at cosine 0.64 and stalled at 70-85 % while every other bit passed 94 %): penalise the squared cosine
    # between the 16 one-bit changes.
    carrier_decorrelation: float = 100.0
    # v3 ("augs": "v3"): the probability that a clip is also shifted by a random number of samples (a trim or
    # crop at any sample offset, labels shifted with it), on top of the one edit every clip draws.
    shift_prob: float = 0.3
    # v3: edit families never drawn; a clip that draws one gets a band limit instead (a low-pass or an 8/11 kHz
    # round trip, half each). v3b skips "polarity", "pitch" and "speed": the product's detection undoes
    # polarity and speed by search, and training them (presence-only polarity, straight-through pitch) taught
    # the detector to accept the wrong polarity and grid, which cost the message under the search.
    v3_skip: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def snr_target(self, step: int) -> float:
        f = step / max(1, self.steps)
        if f <= self.loud_until:
            return self.snr_loud_db
        if f >= self.ramp_until:
            return self.snr_final_db
        r = (f - self.loud_until) / (self.ramp_until - self.loud_until)
        return self.snr_loud_db + r * (self.snr_final_db - self.snr_loud_db)

    def lr(self, step: int) -> float:
        if step < self.warmup:
            return self.lr_max * (step + 1) / self.warmup
        f = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr_min + 0.5 * (self.lr_max - self.lr_min) * (1 + math.cos(math.pi * min(1.0, f)))


def _nonspeech(rng: np.random.Generator, n: int) -> np.ndarray:
    """Music-like tones or coloured noise, so the detector also learns that 'not speech' is not 'marked'."""
    t = np.arange(n) / SR
    if rng.random() < 0.6:
        out = np.zeros(n, np.float32)
        for _ in range(int(rng.integers(1, 4))):
            f0 = float(rng.uniform(80, 1000))
            for h in range(1, 6):
                out += (rng.uniform(0.1, 1) / h) * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.28))
        env = np.clip(np.sin(np.pi * t * rng.uniform(1, 6)) ** 2 + 0.2, 0, 1)
        return (out * env).astype(np.float32)
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1 / SR) + 1.0
    spec /= freqs ** rng.uniform(0, 1.5)
    return np.fft.irfft(spec, n).astype(np.float32)


def _nonspeech_v3(rng: np.random.Generator, n: int) -> np.ndarray:
    """v3's non-speech material, so the watermark is not speech-only: synthetic music (chords, bass, drums;
    ``attacks.synthetic_music``) half the time, coloured ambience noise a quarter, v2's tones/noise the rest.
    These clips are watermarked and used as clean negatives like speech."""
    k = rng.random()
    if k < 0.5:
        return attacks.synthetic_music(n, SR, rng)
    if k < 0.75:
        return attacks.coloured_noise(n, SR, rng)
    return _nonspeech(rng, n)


class Batcher:
    """Random crops of training speech with random levels (and a little non-speech)."""

    def __init__(self, train: list[np.ndarray], recipe: Recipe, seed: int) -> None:
        self.train = [a for a in train if len(a) > SR // 4]
        self.r = recipe
        self.rng = np.random.default_rng(seed)
        self.n = int(recipe.seconds * SR)

    def __call__(self) -> torch.Tensor:
        out = np.zeros((self.r.batch, 1, self.n), np.float32)
        for b in range(self.r.batch):
            if self.rng.random() < self.r.nonspeech_prob:
                c = _nonspeech_v3(self.rng, self.n) if self.r.augs == "v3" else _nonspeech(self.rng, self.n)
            else:
                a = self.train[int(self.rng.integers(len(self.train)))]
                if len(a) <= self.n:
                    c = np.pad(a, (0, self.n - len(a)))
                else:
                    s = int(self.rng.integers(0, len(a) - self.n))
                    c = a[s:s + self.n]
            out[b, 0] = _set_rms(c, float(self.rng.uniform(-38, -14)))
        return torch.from_numpy(out)


def _lowpass(x: torch.Tensor, cutoff_hz: float) -> torch.Tensor:
    spec = torch.fft.rfft(x, dim=-1)
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / SR)
    spec = spec * (freqs <= cutoff_hz).to(spec.dtype)
    return torch.fft.irfft(spec, n=x.shape[-1], dim=-1)


def _highpass(x: torch.Tensor, cutoff_hz: float) -> torch.Tensor:
    spec = torch.fft.rfft(x, dim=-1)
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / SR)
    spec = spec * (freqs >= cutoff_hz).to(spec.dtype)
    return torch.fft.irfft(spec, n=x.shape[-1], dim=-1)


def augment(x: torch.Tensor, rng: np.random.Generator, recipe: Recipe) -> torch.Tensor:
    """A cheap, differentiable edit per clip that the watermark should survive.

    Filters, gain and echo are all one per-clip frequency response applied with a single batched FFT, because
    per-clip autograd ops cost ~10 ms each on one CPU thread and doubled the step time.
    """
    B, _, n = x.shape
    freqs = np.fft.rfftfreq(n, 1 / SR)
    H = np.ones((B, 1, len(freqs)), np.complex64)
    noise_db = np.full((B, 1, 1), np.inf, np.float32)
    mp3 = []
    for b in range(B):
        k = rng.random()
        if recipe.augs == "product":
            # What the issue promises: MP3 round trips (straight-through), plus mild noise and gain/EQ
            # so the model does not overfit to bit-exact input.
            if k < 0.35:
                pass
            elif k < 0.55:
                noise_db[b] = rng.uniform(20, 40)
            elif k < 0.65:
                H[b, 0] = 10 ** (rng.uniform(-12, 6) / 20)
            elif k < 0.75:
                H[b, 0] = freqs <= rng.uniform(5500, 7500)
            else:
                mp3.append(b)
            continue
        if k < 0.3:
            pass
        elif k < 0.5:
            noise_db[b] = rng.uniform(15, 35)
        elif k < 0.65:
            H[b, 0] = freqs <= rng.uniform(3000, 7000)
        elif k < 0.75:
            H[b, 0] = freqs >= rng.uniform(50, 500)
        elif k < 0.85:
            H[b, 0] = 10 ** (rng.uniform(-12, 6) / 20)
        elif k < 0.85 + recipe.mp3_st_prob:
            mp3.append(b)
        else:  # echo (circular, which is harmless here)
            d = int(rng.integers(80, 800))
            H[b, 0] = 1 + rng.uniform(0.1, 0.4) * np.exp(-2j * np.pi * freqs * d / SR)
    y = torch.fft.irfft(torch.fft.rfft(x, dim=-1) * torch.from_numpy(H), n=n, dim=-1)
    nd = torch.from_numpy(noise_db)
    if torch.isfinite(nd).any():
        p = x.pow(2).mean(dim=-1, keepdim=True).detach()
        std = torch.sqrt(p / torch.pow(10.0, nd / 10) + 1e-12)
        y = y + torch.randn_like(y) * std
    if mp3:
        y = y.clone()
        for b in mp3:
            z = mp3_roundtrip_np(y[b, 0].detach().numpy(), SR if rng.random() < 0.5 else 44_100)
            zt = torch.from_numpy(z).view(1, n)
            y[b] = y[b] + (zt - y[b]).detach()  # straight-through: forward MP3, backward identity
    return y


_IR_BANK: list[np.ndarray] = []


def _impulse_responses() -> list[np.ndarray]:
    """Room impulse responses made once with pedalboard (Reverb at four room sizes, Delay at three echo
    times): convolving with them by FFT is a differentiable reverb/echo, where running pedalboard per clip
    would not pass gradients to the generator."""
    if not _IR_BANK:
        from pedalboard import Delay, Pedalboard, Reverb

        impulse = np.zeros((1, SR // 2), np.float32)
        impulse[0, 0] = 1.0
        boards = [Reverb(room_size=r, damping=0.5, wet_level=0.33, dry_level=0.7) for r in (0.2, 0.4, 0.6, 0.8)]
        boards += [Delay(delay_seconds=d, feedback=0.3, mix=0.35) for d in (0.05, 0.12, 0.25)]
        for plugin in boards:
            _IR_BANK.append(Pedalboard([plugin])(impulse, SR, reset=True)[0].astype(np.float32))
    return _IR_BANK


def _straight_through(y: torch.Tensor, z: np.ndarray) -> torch.Tensor:
    """Forward the edited clip ``z``, backward as if the edit were the identity (codecs, resamplers, pitch)."""
    zt = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).view_as(y)
    return y + (zt - y).detach()


# v3's edit families and the upper bounds of their shares of one uniform draw (16 % none, 16 % low-pass, ...,
# the last 5 % none again): kept as v3 drew them, so its recorded command reproduces.
_V3_BOUNDS = (0.16, 0.32, 0.36, 0.46, 0.50, 0.58, 0.64, 0.70, 0.75, 0.79, 0.90, 0.95)
_V3_FAMILIES = ("none", "lowpass", "highpass", "noise", "gain", "reverb", "resample", "codec", "pitch", "speed",
                "mix", "polarity", "none")


def augment_v3(x: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator,
               skip: frozenset[str] = frozenset(),
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """v3's training edits, one per clip (watermarked and clean alike), plus an independent random shift.

    Returns (edited clips, per-sample labels moved with the audio, per-clip message weight). The edits are
    the attack battery's families (media_ops/watermark/attacks.py) at training strength: band limits down to
    2.8 kHz (8 kHz resampling and 3-4 kHz low-passes), high-pass, noise 10-30 dB SNR, gain, reverb and echo
    (pedalboard impulse responses, FFT-convolved: differentiable), real round trips through soxr at 8 or
    11.025 kHz, MP3, AAC and Opus (PyAV; straight-through, sparingly: ~30 ms each), pitch +-1 semitone and
    speed 0.95-1.05 (straight-through), mixing with other material at -6..-15 dB, and polarity. Polarity
    trains presence only (message weight 0): an inverted watermark reads with inverted bits and the
    product's detection picks the polarity by re-synthesis (search._verify); teaching the bits to ignore
    the sign would fight the carriers the message relies on.
    """
    B, _, n = x.shape
    freqs = np.fft.rfftfreq(n, 1 / SR)
    H = np.ones((B, 1, len(freqs)), np.complex64)
    noise_db = np.full((B, 1, 1), np.inf, np.float32)
    sign = np.ones((B, 1, 1), np.float32)
    msg_w = torch.ones(B)
    st: list[tuple[int, str]] = []  # (clip, numpy edit) done straight-through after the linear part
    reverb: list[tuple[int, np.ndarray]] = []
    mix: list[tuple[int, float]] = []
    for b in range(B):
        family = _V3_FAMILIES[int(np.searchsorted(_V3_BOUNDS, rng.random(), side="right"))]
        if family in skip:
            family = "lowpass" if rng.random() < 0.5 else "resample"
        if family == "lowpass":
            H[b, 0] = freqs <= rng.uniform(2800, 4500)
        elif family == "highpass":
            H[b, 0] = freqs >= rng.uniform(100, 600)
        elif family == "noise":
            noise_db[b] = rng.uniform(10, 30)
        elif family == "gain":
            H[b, 0] = 10 ** (rng.uniform(-12, 6) / 20)
        elif family == "reverb":
            irs = _impulse_responses()
            reverb.append((b, irs[int(rng.integers(len(irs)))]))
        elif family == "resample":
            st.append((b, "resample_8k" if rng.random() < 0.6 else "resample_11k"))
        elif family == "codec":
            st.append((b, str(rng.choice(["mp3_24k", "mp3_64k", "aac_32k", "aac_64k", "opus_24k", "opus_48k"]))))
        elif family == "pitch":
            st.append((b, "pitch_up_1" if rng.random() < 0.5 else "pitch_down_1"))
        elif family == "speed":
            st.append((b, "speed_0.95" if rng.random() < 0.5 else "speed_1.05"))
        elif family == "mix":
            mix.append((b, float(rng.uniform(-15, -6))))
        elif family == "polarity":
            sign[b] = -1.0
            msg_w[b] = 0.0
    y = torch.fft.irfft(torch.fft.rfft(x, dim=-1) * torch.from_numpy(H), n=n, dim=-1) * torch.from_numpy(sign)
    if reverb:
        y = y.clone()
        for b, ir in reverb:
            m = n + len(ir)
            conv = torch.fft.irfft(torch.fft.rfft(y[b], n=m) * torch.fft.rfft(torch.from_numpy(ir), n=m), n=m)
            y[b] = conv[..., :n]
    if mix:
        y = y.clone()
        for b, rel_db in mix:
            half = B // 2  # the partner is another clean clip (never a watermarked one)
            other = x[half + (b + 1 + int(rng.integers(half - 1))) % half, 0].detach().numpy()
            if rng.random() < 0.4:
                other = attacks.synthetic_music(n, SR, rng)
            y[b, 0] = torch.from_numpy(attacks.mix(y[b, 0].detach().numpy(), other, rel_db)) - y[b, 0].detach() \
                + y[b, 0]
    nd = torch.from_numpy(noise_db)
    if torch.isfinite(nd).any():
        p = x.pow(2).mean(dim=-1, keepdim=True).detach()
        y = y + torch.randn_like(y) * torch.sqrt(p / torch.pow(10.0, nd / 10) + 1e-12)
    labels = labels.clone()
    if st:
        y = y.clone()
        for b, name in st:
            z = attacks.get(name)(y[b, 0].detach().numpy(), SR, rng)
            if name.startswith("speed"):  # labels follow the audio's new time axis (zeros past its end)
                idx = torch.from_numpy(np.minimum((np.arange(n) * (n / len(z))).astype(int), n - 1))
                labels[b] = torch.where(torch.from_numpy(np.arange(n) < len(z)), labels[b][idx], 0.0)
            y[b] = _straight_through(y[b], attacks._fit(z, n)[None, :])
    # A trim or crop at any sample offset: the first k samples go, zeros come in at the end (unmarked).
    shifts = [(b, int(rng.integers(1, 1600))) for b in range(B) if rng.random() < _SHIFT_PROB[0]]
    if shifts:
        y = y.clone()
        for b, k in shifts:
            y[b] = F.pad(y[b, :, k:], (0, k))
            labels[b] = F.pad(labels[b, k:], (0, k))
    return y, labels, msg_w


_SHIFT_PROB = [0.3]  # Recipe.shift_prob, set by train()


def _masks(rng: np.random.Generator, batch: int, n: int, partial_prob: float) -> torch.Tensor:
    """Per-sample 'is watermarked' labels: whole clips, or one marked/unmarked span (teaches localisation)."""
    m = np.ones((batch, 1, n), np.float32)
    for b in range(batch):
        if rng.random() < partial_prob:
            length = int(rng.uniform(0.2, 0.7) * n)
            s = int(rng.integers(0, n - length))
            if rng.random() < 0.5:
                m[b, 0] = 0
                m[b, 0, s:s + length] = 1
            else:
                m[b, 0, s:s + length] = 0
    return torch.from_numpy(m)


def losses(gen: torch.nn.Module, det: torch.nn.Module, x: torch.Tensor, msg: torch.Tensor, mask: torch.Tensor,
           step: int, recipe: Recipe, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    wm = gen.get_watermark(x, message=msg)
    y = x + wm * mask
    both = torch.cat([y, x], 0)
    B = x.shape[0]
    labels = torch.cat([mask[:, 0], torch.zeros_like(mask[:, 0])], 0)
    clip_w = torch.ones(B)
    if step >= recipe.aug_from and recipe.augs == "v3":
        both, labels, w = augment_v3(both, labels, rng, frozenset(recipe.v3_skip))
        clip_w = w[:B]
        mask = labels[:B].unsqueeze(1)
    elif step >= recipe.aug_from:
        both = augment(both, rng, recipe)
    out = det.detector(both)  # (2B, 2 + nbits, T) raw logits
    det_logit = out[:, 1] - out[:, 0]
    l_det = F.binary_cross_entropy_with_logits(det_logit, labels)

    bits = out[:B, 2:]  # (B, 16, T)
    m = mask[:, :, :] if recipe.augs != "v3" else mask * clip_w.view(B, 1, 1)  # polarity clips: no message
    tgt = msg.float().unsqueeze(-1).expand_as(bits)
    per = F.binary_cross_entropy_with_logits(bits, tgt, reduction="none")
    l_frame = (per * m).sum() / (m.sum() * NBITS + 1e-6)
    mean_logit = (bits * m).sum(-1) / (m.sum(-1) + 1e-6)
    has_msg = (m.sum(-1) > 0).float()  # (B, 1)
    if recipe.augs == "v3":
        l_mean = (F.binary_cross_entropy_with_logits(mean_logit, msg.float(), reduction="none") * has_msg).sum() / (
            has_msg.sum() * NBITS + 1e-6)
    else:  # v2's expression, kept verbatim so its recorded command reproduces bit for bit
        l_mean = F.binary_cross_entropy_with_logits(mean_logit, msg.float())
    msg_w = recipe.msg_weight_max * min(1.0, step / max(1, recipe.msg_ramp_steps))

    px = x.pow(2).sum(dim=(1, 2))
    pw = wm.pow(2).sum(dim=(1, 2))
    snr = 10 * torch.log10((px + 1e-9) / (pw + 1e-12))
    tgt_snr = recipe.snr_target(step)
    under = F.relu(tgt_snr - snr)  # watermark too loud
    over = F.relu(snr - tgt_snr)  # watermark quieter than allowed: wasted robustness
    l_snr = ((under / 3.0) ** 2 + 0.25 * (over / 3.0) ** 2).mean()

    loss = l_det + msg_w * (recipe.frame_msg_weight * l_frame + l_mean) + recipe.snr_weight * l_snr
    if recipe.carrier_floor:
        l_floor, l_corr = carrier_loss(gen, x[:1], msg[:1], recipe.carrier_floor)
        loss = loss + recipe.carrier_weight * l_floor + recipe.carrier_decorrelation * l_corr
    with torch.no_grad():
        bacc = (((mean_logit > 0).long() == msg).float() * has_msg).sum().item() / max(
            1.0, has_msg.sum().item() * NBITS)
        dacc = ((det_logit > 0).float() == labels).float().mean().item()
    return loss, {"loss": loss.item(), "det": l_det.item(), "msg": (l_frame + l_mean).item(),
                  "snr": snr.mean().item(), "snr_min": snr.min().item(), "snr_tgt": tgt_snr,
                  "bacc": bacc, "dacc": dacc}


def carrier_loss(gen: torch.nn.Module, x: torch.Tensor, msg: torch.Tensor,
                 floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(floor penalty, correlation penalty) of the 16 one-bit changes of the watermark of one clip.

    The floor penalty grows when flipping a bit changes less than ``floor`` of the watermark energy; the
    correlation penalty is the mean squared cosine between the changes of two different bits (each signed
    towards "bit = 1").  The message as given and its 16 one-bit flips are decoded in one batch.
    """
    hidden = gen.encoder(x).expand(NBITS + 1, -1, -1)
    flips = msg.repeat(NBITS + 1, 1)
    flips[1:] ^= torch.eye(NBITS, dtype=flips.dtype)
    wm = gen.decoder(gen.msg_processor(hidden, flips))
    diff = (wm[1:] - wm[:1]).flatten(1)  # (16, samples)
    share = diff.pow(2).sum(-1) / (wm[:1].pow(2).sum() + 1e-12)
    l_floor = (F.relu(floor - share) / floor).pow(2).mean()
    sign = (flips[1:].diagonal() * 2 - 1).to(diff.dtype).unsqueeze(1)  # +1 where the flip set the bit to 1
    unit = F.normalize(diff * sign, dim=1)
    cos = unit @ unit.T
    l_corr = (cos - torch.diag(torch.diagonal(cos))).pow(2).sum() / (NBITS * (NBITS - 1))
    return l_floor, l_corr


def log(msg: str, logfile: Path | None) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if logfile is not None:
        with open(logfile, "a") as f:
            f.write(line + "\n")


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    scratch = Path(args.scratch)
    logfile = Path(args.log) if args.log else None
    t0 = time.time()
    data = build_datasets(scratch, args.seed, n_train=args.n_train)
    log(f"data: {len(data['train'])} train utterances "
        f"({sum(len(a) for a in data['train']) / SR / 60:.1f} min), "
        f"{len(data['heldout'])} held-out, {time.time() - t0:.0f}s", logfile)

    import eval_demo_watermark as ev

    clips = heldout_clips(data["heldout"], args.seed)
    quick = {"short": clips["short"][:24], "long": clips["long"][:6]}

    recipe = Recipe(**json.loads(args.recipe)) if args.recipe else Recipe()
    recipe.init = args.init or ""
    _SHIFT_PROB[0] = recipe.shift_prob
    for k, v in recipe.arch.items():
        if k == "output_dim":
            DETECTOR_CFG["detector"]["output_dim"] = v
        else:
            SEANET_CFG[k] = v
    gen, det = build_models()
    if recipe.init:
        from audioseal import AudioSeal

        g2 = AudioSeal.load_generator(str(Path(recipe.init) / "generator.pth"))
        d2 = AudioSeal.load_detector(str(Path(recipe.init) / "detector.pth"))
        gen.load_state_dict(g2.state_dict())
        det.load_state_dict(d2.state_dict())
        log(f"continuing from {recipe.init}", logfile)
    else:
        with torch.no_grad():
            gen.msg_processor.msg_processor.weight.mul_(recipe.msg_init_scale)
    params = list(gen.parameters()) + list(det.parameters())
    fast = list(gen.msg_processor.parameters()) + list(det.detector[-1].parameters())
    fast_ids = {id(p) for p in fast}
    slow = [p for p in params if id(p) not in fast_ids]
    opt = torch.optim.Adam([{"params": slow, "mult": 1.0}, {"params": fast, "mult": recipe.msg_lr_mult}],
                           lr=recipe.lr_max)
    batcher = Batcher(data["train"], recipe, args.seed + 1)
    rng = np.random.default_rng(args.seed + 2)
    gtorch = torch.Generator().manual_seed(args.seed + 3)

    def one_step(step: int) -> dict[str, float]:
        for g in opt.param_groups:
            g["lr"] = recipe.lr(step) * g["mult"]
        x = batcher()
        msg = torch.randint(0, 2, (recipe.batch, NBITS), generator=gtorch)
        mask = _masks(rng, recipe.batch, x.shape[-1], recipe.partial_prob)
        loss, st = losses(gen, det, x, msg, mask, step, recipe, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        opt.step()
        return st

    if args.ship_step:
        # Ship a checkpoint that --keep-checkpoints kept (e.g. the best on the attack battery, or the last one
        # before a deadline) exactly as the run would have shipped it had it stopped there.
        recipe.steps = args.steps
        kept = Path(args.scratch) / f"run_seed{args.seed}" / f"step{args.ship_step}"
        from audioseal import AudioSeal

        gen.load_state_dict(AudioSeal.load_generator(str(kept / "generator.pth")).state_dict())
        det.load_state_dict(AudioSeal.load_detector(str(kept / "detector.pth")).state_dict())
        gen.eval(), det.eval()
        _maybe_ship(gen, det, args, recipe, data, args.ship_step, t0, time.time() - args.train_seconds,
                    ev.read_card_metrics(Path(args.out)), logfile, ev, final=True)
        return

    if not args.steps:
        # Calibrate: time a few steps, then fix the number of steps (recorded in the card for --steps).
        recipe.steps = 10_000
        tc = time.time()
        for s in range(20):
            one_step(s)
        per = (time.time() - tc) / 20
        budget = args.minutes * 60 * 0.93 - (time.time() - t0)
        recipe.steps = max(100, int(budget / (per * 1.04)))  # ~4 % for quick evals
        start = 20
        log(f"calibration: {per * 1000:.0f} ms/step -> {recipe.steps} steps", logfile)
    else:
        recipe.steps = args.steps
        start = 0

    best_path = Path(args.out)
    shipped = ev.read_card_metrics(best_path)
    t_train = time.time()
    ema: dict[str, float] = {}
    for step in range(start, recipe.steps):
        st = one_step(step)
        for k, v in st.items():
            ema[k] = v if k not in ema else 0.95 * ema[k] + 0.05 * v
        if step % 50 == 0:
            log(f"step {step}/{recipe.steps} lr {recipe.lr(step):.2e} "
                + " ".join(f"{k} {v:.3f}" for k, v in ema.items()), logfile)
        last = step == recipe.steps - 1
        if args.eval_every and step > 0 and step % args.eval_every == 0 and not last:
            gen.eval(), det.eval()
            with torch.no_grad():
                m = ev.evaluate_models(gen, det, quick, robust=False)
            gen.train(), det.train()
            log(f"eval@{step} snr_target {recipe.snr_target(step):.1f}: " + ev.fmt(m), logfile)
            save_checkpoints(gen, det, Path(args.scratch) / f"run_seed{args.seed}" / "latest")  # to inspect
            if args.keep_checkpoints:  # every evaluated step, to pick the best on the attack battery later
                save_checkpoints(gen, det, Path(args.scratch) / f"run_seed{args.seed}" / f"step{step}")
            if args.ship_early and recipe.snr_target(step) >= recipe.snr_final_db:
                _maybe_ship(gen, det, args, recipe, data, step, t0, t_train, shipped, logfile, ev)
                shipped = ev.read_card_metrics(best_path)
    _maybe_ship(gen, det, args, recipe, data, recipe.steps, t0, t_train, shipped, logfile, ev, final=True)


def _maybe_ship(gen: torch.nn.Module, det: torch.nn.Module, args: argparse.Namespace, recipe: Recipe,
                data: dict[str, Any], step: int, t0: float, t_train: float, shipped: dict[str, Any] | None,
                logfile: Path | None, ev: Any, final: bool = False) -> None:
    """Save to scratch, evaluate through the real loaders, ship only if better than what is shipped."""
    scratch_ck = Path(args.scratch) / f"run_seed{args.seed}" / f"step{step}"
    save_checkpoints(gen, det, scratch_ck)
    clips = heldout_clips(data["heldout"], args.seed)
    metrics = ev.evaluate_paths(scratch_ck / "generator.pth", scratch_ck / "detector.pth", clips)
    log(f"full eval step {step}: {json.dumps(metrics)}", logfile)
    # The run's last checkpoint is what the command produces, so it always ships (that keeps `--steps N`
    # reproducible); an intermediate one ships only if it beats what is there, so an interrupted run still
    # leaves its best.
    ok, why = (True, "final checkpoint") if final else ev.better_than(metrics, shipped)
    if not ok:
        log(f"not shipped: {why}", logfile)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".tmp_ship"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    shutil.copy(scratch_ck / "generator.pth", tmp / "generator.pth")
    shutil.copy(scratch_ck / "detector.pth", tmp / "detector.pth")
    info = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "reproduce": (f"python scripts/train_demo_watermark.py --steps {recipe.steps} --seed {args.seed} "
                      f"--threads {args.threads} --eval-every {args.eval_every}"
                      + (" --ship-early" if args.ship_early else "")
                      + (f" --recipe '{args.recipe}'" if args.recipe else "")
                      + (f" --init {args.init}" if args.init else "")
                      + (f" (stopped/shipped at step {step})" if step != recipe.steps else "")),
        "seed": args.seed,
        "steps_done": step,
        "steps_planned": recipe.steps,
        "train_seconds": round(time.time() - t_train),
        "total_seconds": round(time.time() - t0),
        "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch threads {args.threads}, "
                    f"torch {torch.__version__}, no GPU",
        "recipe": asdict(recipe),
        "architecture": {"generator": GENERATOR_CFG, "detector": DETECTOR_CFG,
                         "generator_params": sum(p.numel() for p in gen.parameters()),
                         "detector_params": sum(p.numel() for p in det.parameters())},
        "data": {
            "train_utterances": len(data["train"]),
            "train_minutes": round(sum(len(a) for a in data["train"]) / SR / 60, 1),
            "train_voices": TRAIN_VOICES, "train_variants": TRAIN_VARIANTS,
            "heldout_utterances": len(data["heldout"]),
            "heldout_voices": HELDOUT_VOICES, "heldout_variants": HELDOUT_VARIANTS,
            "synthesizer": "espeak-ng, speed 120-230 wpm, pitch 15-85, resampled 22.05k->16k with soxr",
        },
        "metrics": metrics,
    }
    init_card = Path(args.init) / "card.json" if args.init else None
    if init_card is not None and init_card.exists():
        prev = json.loads(init_card.read_text())
        # Training continued from an earlier shipped stage: keep its lineage so the card stays reproducible.
        info["init_from"] = {k: prev.get(k) for k in ("reproduce", "steps_done", "train_seconds", "recipe")}
        info["init_from"]["stages_before"] = prev.get("init_from")
    if shipped is not None and isinstance(shipped.get("history"), list):
        info["history"] = shipped["history"]
    else:
        info["history"] = []
    info["history"].append({"created": info["created"], "steps_done": step, "seed": args.seed,
                            "init": args.init or None, "summary": ev.summary(metrics)})
    (tmp / "card.json").write_text(json.dumps(info, indent=2) + "\n")
    (tmp / "CARD.md").write_text(ev.card_markdown(info))
    for name in ("generator.pth", "detector.pth", "card.json", "CARD.md"):
        os.replace(tmp / name, out / name)
    tmp.rmdir()
    log(f"SHIPPED step {step} to {out}: {ev.summary(metrics)}", logfile)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=12.0, help="wall-clock budget (converted into steps)")
    p.add_argument("--steps", type=int, default=0, help="exact number of steps (overrides --minutes)")
    p.add_argument("--out", default="media_ops/demo_models/audioseal")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--scratch", default="/tmp/wm_scratch")
    p.add_argument("--log", default="/tmp/wm_train.log")
    p.add_argument("--n-train", type=int, default=800)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument(
        "--ship-early", action="store_true",
        help="ship intermediate checkpoints once the SNR target is final and they beat the shipped ones",
    )
    p.add_argument("--recipe", default="", help="JSON overrides of Recipe fields")
    p.add_argument("--init", default="", help="continue from a directory with generator.pth/detector.pth")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep a checkpoint at every --eval-every step under --scratch (for bench-robustness)")
    p.add_argument("--ship-step", type=int, default=0,
                   help="ship the checkpoint kept at this step (with the run's other arguments) and exit")
    p.add_argument("--train-seconds", type=float, default=0.0, help="with --ship-step: the run's training time")
    p.add_argument("--data-only", action="store_true", help="only synthesize the data (warms the cache)")
    args = p.parse_args(argv)
    if args.data_only:
        t0 = time.time()
        d = build_datasets(Path(args.scratch), args.seed, n_train=args.n_train)
        print(f"{len(d['train'])} train / {len(d['heldout'])} held-out utterances in {time.time() - t0:.0f}s")
        return
    train(args)


if __name__ == "__main__":
    main()
