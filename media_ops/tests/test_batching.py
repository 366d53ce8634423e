"""Engine-level batching: several inputs in one forward pass give what each gives alone.

Uses the shipped demo checkpoints when present, else a random tiny pair of the same architecture: equality of
batched and one-at-a-time results does not depend on the weights being trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from media_ops import audio, watermark
from media_ops.watermark import MODEL_RATE, WatermarkModels
from testing.demo import DEMO
from testing.speech import looped_speech, seeded_bits
from testing.uploads import FIXTURES

ATOL = 2e-5  # batched kernels round differently; the watermark itself is ~1e-2


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> WatermarkModels:
    import torch

    torch.set_num_threads(1)
    gen, det = DEMO / "generator.pth", DEMO / "detector.pth"
    if not (gen.is_file() and det.is_file()):
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
        import train_demo_watermark as tdw

        gen, det = tdw.save_checkpoints(*tdw.build_models(), tmp_path_factory.mktemp("wm"))
    return WatermarkModels.load(str(gen), str(det))


# Lengths chosen to exercise every path: short clips of equal length (batched exactly), short clips of other
# lengths, inputs just above one window (two windows), and a long one (three windows, the middle padded).
LENGTHS = [1.0, 1.0, 0.3, 3.7, 12.5, 25.0, 1.0]


def test_batched_watermarks_equal_one_at_a_time(models):
    xs = [looped_speech(s, i) for i, s in enumerate(LENGTHS)]
    bits = [seeded_bits(i) for i in range(len(xs))]
    alone = [models.watermark_16k(x, b) for x, b in zip(xs, bits, strict=True)]
    batched = models.watermark_16k_batch(xs, bits, max_batch=4)
    for a, b in zip(alone, batched, strict=True):
        assert a.shape == b.shape
        assert np.abs(a).max() > 1e-4  # a real watermark, not zeros on both sides
        np.testing.assert_allclose(b, a, atol=ATOL, rtol=0)


def test_batched_detection_equals_one_at_a_time(models):
    xs = [looped_speech(s, 10 + i) for i, s in enumerate(LENGTHS)]
    marked = [x + models.watermark_16k(x, seeded_bits(i)) for i, x in enumerate(xs[:4])]
    inputs = marked + xs[4:]
    alone = [models.detect_16k(x) for x in inputs]
    batched = models.detect_16k_batch(inputs, max_batch=8)
    for (p1, b1), (p2, b2) in zip(alone, batched, strict=True):
        np.testing.assert_allclose(p2, p1, atol=ATOL, rtol=0)
        np.testing.assert_allclose(b2, b1, atol=ATOL, rtol=0)


def test_engine_batch_functions_match_embed_and_detect(models):
    """The public engine entry points, with stereo and resampling in the loop."""
    stereo, rate = audio.decode(FIXTURES / "speech_44k_stereo.flac")
    mono = looped_speech(2.0, 3)[None, :]
    items = [
        (stereo, rate, seeded_bits(1)), (mono, MODEL_RATE, seeded_bits(2)), (mono * 0.5, MODEL_RATE, seeded_bits(3))
    ]
    alone = [watermark.embed(models, s, r, b) for s, r, b in items]
    batched = watermark.embed_batch(models, items, max_batch=3)
    for a, b in zip(alone, batched, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, atol=ATOL, rtol=0)

    detect_items = [(a, r) for a, (_, r, _) in zip(alone, items, strict=True)]
    one = [watermark.detect(models, s, r) for s, r in detect_items]
    many = watermark.detect_batch(models, detect_items, max_batch=3)
    for a, b in zip(one, many, strict=True):
        assert a["detected"] == b["detected"] and a["message"] == b["message"]
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-3)
        np.testing.assert_allclose(
            b["localization"]["values"], a["localization"]["values"], atol=2e-3
        )  # rounded to 3 decimals: a value on a rounding edge may move by one step


def test_batch_plan_pads_only_where_it_cannot_change_the_result(models):
    n = [int(s * MODEL_RATE) for s in LENGTHS]
    batches = models._batches(n, max_batch=4)
    chunks = [c for b in batches for c in b]
    assert len(chunks) == sum(len(models._windows(k)) for k in n)  # every window, once
    safe = int(watermark.PAD_SAFE_SECONDS * MODEL_RATE)
    for batch in batches:
        assert 1 <= len(batch) <= 4
        if len({c.length for c in batch}) > 1:  # a padded batch: only windows with context after them
            assert all(c.c1 - c.e >= safe for c in batch)
    # The three 1 s clips share one exact-length batch; the 25 s input's first two windows are padded
    # together (11 s and 12 s) while its 5 s tail is batched alone.
    ones = [b for b in batches if {c.length for c in b} == {MODEL_RATE}]
    assert ones and len(ones[0]) == 3
    long_item = LENGTHS.index(25.0)
    long_batches = [{c.length for c in b if c.item == long_item} for b in batches]
    assert {11 * MODEL_RATE, 12 * MODEL_RATE} in long_batches and {6 * MODEL_RATE} in long_batches
    assert all(len(b) == 1 for b in models._batches(n, max_batch=1))  # one at a time: no batching at all


def test_messages_stay_with_their_inputs(models):
    """Same audio, different messages in one batch: each output equals its own single run."""
    x = looped_speech(1.0, 42)
    bits = [seeded_bits(100), seeded_bits(101)]
    assert bits[0] != bits[1]
    a, b = models.watermark_16k_batch([x, x], bits, max_batch=2)
    np.testing.assert_allclose(a, models.watermark_16k(x, bits[0]), atol=ATOL, rtol=0)
    np.testing.assert_allclose(b, models.watermark_16k(x, bits[1]), atol=ATOL, rtol=0)
    assert np.abs(a - b).max() > 1e-4


def test_precision_is_ignored_on_cpu(caplog):
    gen, det = DEMO / "generator.pth", DEMO / "detector.pth"
    if not gen.is_file():
        pytest.skip("demo checkpoints not present")
    m = WatermarkModels.load(str(gen), str(det), device="cpu", precision="fp16")
    assert m.dtype is None
    assert "ignored" in caplog.text
    with pytest.raises(ValueError):
        WatermarkModels.load(str(gen), str(det), precision="fp8")
