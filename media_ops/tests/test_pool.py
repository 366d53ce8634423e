"""The model pool's forward-pass counters: what batching saves is counted in forward passes per network."""

from __future__ import annotations

import dataclasses

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


@pytest.mark.parametrize(
    ("configured", "device", "threads", "lanes"),
    [(0, "cpu", 2, 2), (0, "cpu", 1, 1), (0, "cuda", 4, 1), (0, "cuda:1", 4, 1), (3, "cpu", 2, 3), (1, "cpu", 4, 1)],
)
def test_model_lanes_by_device(configured, device, threads, lanes):
    """By device: one single-threaded lane per CPU thread, one lane on CUDA; a setting wins."""
    from media_ops.pool import resolve_lanes

    assert resolve_lanes(configured, device, threads) == lanes


def test_each_lane_gets_its_share_of_the_threads():
    import torch

    before = torch.get_num_threads()
    try:
        config = PoolConfig(str(DEMO / "generator.pth"), str(DEMO / "detector.pth"), str(DEMO_DIR),
                            device="cpu", threads=4, lanes=0)
        pool = ModelPool(config)
        assert (pool.lanes, pool.lane_threads, torch.get_num_threads()) == (4, 1, 1)
        assert (pool.pass_threads(alone=False), pool.pass_threads(alone=True)) == (1, 4)
        pool = ModelPool(dataclasses.replace(config, lanes=2))
        assert (pool.lanes, pool.lane_threads, torch.get_num_threads()) == (2, 2, 2)
        assert pool.describe()["lanes"] == 2 and pool.describe()["threads_per_lane"] == 2
        assert (pool.pass_threads(alone=False), pool.pass_threads(alone=True)) == (2, 4)
        pool = ModelPool(dataclasses.replace(config, lanes=1))
        assert (pool.pass_threads(alone=False), pool.pass_threads(alone=True)) == (4, 4)
    finally:
        torch.set_num_threads(before)
