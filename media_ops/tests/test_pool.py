"""The model pool's forward-pass counters: what batching saves is counted in forward passes per network."""

from __future__ import annotations

import pytest

from media_ops import watermark
from media_ops.pool import ModelPool, PoolConfig
from media_ops.tests.test_emotion import DEMO_DIR, noise
from testing.demo import DEMO, needs_demo_models
from testing.speech import looped_speech, seeded_bits

pytestmark = needs_demo_models


@pytest.fixture(scope="module")
def pool() -> ModelPool:
    config = PoolConfig(str(DEMO / "generator.pth"), str(DEMO / "detector.pth"), str(DEMO_DIR), device="cpu")
    pool = ModelPool(config)
    assert pool.forward_passes() == {}  # nothing loaded, nothing counted, nothing loaded by asking
    pool.preload(["watermark", "emotion"])
    return pool


def test_forward_passes_count_batched_forwards_per_network(pool):
    start = pool.forward_passes()
    assert set(start) == {"watermark.generator", "watermark.detector", "emotion"}
    assert all(n > 0 for n in start.values())  # the warm-up's passes count too

    lengths = [2.0, 2.37, 2.81, 3.05]
    clips = [looped_speech(s, 50 + i) for i, s in enumerate(lengths)]
    models = pool.get("watermark")
    items = [(c[None, :], watermark.MODEL_RATE, seeded_bits(i)) for i, c in enumerate(clips)]
    watermark.embed_batch(models, items, max_batch=8)
    models.detect_16k_batch(clips, max_batch=8)
    pool.get("emotion").analyze_batch([(noise(s, seed=i), "utterance", False) for i, s in enumerate(lengths)],
                                      max_batch=8)
    now = pool.forward_passes()
    assert {k: now[k] - start[k] for k in now} == {"watermark.generator": 1, "watermark.detector": 1, "emotion": 1}
    assert pool.describe()["forward_passes"] == now
