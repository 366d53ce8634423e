"""The model pool of this worker process, built from settings on first use."""

from __future__ import annotations

from django.conf import settings

from media_ops.pool import ModelPool, PoolConfig

_pool: ModelPool | None = None


def get_pool() -> ModelPool:
    global _pool
    if _pool is None:
        _pool = ModelPool(
            PoolConfig(
                watermark_generator=settings.WATERMARK_GENERATOR,
                watermark_detector=settings.WATERMARK_DETECTOR,
                emotion_model_dir=settings.EMOTION_MODEL_DIR,
                device=settings.MODEL_DEVICE,
                threads=settings.MODEL_THREADS,
                batch_sizes=(("watermark", settings.BATCH_SIZE_WATERMARK), ("emotion", settings.BATCH_SIZE_EMOTION)),
                cuda_batch_size=settings.BATCH_SIZE_CUDA,
                precision=(("watermark", settings.MODEL_PRECISION_WATERMARK),),
                gpu_memory_fraction=settings.GPU_MEMORY_FRACTION,
                # Only the pipeline runs several model loops; the serial worker's one pass gets every thread.
                lanes=settings.WORKER_MODEL_LANES if settings.WORKER_PIPELINE else 1,
            )
        )
    return _pool


def reset_pool() -> None:
    """Forget the pool (tests that need a fresh process-like state)."""
    global _pool
    _pool = None
