"""The worker's model pool: each model loaded once per process, warmed, on CUDA when present.

A worker process builds one pool at start (``preload`` the families of the queues it serves) and every job
borrows from it. Nothing here loads per job. ``load_counts`` exists so tests and health checks can see that;
``forward_passes()`` says how many batched forward passes each loaded network has run (what batching saves).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolConfig:
    watermark_generator: str
    watermark_detector: str
    emotion_model_dir: str
    device: str = "auto"
    threads: int = 1
    # Performance knobs (settings "Performance"); the defaults are the safe CPU choices.
    batch_sizes: tuple[tuple[str, int], ...] = ()  # (family, size); 0 or absent = by device
    cuda_batch_size: int = 8
    precision: tuple[tuple[str, str], ...] = ()  # (family, fp32|fp16|bf16), applied on CUDA only
    gpu_memory_fraction: float = 0.0  # 0 = no cap
    # Model lanes: how many threads of this process may run forward passes at the same time (the worker's
    # pipeline runs one model loop per lane). 0 = by device: one per CPU thread on CPU, 1 on CUDA.
    lanes: int = 1


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_lanes(configured: int, device: str, threads: int) -> int:
    """Model lanes (``PoolConfig.lanes``; 0 = by device): on CPU one per thread of the budget, each lane's
    passes single-threaded; on CUDA one (one model loop per device; more processes per GPU share it instead).

    Why on CPU: a forward pass of the SEANet models splits poorly over threads (the LSTMs step one frame at a
    time, and every op's threads wait for the slowest), so two passes side by side with one thread each do
    more than one pass with two. Measured on the 2-core AMD EPYC, full-size generator, bare forwards in one
    process (``bench.run --sections limit``, five runs): 2.1-2.4x the audio s/s for 1 s clips, 1.1-1.3x
    for 10 s (README "Benchmarks"). emotion2vec too, though a transformer: bare forwards of the base size, the
    two ways alternated (2026-12-01, quiet machine): 1 s clips 1.2-1.5x, 10 s 1.0-1.26x, 30 s 1.04-1.16x.
    A lane whose pass is alone takes every thread instead (``ModelPool.pass_threads``)."""
    if configured > 0:
        return int(configured)
    return 1 if str(device).startswith("cuda") else max(1, int(threads))


class ModelPool:
    FAMILIES = ("watermark", "emotion")

    def __init__(self, config: PoolConfig) -> None:
        os.environ.setdefault("NO_TORCH_COMPILE", "1")
        import torch

        self.config = config
        self.device = resolve_device(config.device)
        self.lanes = resolve_lanes(config.lanes, self.device, config.threads)
        # Each lane gets its share of the thread budget. torch keeps the count per thread once a thread has run
        # an op; this sets it for this thread and the default new threads start with (``use_threads``).
        self.lane_threads = max(1, config.threads // self.lanes)
        torch.set_num_threads(self.lane_threads)
        if config.gpu_memory_fraction and self.device.startswith("cuda"):
            # A cap per process, so several workers can share one GPU without one starving the others.
            torch.cuda.set_per_process_memory_fraction(float(config.gpu_memory_fraction), torch.device(self.device))
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.load_counts: Counter[str] = Counter()
        self.load_seconds: dict[str, float] = {}

    def pass_threads(self, *, alone: bool) -> int:
        """torch threads for one forward pass: every thread of the budget when the pass is ``alone`` (no other
        lane busy, nothing else ready: the cores would idle otherwise, so a lone job is not slowed by the
        lanes), else the lane's share. With one lane both are the budget."""
        return int(self.config.threads) if alone else self.lane_threads

    def use_threads(self, threads: int) -> None:
        """Give the calling thread ``threads`` torch threads (a lane, before a pass; the count is per thread
        once the thread has run an op)."""
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    def _load(self, family: str) -> Any:
        if family == "watermark":
            from media_ops.watermark import WatermarkModels

            return WatermarkModels.load(
                self.config.watermark_generator,
                self.config.watermark_detector,
                device=self.device,
                precision=dict(self.config.precision).get(family, "fp32"),
            )
        if family == "emotion":
            from media_ops.emotion import EmotionModel

            return EmotionModel.load(self.config.emotion_model_dir, device=self.device,
                                     threads=self.lane_threads)
        raise KeyError(f"unknown model family {family!r}")

    def get(self, family: str) -> Any:
        model = self._models.get(family)
        if model is not None:
            return model
        with self._lock:
            model = self._models.get(family)
            if model is None:
                started = time.perf_counter()
                model = self._load(family)
                model.warm(batch_sizes=(1, self.batch_size(family)))  # every batch shape used
                self.load_seconds[family] = round(time.perf_counter() - started, 3)
                self.load_counts[family] += 1
                self._models[family] = model
                logger.info("loaded %s models on %s in %.2fs", family, self.device, self.load_seconds[family])
        return model

    def batch_size(self, family: str) -> int:
        """How many inputs (windows) of ``family`` to run in one forward pass: the setting, else by device.

        Both families batch exactly (``media_ops.watermark``, ``media_ops.emotion.batching``). CUDA:
        ``cuda_batch_size``. CPU: 1 for both, measured on 2 cores: a batch of 10 s watermark clips was slower
        per clip than one at a time (MODELS.md), and a batch of four 3 s emotion clips was no faster (demo
        and base-size emotion2vec; padded mixed lengths slower), README "Benchmarks"."""
        configured = int(dict(self.config.batch_sizes).get(family, 0) or 0)
        if configured > 0:
            return configured
        return max(1, self.config.cuda_batch_size) if self.device.startswith("cuda") else 1

    def preload(self, families: list[str] | tuple[str, ...]) -> None:
        for family in families:
            self.get(family)

    def forward_passes(self) -> dict[str, int]:
        """Forward passes run so far by each loaded network: ``watermark.generator``, ``watermark.detector``
        (``WatermarkModels.forward_passes``, one per batched forward, the alignment search's included) and
        ``emotion`` (``EmotionModel.forward_passes``). Families not loaded yet are absent; nothing is loaded."""
        out: dict[str, int] = {}
        for family, model in sorted(self._models.items()):
            passes = model.forward_passes
            if isinstance(passes, dict):
                out.update({f"{family}.{network}": int(n) for network, n in passes.items()})
            else:
                out[family] = int(passes)
        return out

    def describe(self) -> dict[str, Any]:
        """What is loaded, for readiness checks and worker registration."""
        return {
            "device": self.device,
            "lanes": self.lanes,
            "threads_per_lane": self.lane_threads,
            "families": sorted(self._models),
            "load_counts": dict(self.load_counts),
            "load_seconds": dict(self.load_seconds),
            "batch_sizes": {family: self.batch_size(family) for family in sorted(self._models)},
            "forward_passes": self.forward_passes(),
        }
