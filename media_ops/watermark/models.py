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
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from media_ops.errors import MediaError
from media_ops.watermark.messages import (
    HOP_SECONDS,
    LENGTH_BUCKET_SAMPLES,
    LOGIT_CLIP,
    MODEL_RATE,
    NBITS,
    PRECISIONS,
    ZERO_TAIL_SAMPLES,
)

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
    # Batched forward passes run so far, per network: what tests and benchmarks count (not engine calls).
    forward_passes: dict[str, int] = field(
        default_factory=lambda: {"generator": 0, "detector": 0}, init=False, repr=False, compare=False
    )
    _count_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def _counted(self, network: str) -> None:
        with self._count_lock:
            self.forward_passes[network] += 1

    @property
    def _cuda(self) -> bool:
        return str(self.device).startswith("cuda")

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

        Every window runs followed by at least ``ZERO_TAIL_SAMPLES`` of real audio or zeros after its kept
        centre, its length rounded up to a ``LENGTH_BUCKET_SAMPLES`` multiple (``_Chunk.padded``). Past that
        tail more zeros change nothing, so any windows can share a batch padded to its longest: windows are
        sorted longest first (least padding) and cut into ``ceil(windows / max_batch)`` batches, and each
        window's kept centre is what it is alone (up to float rounding of batched kernels). Four embeds of
        2.0, 2.37, 2.81 and 3.05 s at ``max_batch=8`` are one forward pass.
        """
        chunks = []
        for item, n in enumerate(lengths):
            for c0, s, e, c1 in self._windows(n):
                need = (c1 - c0) + max(0, ZERO_TAIL_SAMPLES - (c1 - e))
                padded = -(-need // LENGTH_BUCKET_SAMPLES) * LENGTH_BUCKET_SAMPLES
                chunks.append(_Chunk(item, c0, s, e, c1, padded))
        chunks.sort(key=lambda c: -c.padded)  # stable: equal lengths keep their input order
        size = max(1, int(max_batch))
        return [chunks[i : i + size] for i in range(0, len(chunks), size)]

    def _stack(self, xs: list[np.ndarray], batch: list[_Chunk]) -> Any:
        """The batch's windows as one (batch, 1, longest padded length) tensor on the device, zeros after each
        window's samples. On CUDA it is filled in pinned host memory and copied without blocking."""
        import torch

        longest = max(c.padded for c in batch)
        host = torch.zeros((len(batch), 1, longest), dtype=torch.float32, pin_memory=self._cuda)
        out = host.numpy()
        for row, c in enumerate(batch):
            out[row, 0, : c.length] = xs[c.item][c.c0 : c.c1]
        tensor = host.to(self.device, non_blocking=True) if self._cuda else host
        return tensor if self.dtype is None else tensor.to(self.dtype)

    def _to_host(self, *tensors: Any) -> list[np.ndarray]:
        """Device tensors as numpy arrays: on CUDA through pinned buffers with non-blocking copies and one
        wait for all of them; on CPU without a copy."""
        import torch

        if not self._cuda:
            return [t.numpy() for t in tensors]
        hosts = []
        for t in tensors:
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            host.copy_(t, non_blocking=True)
            hosts.append(host)
        torch.cuda.current_stream(tensors[0].device).synchronize()
        return [h.numpy() for h in hosts]

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
                self._counted("generator")
                (wm,) = self._to_host(wm.float())
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
        self._counted("detector")
        if raw.shape[-1] != chunk.shape[-1]:  # pragma: no cover - AudioSeal keeps the time axis
            raise MediaError("PROCESSING_FAILED", "detector changed the time axis")
        return raw

    @property
    def _reduce_dtype(self) -> Any:
        """What the per-hop sums accumulate in on the device: float64 on CPU (as the results were always
        computed there), float32 on CUDA (fp64 runs at 1/32-1/64 of the speed on most cards; 160 values per
        hop lose ~1e-7 relative, tested equal within tolerance)."""
        import torch

        return torch.float32 if self._cuda else torch.float64

    def analyse_16k_batch(
        self, xs: list[np.ndarray], *, drops: list[int] | None = None, max_batch: int = 8
    ) -> list[Analysis]:
        """Per-sample watermark probability, and per 10 ms hop the sums of the bit logits and of the (clipped)
        detection logit, for several 16 kHz mono inputs (any lengths), ``max_batch`` windows per forward.

        ``drops[i]`` leading samples of input ``i`` go through the model but are left out of its result (the
        zeros an alignment search prepends to move the frame grid). The hop sums are reduced on the device
        (``_hop_sums``): only (batch, samples) probabilities and (batch, 17, hops) sums are copied back.
        """
        import torch

        drops = drops or [0] * len(xs)
        hop = int(MODEL_RATE * HOP_SECONDS)
        out = [Analysis.empty(len(x) - d, hop) for x, d in zip(xs, drops, strict=True)]
        with torch.inference_mode():
            for batch in self._batches([len(x) for x in xs], max_batch):
                rows = []  # (row, chunk, kept start in the row, kept end, first sample of the result)
                for row, c in enumerate(batch):
                    s = max(c.s, drops[c.item])
                    if s < c.e:
                        rows.append((row, c, s - c.c0, c.e - c.c0, s - drops[c.item]))
                raw = self._raw(self._stack(xs, batch))
                if not rows:
                    continue
                probs = torch.softmax(raw[:, :2, :].float(), dim=1)[:, 1, :]
                acc = self._reduce_dtype
                logits = (raw[:, 1:2, :].to(acc) - raw[:, 0:1, :].to(acc)).clamp(-LOGIT_CLIP, LOGIT_CLIP)
                values = torch.cat([logits, raw[:, 2:, :].to(acc)], dim=1)  # (batch, 1 + nbits, samples)
                sums, firsts = self._hop_sums(values, [(r, a, b, g) for r, _, a, b, g in rows], hop)
                probs_host, sums_host = self._to_host(probs, sums)
                for i, (row, c, a, b, g) in enumerate(rows):
                    hops = -(-(g % hop + (b - a)) // hop)
                    out[c.item].add_sums(g, probs_host[row, a:b], firsts[i], sums_host[i, :, :hops])
        return out

    @staticmethod
    def _hop_sums(values: Any, rows: list[tuple[int, int, int, int]], hop: int) -> tuple[Any, list[int]]:
        """Sums over the result's hop grid, on the device: for each ``(row, a, b, g)``, the samples [a, b) of
        ``values[row]`` (channels, samples) whose first is sample ``g`` of the result, summed per hop of the
        result (hop ``k`` = result samples [k * hop, (k + 1) * hop)). Returns (len(rows), channels, hops) and
        each row's first hop index. One gather and one reduction for the whole batch."""
        import torch

        device = values.device
        leads = [g % hop for _, _, _, g in rows]
        width = max(-(-(lead + b - a) // hop) for lead, (_, a, b, _) in zip(leads, rows, strict=True)) * hop
        j = torch.arange(width, device=device)[None, :]
        lead_t = torch.tensor(leads, device=device)[:, None]
        a_t = torch.tensor([a for _, a, _, _ in rows], device=device)[:, None]
        n_t = torch.tensor([b - a for _, a, b, _ in rows], device=device)[:, None]
        valid = (j >= lead_t) & (j < lead_t + n_t)  # (rows, width)
        src = (a_t - lead_t + j).clamp(0, values.shape[-1] - 1)
        picked = values[torch.tensor([r for r, _, _, _ in rows], device=device)]  # (rows, channels, samples)
        gathered = torch.gather(picked, 2, src[:, None, :].expand(-1, picked.shape[1], -1))
        gathered = gathered * valid[:, None, :].to(gathered.dtype)
        sums = gathered.reshape(len(rows), picked.shape[1], width // hop, hop).sum(dim=-1)
        return sums, [g // hop for _, _, _, g in rows]


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

    def add_sums(self, start: int, probs: np.ndarray, first_hop: int, sums: np.ndarray) -> None:
        """Results for samples [start, start + len(probs)) whose hop sums were reduced already: ``sums`` is
        (1 + nbits, hops) from hop ``first_hop`` on, the clipped detection logit first, then the bit logits."""
        self.probs[start : start + len(probs)] = probs
        hops = sums.shape[-1]
        self.hop_logits[first_hop : first_hop + hops] += sums[0]
        self.hop_bits[first_hop : first_hop + hops] += sums[1:].T


@dataclass(frozen=True)
class _Chunk:
    """One window of input ``item``: samples [c0, c1) go through the model followed by zeros up to ``padded``
    (at least ``ZERO_TAIL_SAMPLES`` past ``e``, a bucket multiple), and [s, e) of the output is kept."""

    item: int
    c0: int
    s: int
    e: int
    c1: int
    padded: int

    @property
    def length(self) -> int:
        return self.c1 - self.c0
