"""AudioSeal watermark embedding and detection.

The models work on 16 kHz mono. Embedding keeps the input's sample rate, channels and length: the
watermark is computed on the 16 kHz mono mix, brought back to the original rate with an anti-aliased
resampler and added to every channel. Long audio is processed in windows with context on both sides
(only each window's centre is kept), so cost per second stays flat and memory stays bounded, and a
watermark that spans a window boundary is still detected.

Detection reports regions (``segments``), each decoded from its own samples, and finds a watermark that an
edit moved off the detector's frame grid (trims, crops, splices), inverted or (optionally) sped up: see
``AlignmentSearch``, the region rule above ``REGION_GAP_SECONDS`` and ``_verify``.

Messages: the API speaks 4 hex digits; the model speaks 16 bits. Bit ``i`` is bit ``15 - i`` of the
integer (most significant first), so "8000" is ``[1, 0, …, 0]``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from media_ops import audio
from media_ops.errors import MediaError

logger = logging.getLogger(__name__)

os.environ.setdefault("NO_TORCH_COMPILE", "1")  # audioseal otherwise compiles lazily: slow, and no faster

MODEL_RATE = 16_000
NBITS = 16
HOP_SECONDS = 0.01  # localisation curve: 100 values per second
DETECTION_THRESHOLD = 0.5
MESSAGE_THRESHOLD = 0.5
LOGIT_CLIP = 10.0  # detection logits are clipped here before averaging: one saturated frame can't outvote many
# Zero padding changes a SEANet output near the padded end: every conv re-pads its own input, so the padding
# reaches back one receptive field (measured: the last 2,431 samples, 0.15 s, changed by up to 27 % of the
# watermark's amplitude). A window with at least this much real audio after its kept centre can be padded
# without changing that centre at all; a window that ends the audio is never padded (batched only with
# windows of exactly its length).
PAD_SAFE_SECONDS = 0.5
PRECISIONS = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}
_HEX = re.compile(r"^[0-9a-fA-F]{4}$")


# --- messages -----------------------------------------------------------------------------------------------


def parse_message(text: str) -> list[int]:
    """4 hex digits -> 16 bits, most significant first. Raises ValueError on anything else."""
    if not isinstance(text, str) or not _HEX.match(text.strip()):
        raise ValueError("message must be exactly 4 hexadecimal digits (16 bits), e.g. 1A2B")
    value = int(text.strip(), 16)
    return [(value >> (NBITS - 1 - i)) & 1 for i in range(NBITS)]


def format_message(bits: list[int] | np.ndarray) -> str:
    value = 0
    for bit in bits:
        value = (value << 1) | (1 if int(bit) else 0)
    return f"{value:04X}"


def random_message() -> str:
    return f"{int.from_bytes(os.urandom(2), 'big'):04X}"


# --- models -------------------------------------------------------------------------------------------------


def _describe(source: str) -> tuple[str, str]:
    """(name, version) of a model source: a checkpoint path (hashed) or an audioseal card name."""
    path = Path(source)
    if path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        card = path.parent / "card.json"
        family = path.parent.name
        if card.is_file():
            try:
                family = json.loads(card.read_text()).get("name", family)
            except (OSError, ValueError):
                pass
        return f"{family}/{path.stem}", digest
    return source, source


@dataclass
class WatermarkModels:
    """A loaded generator + detector pair, held by the worker's model pool."""

    generator: Any
    detector: Any
    generator_name: str
    generator_version: str
    detector_name: str
    detector_version: str
    device: str
    window_seconds: float = 10.0
    context_seconds: float = 1.0
    dtype: Any = None  # torch dtype of the weights and inputs on CUDA (fp16/bf16); None = float32

    @classmethod
    def load(
        cls, generator_source: str, detector_source: str, *, device: str = "cpu", precision: str = "fp32"
    ) -> WatermarkModels:
        """Load both checkpoints. ``precision`` (fp32/fp16/bf16) applies on CUDA only; on CPU it is ignored
        (reduced precision is slower there and not measured equal), with a warning."""
        import torch
        from audioseal import AudioSeal

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
        dtype = None
        if PRECISIONS[precision] is not None:
            if str(device).startswith("cuda"):
                dtype = getattr(torch, PRECISIONS[precision])
            else:
                logger.warning("watermark precision %s ignored on %s: fp32", precision, device)

        for source in (generator_source, detector_source):
            looks_like_path = os.sep in source or source.endswith((".pth", ".pt"))
            if looks_like_path and not Path(source).is_file():
                raise FileNotFoundError(f"watermark checkpoint not found: {source}")
        generator = AudioSeal.load_generator(generator_source, device=torch.device(device)).eval()
        detector = AudioSeal.load_detector(detector_source, device=torch.device(device)).eval()
        if dtype is not None:
            generator, detector = generator.to(dtype), detector.to(dtype)
        gen_name, gen_version = _describe(generator_source)
        det_name, det_version = _describe(detector_source)
        return cls(generator, detector, gen_name, gen_version, det_name, det_version, device, dtype=dtype)

    def warm(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Forward passes so the first job doesn't pay for lazy initialisation: 1 s of silence at each batch
        size, and on CUDA also a full window (the shape long inputs are cut into), so the allocator and the
        conv algorithm choice are settled for the shapes batching will use."""
        shapes = [(b, MODEL_RATE) for b in sorted(set(batch_sizes) | {1})]
        if str(self.device).startswith("cuda"):
            window = int((self.window_seconds + 2 * self.context_seconds) * MODEL_RATE)
            shapes += [(b, window) for b in sorted(set(batch_sizes) | {1})]
        for batch, n in shapes:
            silence = [np.zeros(n, dtype=np.float32)] * batch
            self.watermark_16k_batch(silence, [[0] * NBITS] * batch, max_batch=batch)
            self.detect_16k_batch(silence, max_batch=batch)

    # -- 16 kHz mono primitives, windowed --

    def _windows(self, n: int) -> list[tuple[int, int, int, int]]:
        """(ctx_start, start, end, ctx_end) windows covering [0, n); one window when short enough."""
        win = int(self.window_seconds * MODEL_RATE)
        ctx = int(self.context_seconds * MODEL_RATE)
        if n <= win + 2 * ctx:
            return [(0, 0, n, n)]
        out = []
        for start in range(0, n, win):
            end = min(n, start + win)
            out.append((max(0, start - ctx), start, end, min(n, end + ctx)))
        return out

    def watermark_16k(self, x: np.ndarray, bits: list[int]) -> np.ndarray:
        """The watermark (not the watermarked audio) for 16 kHz mono ``x``."""
        return self.watermark_16k_batch([x], [bits], max_batch=1)[0]

    def detect_16k(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample watermark probability and per-bit probability (of a 1) for 16 kHz mono ``x``.

        Same arithmetic as ``AudioSealDetector.forward``/``detect_watermark`` (softmax on the two detection
        channels, sigmoid of the time-mean of the bit logits), with the time-mean taken over the whole
        input across windows.
        """
        return self.detect_16k_batch([x], max_batch=1)[0]

    # -- batching: several inputs (and windows) in one forward pass, results equal to one at a time --

    def _batches(self, lengths: list[int], max_batch: int) -> list[list[_Chunk]]:
        """Cut every input into windows and group the windows into batches of at most ``max_batch``.

        Windows with enough real audio after their kept centre (``PAD_SAFE_SECONDS``) are padded to the
        longest in their batch; the others (those that end an input, and every short input) only share a
        batch with windows of exactly their length. Either way each window's kept centre is what it would be
        alone (up to float rounding of batched kernels).
        """
        safe = int(PAD_SAFE_SECONDS * MODEL_RATE)
        paddable: list[_Chunk] = []
        exact: dict[int, list[_Chunk]] = {}
        for item, n in enumerate(lengths):
            for c0, s, e, c1 in self._windows(n):
                chunk = _Chunk(item, c0, s, e, c1)
                if max_batch > 1 and c1 - e >= safe:
                    paddable.append(chunk)
                else:
                    exact.setdefault(chunk.length, []).append(chunk)
        paddable.sort(key=lambda c: -c.length)
        groups = [paddable, *exact.values()]
        return [g[i : i + max_batch] for g in groups for i in range(0, len(g), max(1, max_batch))]

    def _stack(self, xs: list[np.ndarray], batch: list[_Chunk]) -> Any:
        """The batch's windows as one (batch, 1, longest) tensor, zero-padded on the right."""
        import torch

        longest = max(c.length for c in batch)
        out = np.zeros((len(batch), 1, longest), dtype=np.float32)
        for row, c in enumerate(batch):
            out[row, 0, : c.length] = xs[c.item][c.c0 : c.c1]
        tensor = torch.from_numpy(out).to(self.device)
        return tensor if self.dtype is None else tensor.to(self.dtype)

    def watermark_16k_batch(
        self, xs: list[np.ndarray], bits: list[list[int]], *, max_batch: int = 8
    ) -> list[np.ndarray]:
        """``watermark_16k`` for several inputs (any lengths) at once, ``max_batch`` windows per forward."""
        import torch

        if len(bits) != len(xs):
            raise ValueError("one message per input")
        outs = [np.zeros(len(x), dtype=np.float32) for x in xs]
        with torch.inference_mode():
            for batch in self._batches([len(x) for x in xs], max_batch):
                chunk = self._stack(xs, batch)
                message = torch.tensor([bits[c.item] for c in batch], dtype=torch.int64, device=self.device)
                wm = self.generator.get_watermark(chunk, sample_rate=MODEL_RATE, message=message)
                wm = wm.float().cpu().numpy()
                for row, c in enumerate(batch):
                    outs[c.item][c.s : c.e] = wm[row, 0, c.s - c.c0 : c.e - c.c0]
        return outs

    def detect_16k_batch(
        self, xs: list[np.ndarray], *, max_batch: int = 8
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``detect_16k`` for several inputs (any lengths) at once, ``max_batch`` windows per forward."""
        results = []
        for x, found in zip(xs, self.analyse_16k_batch(xs, max_batch=max_batch), strict=True):
            bit_probs = 1.0 / (1.0 + np.exp(-found.hop_bits.sum(axis=0) / max(1, len(x))))
            results.append((found.probs, bit_probs.astype(np.float32)))
        return results

    @property
    def frame_samples(self) -> int:
        """The detector's frame (its encoder's hop): the grid a watermark is read on (320 for AudioSeal)."""
        encoder = getattr(self.detector, "detector", [None])[0]
        return int(getattr(encoder, "hop_length", 320))

    def _raw(self, chunk: Any) -> Any:
        """The detector's raw output (batch, 2 + nbits, samples) for a (batch, 1, samples) tensor."""
        det = self.detector
        if det.normalizer is not None:
            chunk = det.normalizer.loudness_normalization(chunk)
        raw = det.detector(chunk)
        if raw.shape[-1] != chunk.shape[-1]:  # pragma: no cover - AudioSeal keeps the time axis
            raise MediaError("PROCESSING_FAILED", "detector changed the time axis")
        return raw

    def analyse_16k_batch(
        self, xs: list[np.ndarray], *, drops: list[int] | None = None, max_batch: int = 8
    ) -> list[Analysis]:
        """Per-sample watermark probability, and per 10 ms hop the sums of the bit logits and of the (clipped)
        detection logit, for several 16 kHz mono inputs (any lengths), ``max_batch`` windows per forward.

        ``drops[i]`` leading samples of input ``i`` go through the model but are left out of its result (the
        zeros an alignment search prepends to move the frame grid).
        """
        import torch

        drops = drops or [0] * len(xs)
        hop = int(MODEL_RATE * HOP_SECONDS)
        out = [Analysis.empty(len(x) - d, hop) for x, d in zip(xs, drops, strict=True)]
        with torch.inference_mode():
            for batch in self._batches([len(x) for x in xs], max_batch):
                raw = self._raw(self._stack(xs, batch))
                probs = torch.softmax(raw[:, :2, :].float(), dim=1)[:, 1, :].cpu().numpy()
                logits = (raw[:, 1, :].double() - raw[:, 0, :].double()).clamp(-LOGIT_CLIP, LOGIT_CLIP)
                logits = logits.cpu().numpy()
                bits = raw[:, 2:, :].double().cpu().numpy()
                for row, c in enumerate(batch):
                    drop = drops[c.item]
                    s = max(c.s, drop)
                    if s >= c.e:
                        continue
                    kept = slice(s - c.c0, c.e - c.c0)
                    out[c.item].add(s - drop, probs[row, kept], logits[row, kept], bits[row, :, kept])
        return out


@dataclass
class Analysis:
    """What the detector said about one signal: per sample, the watermark probability; per hop of
    ``HOP_SECONDS``, the sums of the 16 bit logits and of the detection logit (clipped to ``LOGIT_CLIP``),
    so any stretch of hops can be decoded on its own."""

    probs: np.ndarray  # (samples,) float32
    hop_bits: np.ndarray  # (hops, nbits) float64
    hop_logits: np.ndarray  # (hops,) float64
    hop: int

    @classmethod
    def empty(cls, n: int, hop: int) -> Analysis:
        hops = -(-n // hop)
        return cls(np.zeros(n, np.float32), np.zeros((hops, NBITS)), np.zeros(hops), hop)

    def add(self, start: int, probs: np.ndarray, logits: np.ndarray, bits: np.ndarray) -> None:
        """Results for samples [start, start + len(probs))."""
        self.probs[start : start + len(probs)] = probs
        cuts = np.arange((-start) % self.hop, len(probs), self.hop)
        starts = cuts if cuts.size and cuts[0] == 0 else np.concatenate([[0], cuts]).astype(int)
        first = start // self.hop
        self.hop_logits[first : first + len(starts)] += np.add.reduceat(logits, starts)
        self.hop_bits[first : first + len(starts)] += np.add.reduceat(bits, starts, axis=-1).T


@dataclass(frozen=True)
class _Chunk:
    """One window of input ``item``: samples [c0, c1) go through the model, [s, e) of the output is kept."""

    item: int
    c0: int
    s: int
    e: int
    c1: int

    @property
    def length(self) -> int:
        return self.c1 - self.c0


# --- the engine ---------------------------------------------------------------------------------------------


def embed(models: WatermarkModels, samples: np.ndarray, sample_rate: int, bits: list[int]) -> np.ndarray:
    """Watermark ``samples`` (channels, n) at ``sample_rate``; returns the same shape, rate and length."""
    return embed_batch(models, [(samples, sample_rate, bits)], max_batch=1)[0]


def embed_batch(
    models: WatermarkModels, items: list[tuple[np.ndarray, int, list[int]]], *, max_batch: int = 8
) -> list[np.ndarray]:
    """``embed`` for several (samples, sample_rate, bits) inputs, their windows run ``max_batch`` at a time.

    Each result equals ``embed`` of that input alone, within float tolerance (``media_ops/tests``).
    """
    for _, _, bits in items:
        if len(bits) != NBITS:
            raise ValueError(f"expected {NBITS} bits")
    mono16 = [audio.resample(audio.to_mono(samples), rate, MODEL_RATE) for samples, rate, _ in items]
    wm16 = models.watermark_16k_batch(mono16, [bits for _, _, bits in items], max_batch=max_batch)
    out = []
    for (samples, rate, _), watermark in zip(items, wm16, strict=True):
        wm = audio.resample(watermark, MODEL_RATE, rate)
        n = samples.shape[-1]
        wm = wm[:n] if len(wm) >= n else np.pad(wm, (0, n - len(wm)))
        out.append(np.clip(samples.astype(np.float32) + wm[None, :].astype(np.float32), -1.0, 1.0))
    return out


def snr_db(signal: np.ndarray, watermarked: np.ndarray) -> float:
    noise = watermarked.astype(np.float64) - signal.astype(np.float64)
    p_signal = float(np.mean(signal.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise**2))
    if p_noise == 0:
        return float("inf")
    return 10.0 * np.log10(max(p_signal, 1e-20) / p_noise)


def confidence_label(probability: float) -> str:
    """How sure the detector is of its decision (either way), for people who won't read a probability."""
    margin = abs(probability - 0.5)
    if margin >= 0.35:
        return "high"
    if margin >= 0.15:
        return "medium"
    return "low"


# --- detection: regions, and the search for a watermark an edit moved ---------------------------------------

# The region rule. A hop of the localisation curve (HOP_SECONDS) is marked when its mean watermark probability
# is above DETECTION_THRESHOLD; marked runs separated by gaps of at most REGION_GAP_SECONDS are joined into one
# region; regions shorter than REGION_MIN_SECONDS (in audio shorter than twice that: than half the audio) are
# dropped as islands. Each region is decoded from its own samples only.
REGION_GAP_SECONDS = 0.1
REGION_MIN_SECONDS = 0.2
SEARCH_HINT = 0.2  # the search excerpt stays where the plain pass's curve reaches this, if it does anywhere
POLARITY_SECONDS = 2.0  # how much of a region the check by re-synthesis re-embeds (its loudest part)
CONFIRM_Z = 8.0  # the evidence (see _verify) a region needs, unless the whole-file rule already said "watermarked"


@dataclass(frozen=True)
class AlignmentSearch:
    """How far detection looks for a watermark that an edit moved: a trim, crop or splice that moved the
    detector's frame grid (the generator's 20 ms frames, 320 samples at 16 kHz), polarity inversion, and a
    speed change by resampling. The detector itself is the judge throughout; nothing here is model-specific.

    1. Offset: an excerpt of ``excerpt_frames`` frames is cut at every ``offset_step``-th shift within one frame
       (shifting the input by s samples moves the grid by s), and the copies go through the detector as one
       batch (concatenated into rows of ``segments_per_row``, ``rows_per_forward`` rows per forward pass). The
       shift with the highest mean detection logit over each copy's interior wins; then the shifts within
       ``offset_step`` of it are scored again on ``refine_frames`` frames, in both polarities.
    2. Polarity: when the excerpt shows a watermark, the whole file is analysed at the chosen offset as ``x``
       and as ``-x`` (one batch; at offset 0 the plain pass is the ``x`` one). An inverted watermark is
       detected almost as confidently, with every bit inverted, so the detector's confidence cannot tell the
       two readings apart reliably (measured: wrong about 1 time in 10); each region takes the polarity whose
       decoded message, re-embedded by the model's own generator, the audio contains more of (``_verify``).
    3. Speed: only when nothing was found, the same search on the audio resampled by each of ``speeds``
       (undoing a speed change by exactly that factor: measured, 0.9/0.95/1.05/1.1 are found, 1.07 is not
       found by a search for 1.05 or 1.1), in order, stopping at the first that finds a region. Off by default:
       every unwatermarked file pays for it, one more search per speed.
    4. More regions: up to ``rounds`` searches per file in all; after the first, each goes where the plain pass
       saw something that no region found so far explains (a second splice, off the first one's grid).
    Every region a search finds must then be confirmed by re-synthesis (``_verify``).

    Cost (measured, demo model, one CPU thread, 2 shared cores): a plain pass takes about 0.011 s per audio
    second; the offset search reads 320 x 3 + 6 x 6 frames, about 20 s of audio-equivalent, about 0.2 s
    whatever the file length; a found watermark adds a pass of ``-x`` (and one of ``x`` at a new offset). The
    demo detector needs the grid exactly (a 2-sample error loses presence, a 1-sample error inverts the
    bits), hence ``offset_step=1``; a detector that tolerates +-k samples can use a step of about 2k and pay
    that many times less.
    """

    offset_step: int = 1
    polarity: bool = True
    excerpt_frames: int = 3
    refine_frames: int = 6
    speeds: tuple[float, ...] = ()
    rounds: int = 3
    segments_per_row: int = 64
    rows_per_forward: int = 8


SEARCH = AlignmentSearch()


@dataclass(frozen=True)
class _Alignment:
    offset: int = 0  # zero samples prepended to put the detector's grid back on the generator's
    polarity: int = 1
    speed: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"offset_samples": self.offset, "polarity": self.polarity, "speed": self.speed}


@dataclass
class _Segment:
    """A region [start, end) (samples of the analysed signal) of one analysis pass."""

    start: int
    end: int
    analysis: Analysis
    alignment: _Alignment
    probability: float = field(init=False)  # mean watermark probability over the region
    mean_logit: float = field(init=False)  # mean clipped detection logit
    bit_probs: np.ndarray = field(init=False)  # sigmoid of the region's mean bit logits
    strength: float = field(init=False)  # seconds x mean clipped logit: how the strongest region is chosen

    def __post_init__(self) -> None:
        a, n = self.analysis, self.end - self.start
        h0, h1 = self.start // a.hop, -(-self.end // a.hop)
        self.probability = float(a.probs[self.start : self.end].mean())
        self.mean_logit = float(a.hop_logits[h0:h1].sum() / n)
        self.bit_probs = 1.0 / (1.0 + np.exp(-a.hop_bits[h0:h1].sum(axis=0) / n))
        self.strength = n / MODEL_RATE * self.mean_logit

    def seconds(self) -> tuple[float, float]:
        speed = self.alignment.speed
        return self.start / MODEL_RATE / speed, self.end / MODEL_RATE / speed

    def overlaps(self, other: _Segment) -> bool:
        (a0, a1), (b0, b1) = self.seconds(), other.seconds()
        return a0 < b1 and b0 < a1

    def to_json(self) -> dict[str, Any]:
        start, end = self.seconds()
        bits = [int(p > MESSAGE_THRESHOLD) for p in self.bit_probs]
        return {
            "start_seconds": round(float(start), 3),
            "end_seconds": round(float(end), 3),
            "probability": round(self.probability, 4),
            "confidence": confidence_label(self.probability),
            "message": format_message(bits),
            "bits": bits,
            "bit_probabilities": [round(float(p), 4) for p in self.bit_probs],
            "alignment": self.alignment.to_json(),
        }


def _curve(probs: np.ndarray, hop: int) -> np.ndarray:
    """Mean probability per hop (the localisation curve)."""
    n_hops = int(np.ceil(len(probs) / hop))
    padded = np.pad(probs, (0, n_hops * hop - len(probs)), mode="edge")
    return padded.reshape(n_hops, hop).mean(axis=1)


def _segments(analysis: Analysis, alignment: _Alignment) -> list[_Segment]:
    """The regions of one pass, by the region rule."""
    n = len(analysis.probs)
    if n == 0:
        return []
    marked = _curve(analysis.probs, analysis.hop) > DETECTION_THRESHOLD
    edges = np.flatnonzero(np.diff(np.concatenate([[0], marked.astype(np.int8), [0]])))
    runs: list[list[int]] = []
    gap = round(REGION_GAP_SECONDS / HOP_SECONDS)
    for h0, h1 in zip(edges[::2], edges[1::2], strict=True):
        if runs and h0 - runs[-1][1] <= gap:
            runs[-1][1] = h1
        else:
            runs.append([int(h0), int(h1)])
    min_hops = max(1, round(min(REGION_MIN_SECONDS, 0.5 * n / MODEL_RATE) / HOP_SECONDS))
    return [
        _Segment(h0 * analysis.hop, min(n, h1 * analysis.hop), analysis, alignment)
        for h0, h1 in runs
        if h1 - h0 >= min_hops
    ]


@dataclass
class _Group:
    """The full passes over one signal at one offset and speed, one per polarity tried."""

    signal: np.ndarray  # what was analysed: the 16 kHz audio, or that resampled by ``speed``
    offset: int
    speed: float
    passes: dict[int, Analysis]


def _choose(
    models: WatermarkModels,
    groups: list[_Group],
    trusted: Analysis | None = None,
    taken: list[_Segment] | None = None,
) -> list[_Segment]:
    """Non-overlapping regions from several groups of passes, in priority order (the searched offset before
    the plain one), none overlapping ``taken``. Within a group the strongest regions come first; each is read in
    the polarity ``_verify`` picks and counts only when the re-synthesised watermark confirms it; else, in the
    group of ``trusted`` (the plain pass of a file the whole-file rule calls watermarked), it counts as that
    pass reads it: what was detected before regions existed still is, and is read as before."""
    chosen: list[_Segment] = list(taken or [])
    for group in groups:
        candidates = [
            seg
            for polarity, analysis in group.passes.items()
            for seg in _segments(analysis, _Alignment(group.offset, polarity, group.speed))
        ]
        for seg in sorted(candidates, key=lambda s: -s.strength):  # stable: ties keep polarity +1
            if any(seg.overlaps(c) for c in chosen):
                continue
            reading, z = _verify(models, group, seg)
            if z >= CONFIRM_Z:
                chosen.append(reading)
            elif trusted is not None and group.passes.get(1) is trusted:  # as read before: plain, polarity +1
                chosen.append(_Segment(seg.start, seg.end, trusted, _Alignment(group.offset, 1, group.speed)))
    return sorted(chosen, key=lambda s: s.seconds()[0])


def _verify(models: WatermarkModels, group: _Group, seg: _Segment) -> tuple[_Segment, float]:
    """The region read in the right polarity, and how surely it carries the message read there.

    Analysis by synthesis: in each polarity, decode the region's message, re-embed it with the model's own
    generator into (the loudest ``POLARITY_SECONDS`` of) the region as read in that polarity, and project the
    audio on that watermark. The true reading contains it nearly whole (projection / energy about 1, 0.75 after
    MP3); the inverted one only as far as the generator is symmetric (about 0.9 of it): the larger projection
    wins. The evidence is the projection in units of the projections on circularly shifted copies of the same
    watermark (a matched filter against its own noise floor).

    Measured on the demo model: polarity right on 120 of 120 readings (clean and MP3, 1 s to whole files),
    where the detector's own confidence (detection logit, probability, bit margins) picks the wrong one about
    1 time in 10; evidence 14-28 on watermarked regions (clean, MP3, noise at 20 dB, gain 0.3, crops, 0.5 s
    splices), at most 6.1 on the false regions the detector marks in music, noise and chirps.
    """
    if getattr(models, "generator", None) is None:
        return seg, 0.0
    frame = models.frame_samples
    lo, hi = group.offset + seg.start, group.offset + seg.end  # on the aligned signal (offset zeros first)
    length = max(frame, min(int(POLARITY_SECONDS * MODEL_RATE), hi - lo) // frame * frame)
    starts = np.arange(-(-lo // frame) * frame, max(lo, hi - length) + 1, frame)
    if len(starts) == 0:
        starts = np.array([lo // frame * frame])
    aligned = np.concatenate([np.zeros(group.offset, np.float32), group.signal.astype(np.float32)])
    aligned = np.pad(aligned, (0, max(0, int(starts.max()) + length - len(aligned))))
    energy = np.concatenate([[0.0], np.cumsum(aligned.astype(np.float64) ** 2)])
    a0 = int(starts[int(np.argmax(energy[starts + length] - energy[starts]))])
    excerpt = aligned[a0 : a0 + length].astype(np.float64)
    polarities = sorted(group.passes, reverse=True)  # +1 first: it wins ties
    readings = [
        _Segment(seg.start, seg.end, group.passes[p], _Alignment(group.offset, p, group.speed)) for p in polarities
    ]
    bits = [[int(v > MESSAGE_THRESHOLD) for v in r.bit_probs] for r in readings]
    marks = models.watermark_16k_batch([p * excerpt.astype(np.float32) for p in polarities], bits, max_batch=2)
    shifts = np.arange(1, 17) * 211  # not a multiple of any frame: the copies are off the watermark's grid
    best, evidence, projection = readings[0], 0.0, -np.inf
    for p, reading, mark in zip(polarities, readings, marks, strict=True):
        w = mark.astype(np.float64)
        norm = max(float(np.linalg.norm(w)), 1e-12)
        proj = float(np.dot(p * excerpt, w)) / norm
        noise = np.sqrt(np.mean([np.dot(p * excerpt, np.roll(w, k)) ** 2 for k in shifts])) / norm
        if proj > projection:
            best, projection, evidence = reading, proj, proj / max(float(noise), 1e-12)
    return best, evidence


def _search_center(
    y: np.ndarray, plain: Analysis | None, length: int, taken: list[_Segment] | None = None
) -> int | None:
    """Where to cut the search excerpt: the loudest part (the watermark follows the audio's level; measured,
    the loudest excerpt finds the offset far more often than the plain curve's peak), restricted to where the
    plain pass saw something when it did (an edit that moved the grid often leaves some presence, and a
    watermarked region may be a small part of the file). With ``taken`` (regions already found), only where
    the plain pass saw something outside them, and None when it saw nothing there."""
    hop = int(MODEL_RATE * HOP_SECONDS)
    energy = np.pad(y.astype(np.float64) ** 2, (0, (-len(y)) % hop)).reshape(-1, hop).sum(axis=1)
    k = max(1, min(len(energy), length // hop))
    loudness = np.convolve(energy, np.ones(k), mode="valid")
    if plain is not None and len(plain.probs):
        curve = _curve(plain.probs, hop)
        width = max(1, min(len(curve), round(0.5 / HOP_SECONDS)))
        hint = np.convolve(curve, np.ones(width) / width, mode="same")
        for seg in taken or []:
            hint[max(0, seg.start // hop - width) : seg.end // hop + width] = 0.0
        if hint.max() >= SEARCH_HINT:
            inside = np.convolve(hint >= 0.5 * hint.max(), np.ones(k), mode="valid") >= k
            if inside.any():
                loudness = np.where(inside[: len(loudness)], loudness, -1.0)
        elif taken is not None:
            return None
    return int((int(np.argmax(loudness)) + k / 2) * hop)


def _segment_scores(models: WatermarkModels, segments: np.ndarray, search: AlignmentSearch) -> np.ndarray:
    """Mean detection logit over the middle half of each segment (rows of equal-length segments)."""
    import torch

    m, length = segments.shape
    per_row = max(1, min(search.segments_per_row, m))
    rows = -(-m // per_row)
    buf = np.zeros((rows * per_row, length), dtype=np.float32)
    buf[:m] = segments
    buf = buf.reshape(rows, 1, per_row * length)
    out = []
    with torch.inference_mode():
        for i in range(0, rows, max(1, search.rows_per_forward)):
            tensor = torch.from_numpy(buf[i : i + search.rows_per_forward]).to(models.device)
            raw = models._raw(tensor if models.dtype is None else tensor.to(models.dtype))
            out.append((raw[:, 1, :].double() - raw[:, 0, :].double()).cpu().numpy())
    logits = np.concatenate(out).reshape(rows * per_row, length)[:m]
    q = length // 4
    return logits[:, q : length - q].mean(axis=1)


def _search_offset(
    models: WatermarkModels, y: np.ndarray, center: int, search: AlignmentSearch
) -> tuple[int, float]:
    """(offset, score): the shift that puts the detector's grid on the watermark's, judged on an excerpt
    around ``center`` (see ``AlignmentSearch``); score > 0 means the excerpt reads as watermarked there."""
    frame = models.frame_samples
    step = max(1, int(search.offset_step))
    length = search.excerpt_frames * frame
    longer = max(search.refine_frames, search.excerpt_frames) * frame
    before = (longer - length) // 2 // frame * frame  # whole frames: the grid stays where it was
    start = max(0, (center - length // 2) // frame * frame)  # on the file's own grid: a tie means offset 0
    front = frame + step + before
    padded = np.pad(y.astype(np.float32), (front, longer + frame + step))

    def cut(shift: int, n: int, lead: int = 0) -> np.ndarray:
        i = front + start - shift - lead
        return padded[i : i + n]

    shifts = list(range(0, frame, step))
    coarse = _segment_scores(models, np.stack([cut(s, length) for s in shifts]), search)
    best = shifts[int(np.argmax(coarse))]
    near = [best] + [(best + d) % frame for r in range(1, step + 1) for d in (-r, r)]
    polarities = (1, -1) if search.polarity else (1,)
    hyps = [(s, p) for s in dict.fromkeys(near) for p in polarities]
    fine = _segment_scores(models, np.stack([p * cut(s, longer, before) for s, p in hyps]), search)
    i = int(np.argmax(fine))
    return (hyps[i][0] - start) % frame, float(fine[i])


def _shifted(y: np.ndarray, alignment: _Alignment) -> np.ndarray:
    z = np.concatenate([np.zeros(alignment.offset, dtype=np.float32), y.astype(np.float32)])
    return z if alignment.polarity > 0 else -z


def _aligned_passes(
    models: WatermarkModels, jobs: list[tuple[np.ndarray, _Alignment]], max_batch: int
) -> list[Analysis]:
    """Full analyses of several (signal, alignment) pairs, batched."""
    if not jobs:
        return []
    return models.analyse_16k_batch(
        [_shifted(y, a) for y, a in jobs], drops=[a.offset for _, a in jobs], max_batch=max_batch
    )


def detect(
    models: WatermarkModels, samples: np.ndarray, sample_rate: int, *, search: AlignmentSearch | None = SEARCH
) -> dict[str, Any]:
    """Detect a watermark in ``samples`` (channels, n); returns the API's detection result.

    ``search=None`` reads the audio only as it is (no offset, polarity or speed search).
    """
    return detect_batch(models, [(samples, sample_rate)], max_batch=1, search=search)[0]


def detect_batch(
    models: WatermarkModels,
    items: list[tuple[np.ndarray, int]],
    *,
    max_batch: int = 8,
    search: AlignmentSearch | None = SEARCH,
) -> list[dict[str, Any]]:
    """``detect`` for several (samples, sample_rate) inputs, their windows run ``max_batch`` at a time.

    Full passes are batched across inputs; each input's alignment search runs on its own, in batches that do
    not depend on ``max_batch``, so every result is what ``detect`` gives for that input alone.
    """
    mono16 = [audio.resample(audio.to_mono(samples), rate, MODEL_RATE) for samples, rate in items]
    if any(len(x) == 0 for x in mono16):
        raise MediaError("EMPTY_FILE", "The audio has no samples.")
    plains = models.analyse_16k_batch(mono16, max_batch=max_batch)
    trusted = [a if np.count_nonzero(a.probs > DETECTION_THRESHOLD) > 0.5 * len(a.probs) else None for a in plains]
    polarities = (1, -1) if search is not None and search.polarity else (1,)
    # 1. The searched offset of each input (when its excerpt reads as watermarked), analysed in full in both
    #    polarities (at offset 0 the plain pass is the +1 one), all inputs in one batch.
    searched: list[int | None] = []
    for y, analysis in zip(mono16, plains, strict=True):
        offset, score = None, 0.0
        if search is not None:
            length = search.excerpt_frames * models.frame_samples
            offset, score = _search_offset(models, y, _search_center(y, analysis, length), search)
        searched.append(offset if score > 0 else None)
    groups = _groups(models, mono16, plains, [[] if o is None else [o] for o in searched], polarities, max_batch)
    chosen = [
        _choose(models, g, trusted[i] if searched[i] == 0 else None) for i, g in enumerate(groups)
    ]
    # 2. The plain reading, for the inputs whose plain pass has regions the searched offset did not explain.
    plain_too = [
        [0] if o != 0 and any(not any(seg.overlaps(c) for c in chosen[i]) for seg in _segments(a, _Alignment()))
        else []
        for i, (o, a) in enumerate(zip(searched, plains, strict=True))
    ]
    for i, g in enumerate(_groups(models, mono16, plains, plain_too, polarities, max_batch)):
        if g:
            chosen[i] = _choose(models, g, trusted[i], taken=chosen[i])
    # 3. Further searches and (when nothing was found) the speed search, one input at a time.
    results = []
    for i, (y, analysis) in enumerate(zip(mono16, plains, strict=True)):
        found = chosen[i]
        if search is not None:
            tried = {o for o in (searched[i], *plain_too[i]) if o is not None}
            found = _more_regions(models, y, analysis, found, tried, search, max_batch)
            if not found:
                found = _speed_search(models, y, search)
        results.append(_detection_result(y, analysis, found))
    return results


def _groups(
    models: WatermarkModels,
    signals: list[np.ndarray],
    plains: list[Analysis],
    offsets: list[list[int]],
    polarities: tuple[int, ...],
    max_batch: int,
) -> list[list[_Group]]:
    """For each input, one group per offset in ``offsets[i]``: its full passes in ``polarities``, all inputs'
    passes in one batch (the plain pass stands for offset 0, polarity +1)."""
    jobs = [(i, _Alignment(o, p)) for i, wanted in enumerate(offsets) for o in wanted for p in polarities]
    todo = [(i, a) for i, a in jobs if a != _Alignment()]
    done = dict(zip(todo, _aligned_passes(models, [(signals[i], a) for i, a in todo], max_batch), strict=True))
    done.update({(i, _Alignment()): plain for i, plain in enumerate(plains)})
    return [
        [_Group(signals[i], o, 1.0, {p: done[(i, _Alignment(o, p))] for p in polarities}) for o in wanted]
        for i, wanted in enumerate(offsets)
    ]


def _more_regions(
    models: WatermarkModels,
    y: np.ndarray,
    plain: Analysis,
    chosen: list[_Segment],
    tried: set[int],
    search: AlignmentSearch,
    max_batch: int,
) -> list[_Segment]:
    """Up to ``search.rounds - 1`` more searches, each where the plain pass saw something no region found so
    far explains (a second splice off the first one's grid), until one finds nothing new."""
    length = search.excerpt_frames * models.frame_samples
    polarities = (1, -1) if search.polarity else (1,)
    for _ in range(max(0, search.rounds - 1)):
        center = _search_center(y, plain, length, taken=chosen)
        if center is None:
            break
        offset, score = _search_offset(models, y, center, search)
        if score <= 0 or offset in tried:
            break
        tried.add(offset)
        alignments = [_Alignment(offset, p) for p in polarities]
        passes = _aligned_passes(models, [(y, a) for a in alignments], max_batch)
        found = _choose(models, [_Group(y, offset, 1.0, dict(zip(polarities, passes, strict=True)))], taken=chosen)
        if len(found) == len(chosen):
            break
        chosen = found
    return chosen


def _speed_search(models: WatermarkModels, y: np.ndarray, search: AlignmentSearch) -> list[_Segment]:
    """Regions found after undoing a speed change by one of ``search.speeds`` (the first that finds any)."""
    length = search.excerpt_frames * models.frame_samples
    polarities = (1, -1) if search.polarity else (1,)
    for speed in search.speeds:
        z = audio.resample(y, MODEL_RATE, int(round(MODEL_RATE * speed)))
        if len(z) == 0:
            continue
        offset, score = _search_offset(models, z, _search_center(z, None, length), search)
        if score <= 0:
            continue
        alignments = [_Alignment(offset, p, float(speed)) for p in polarities]
        passes = _aligned_passes(models, [(z, a) for a in alignments], max_batch=len(alignments))
        chosen = _choose(models, [_Group(z, offset, float(speed), dict(zip(polarities, passes, strict=True)))])
        if chosen:
            return chosen
    return []


def _detection_result(y: np.ndarray, plain: Analysis, segments: list[_Segment]) -> dict[str, Any]:
    """The API's detection result: the regions, and over the whole file the localisation curve (the plain
    pass, replaced inside each region by the pass that found it) and the share of it above the threshold."""
    n = len(y)
    probs = plain.probs.copy()
    for seg in segments:
        if seg.analysis is plain:
            continue
        start, end = (min(n, round(t * MODEL_RATE)) for t in seg.seconds())
        positions = np.arange(start, end) * seg.alignment.speed
        probs[start:end] = np.interp(positions, np.arange(len(seg.analysis.probs)), seg.analysis.probs)
    above = int(np.count_nonzero(probs > DETECTION_THRESHOLD))
    probability = above / n
    strongest = max(segments, key=lambda s: s.strength) if segments else None
    if strongest is not None:
        best = strongest.to_json()
        bits, bit_probs, confidence = best["bits"], best["bit_probabilities"], best["confidence"]
        alignment = best["alignment"]
        count = len(segments)
        summary = f"Watermark found in {count} region{'s' if count != 1 else ''}"
    else:
        whole = 1.0 / (1.0 + np.exp(-plain.hop_bits.sum(axis=0) / n))
        bits, bit_probs = None, [round(float(p), 4) for p in whole]
        confidence, alignment, summary = confidence_label(probability), _Alignment().to_json(), "No watermark found"
    return {
        "detected": strongest is not None,
        "summary": summary,
        "probability": round(probability, 4),
        "confidence": confidence,
        "message": format_message(bits) if bits is not None else None,
        "bits": bits,
        "bit_probabilities": bit_probs,
        "segments": [seg.to_json() for seg in segments],
        "alignment": alignment,
        "localization": {
            "hop_seconds": HOP_SECONDS,
            "values": [round(float(v), 3) for v in _curve(probs, int(MODEL_RATE * HOP_SECONDS))],
        },
        "watermarked_seconds": round(above / MODEL_RATE, 3),
    }
