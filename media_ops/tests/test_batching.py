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
from testing.assertions import run_side_by_side
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


def test_batch_plan_gives_every_window_a_zero_tail_and_a_bucketed_length(models):
    n = [int(s * MODEL_RATE) for s in LENGTHS]
    batches = models._batches(n, max_batch=4)
    chunks = [c for b in batches for c in b]
    assert len(chunks) == sum(len(models._windows(k)) for k in n)  # every window, once
    assert len(batches) == -(-len(chunks) // 4)  # the fewest passes: any lengths share a batch
    for c in chunks:
        assert c.padded % watermark.LENGTH_BUCKET_SAMPLES == 0
        assert c.padded - c.length + (c.c1 - c.e) >= watermark.ZERO_TAIL_SAMPLES  # zeros or audio after e
        assert c.padded - c.length < watermark.ZERO_TAIL_SAMPLES + watermark.LENGTH_BUCKET_SAMPLES
    for batch in batches:
        assert 1 <= len(batch) <= 4
    assert [c.padded for c in chunks] == sorted((c.padded for c in chunks), reverse=True)  # longest first
    # A 1 s clip runs as 1.2 s; the 25 s input's windows (11 s, 12 s: audio after their centres) are not
    # lengthened, its 5 s tail window (6 s with its context) gets 0.2 s of zeros.
    ones = [c for c in chunks if c.length == MODEL_RATE]
    assert ones and all(c.padded == int(1.2 * MODEL_RATE) for c in ones)
    long_item = LENGTHS.index(25.0)
    assert sorted(c.padded for c in chunks if c.item == long_item) == [int(s * MODEL_RATE) for s in (6.2, 11, 12)]
    assert all(len(b) == 1 for b in models._batches(n, max_batch=1))  # one at a time: no batching at all


def test_input_shapes_are_bounded_over_any_lengths(models):
    """Length buckets keep the number of distinct forward shapes small (oneDNN caches a primitive per shape)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(100, 40 * MODEL_RATE, size=400).tolist()
    shapes = {c.padded for b in models._batches(lengths, max_batch=1) for c in b}
    longest_window = int((models.window_seconds + 2 * models.context_seconds) * MODEL_RATE)
    assert len(shapes) <= -(-(longest_window + watermark.ZERO_TAIL_SAMPLES) // watermark.LENGTH_BUCKET_SAMPLES)


@pytest.mark.parametrize("n", [16_000, 16_123, 16_319, 35_210])  # several positions on the 320-sample frame
def test_zeros_beyond_the_tail_change_nothing(models, n):
    """Why any windows can be padded together: past ``ZERO_TAIL_SAMPLES`` zeros, more zeros change neither
    network's output on the real samples; fewer do (so the tail is needed, not decoration)."""
    import torch

    x = torch.from_numpy(looped_speech(n / MODEL_RATE + 0.1, 7)[:n])[None, None, :]
    msg = torch.tensor([seeded_bits(7)])

    def outputs(zeros: int) -> tuple[np.ndarray, np.ndarray]:
        padded = torch.nn.functional.pad(x, (0, zeros))
        with torch.inference_mode():
            wm = models.generator.get_watermark(padded, MODEL_RATE, message=msg)[0, :, :n].numpy()
            raw = models.detector.detector(padded)[0, :, :n].numpy()
        return wm, raw

    wm_ref, raw_ref = outputs(watermark.ZERO_TAIL_SAMPLES)
    for extra in (1, 320, 3_200, 20_000):
        wm, raw = outputs(watermark.ZERO_TAIL_SAMPLES + extra)
        np.testing.assert_allclose(wm, wm_ref, atol=1e-6 * np.abs(wm_ref).max(), rtol=0)
        np.testing.assert_allclose(raw, raw_ref, atol=1e-6 * np.abs(raw_ref).max(), rtol=0)
    wm0, raw0 = outputs(0)  # no tail: the end of the output depends on where the input stops
    assert np.abs(wm0 - wm_ref).max() > 1e-3 * np.abs(wm_ref).max()
    assert np.abs(raw0 - raw_ref).max() > 1e-3 * np.abs(raw_ref).max()


MIXED = [2.0, 2.37, 2.81, 3.05]  # four queued embeds that used to run as four forwards of batch 1


def test_mixed_lengths_run_in_one_forward_pass_and_equal_one_at_a_time(models):
    xs = [looped_speech(s, 20 + i) for i, s in enumerate(MIXED)]
    bits = [seeded_bits(20 + i) for i in range(len(xs))]
    alone = [models.watermark_16k(x, b) for x, b in zip(xs, bits, strict=True)]
    before = dict(models.forward_passes)
    batched = models.watermark_16k_batch(xs, bits, max_batch=8)
    assert models.forward_passes["generator"] - before["generator"] == 1
    assert models.forward_passes["detector"] == before["detector"]
    for a, b in zip(alone, batched, strict=True):
        assert np.abs(a).max() > 1e-4
        np.testing.assert_allclose(b, a, atol=ATOL, rtol=0)

    marked = [x + w for x, w in zip(xs, alone, strict=True)]
    one = [models.detect_16k(x) for x in marked]
    before = dict(models.forward_passes)
    many = models.detect_16k_batch(marked, max_batch=8)
    assert models.forward_passes["detector"] - before["detector"] == 1
    assert models.forward_passes["generator"] == before["generator"]
    for (p1, b1), (p2, b2) in zip(one, many, strict=True):
        np.testing.assert_allclose(p2, p1, atol=ATOL, rtol=0)
        np.testing.assert_allclose(b2, b1, atol=ATOL, rtol=0)

    # Through the engine entry points: embed 1 generator pass; detection's plain pass 1 detector pass.
    items = [(x[None, :], MODEL_RATE, b) for x, b in zip(xs, bits, strict=True)]
    before = dict(models.forward_passes)
    watermark.embed_batch(models, items, max_batch=8)
    assert models.forward_passes["generator"] - before["generator"] == 1
    before = dict(models.forward_passes)
    found = watermark.detect_batch(models, [(m[None, :], MODEL_RATE) for m in marked], max_batch=8, search=None)
    assert models.forward_passes["detector"] - before["detector"] == 1
    assert all(f["detected"] for f in found)


def test_hop_sums_reduced_on_the_device_equal_the_float64_reference(models, monkeypatch):
    """analyse_16k_batch sums the bit and clipped detection logits per hop on the device; the sums equal a
    float64 reference built from the detector's raw output, with dropped leading samples, in float64 (CPU)
    and in float32 (what CUDA accumulates in)."""
    import torch

    from media_ops.watermark.messages import HOP_SECONDS, LOGIT_CLIP

    hop = int(HOP_SECONDS * MODEL_RATE)
    xs = [looped_speech(s, 30 + i) for i, s in enumerate([0.73, 2.4, 13.1])]
    drops = [0, 17, 161]

    def reference(x: np.ndarray, drop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        probs, logits, bits = [], [], []
        for c0, s, e, c1 in models._windows(len(x)):
            padded = np.zeros(c1 - c0 + watermark.ZERO_TAIL_SAMPLES, np.float32)
            padded[: c1 - c0] = x[c0:c1]
            with torch.inference_mode():
                raw = models._raw(torch.from_numpy(padded)[None, None, :])[0].double().numpy()
            kept = slice(s - c0, e - c0)
            probs.append(torch.softmax(torch.from_numpy(raw[:2, kept]).float(), 0)[1].numpy())
            logits.append(np.clip(raw[1, kept] - raw[0, kept], -LOGIT_CLIP, LOGIT_CLIP))
            bits.append(raw[2:, kept])
        p, lg, b = np.concatenate(probs)[drop:], np.concatenate(logits)[drop:], np.concatenate(bits, 1)[:, drop:]
        pad = (-len(lg)) % hop
        hop_logits = np.pad(lg, (0, pad)).reshape(-1, hop).sum(1)
        hop_bits = np.pad(b, ((0, 0), (0, pad))).reshape(b.shape[0], -1, hop).sum(2).T
        return p, hop_logits, hop_bits

    shifted = [np.concatenate([np.zeros(d, np.float32), x]) for x, d in zip(xs, drops, strict=True)]
    refs = [reference(y, d) for y, d in zip(shifted, drops, strict=True)]
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        monkeypatch.setattr(WatermarkModels, "_reduce_dtype", property(lambda self, d=dtype: d))
        found = models.analyse_16k_batch(shifted, drops=drops, max_batch=3)
        for a, (p, hop_logits, hop_bits) in zip(found, refs, strict=True):
            np.testing.assert_allclose(a.probs, p, atol=ATOL, rtol=0)
            scale = max(1.0, np.abs(hop_bits).max())
            np.testing.assert_allclose(a.hop_logits, hop_logits, atol=max(tol, 1e-3) * LOGIT_CLIP, rtol=0)
            np.testing.assert_allclose(a.hop_bits, hop_bits, atol=max(tol, 1e-3) * scale, rtol=0)


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


def test_two_threads_at_once_get_what_each_gets_alone(models):
    """The worker's model lanes call one loaded pair from several threads at the same time (embeds on one,
    detections on another, of other lengths): each result is the one-at-a-time result, and the forward-pass
    counters count every pass of both threads."""
    xs = [looped_speech(s, 40 + i) for i, s in enumerate([1.0, 2.3, 0.7])]
    bits = [seeded_bits(40 + i) for i in range(len(xs))]
    marked = [models.watermark_16k(x, b) for x, b in zip(xs, bits, strict=True)]
    detected = [models.detect_16k(m) for m in marked]
    before = dict(models.forward_passes)
    got = run_side_by_side({
        "embed": lambda: [models.watermark_16k_batch(xs, bits, max_batch=1) for _ in range(3)],
        "detect": lambda: [models.detect_16k_batch(marked, max_batch=1) for _ in range(3)],
    })
    for run_marked in got["embed"]:
        for a, b in zip(marked, run_marked, strict=True):
            np.testing.assert_allclose(b, a, atol=ATOL, rtol=0)
    for run_detected in got["detect"]:
        for (probs_a, bits_a), (probs_b, bits_b) in zip(detected, run_detected, strict=True):
            np.testing.assert_allclose(probs_b, probs_a, atol=ATOL, rtol=0)
            np.testing.assert_allclose(bits_b, bits_a, atol=ATOL, rtol=0)
    assert models.forward_passes["generator"] - before["generator"] == 3 * len(xs)
    assert models.forward_passes["detector"] - before["detector"] == 3 * len(xs)
