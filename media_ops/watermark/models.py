"""The loaded generator/detector pair: loading by card or path, warm-up, windows and batched forward passes.

Long audio is processed in windows with context on both sides (only each window's centre is kept), so cost
per second stays flat and memory stays bounded, and a watermark that spans a window boundary is still
detected. ``Analysis`` holds what the detector read over a whole input (per-sample probabilities and logits).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from media_ops.errors import MediaError
from media_ops.watermark.messages import HOP_SECONDS, LOGIT_CLIP, MODEL_RATE, NBITS, PAD_SAFE_SECONDS, PRECISIONS

logger = logging.getLogger(__name__)

os.environ.setdefault("NO_TORCH_COMPILE", "1")  # audioseal otherwise compiles lazily: slow, and no faster


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


def describe_source(source: str) -> tuple[str, str]:
    """(name, version) that ``WatermarkModels.load`` records for ``source``, without loading it: a service
    that must name the versions it serves (model pinning) reads them from the checkpoints' bytes."""
    return _describe(source)


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
