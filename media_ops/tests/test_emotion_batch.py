"""Exact padded emotion batches: ``analyze_batch`` equals ``analyze`` one at a time, in the fewest passes.

Runs the real FunASR model (the tiny demo checkpoint): equality of batched and one-at-a-time results does not
depend on the weights being trained. Forward passes are counted by the model's own hook (``forward_passes``),
not by counting engine calls.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from media_ops.emotion import LABELS, EmotionModel, UnsupportedModelError, plan_windows
from media_ops.emotion.batching import WindowRef, check_structure, plan_batches
from media_ops.errors import EMPTY_FILE, INVALID_FORMAT, MediaError
from media_ops.tests.test_emotion import DEMO_DIR, noise
from testing.assertions import run_side_by_side

SCORE_ATOL = 1e-5
FEATURE_ATOL = 1e-4
LENGTHS = [0.7, 1.3, 2.9, 5.0]  # seconds: every clip of a batch padded to the longest but one


@pytest.fixture(scope="module")
def model() -> EmotionModel:
    torch.set_num_threads(1)
    return EmotionModel.load(DEMO_DIR, threads=1)


@pytest.fixture(scope="module")
def short_windows() -> EmotionModel:
    """2 s windows with 0.4 s overlap: long-input windowing at the cost of a few seconds of audio."""
    return EmotionModel.load(DEMO_DIR, threads=1, window_seconds=2.0, overlap_seconds=0.4)


def _assert_same(batched, alone) -> None:
    assert batched.granularity == alone.granularity and batched.windows == alone.windows
    assert batched.duration_seconds == alone.duration_seconds
    assert batched.top["label"] == alone.top["label"]
    np.testing.assert_allclose([batched.scores[k] for k in LABELS], [alone.scores[k] for k in LABELS],
                               atol=SCORE_ATOL, rtol=0)
    if alone.frames is None:
        assert batched.frames is None
    else:
        b, a = np.array(batched.frames["scores"]), np.array(alone.frames["scores"])
        assert b.shape == a.shape
        np.testing.assert_allclose(b, a, atol=SCORE_ATOL, rtol=0)
    if alone.embedding is None:
        assert batched.embedding is None
    else:
        assert batched.embedding.shape == alone.embedding.shape
        assert batched.embedding.dtype == alone.embedding.dtype == np.float32
        np.testing.assert_allclose(batched.embedding, alone.embedding, atol=FEATURE_ATOL, rtol=0)


@pytest.mark.parametrize("granularity", ["utterance", "frame"])
@pytest.mark.parametrize("extract_embedding", [False, True])
def test_mixed_lengths_batched_equal_one_at_a_time(model, granularity, extract_embedding):
    clips = [noise(s, seed=i) for i, s in enumerate(LENGTHS)]
    alone = [model.analyze(c, granularity=granularity, extract_embedding=extract_embedding) for c in clips]
    before = model.forward_passes
    batched = model.analyze_batch([(c, granularity, extract_embedding) for c in clips], max_batch=4)
    assert model.forward_passes - before == 1  # four clips of four lengths: one padded pass
    for b, a in zip(batched, alone, strict=True):
        _assert_same(b, a)


def test_options_may_differ_within_one_batch(model):
    """Granularity and embeddings only change what is read from the features: one pass serves all."""
    options = [("frame", True), ("utterance", False), ("utterance", True), ("frame", False)]
    clips = [noise(s, seed=10 + i) for i, s in enumerate(LENGTHS)]
    items = [(c, g, e) for c, (g, e) in zip(clips, options, strict=True)]
    before = model.forward_passes
    batched = model.analyze_batch(items, max_batch=4)
    assert model.forward_passes - before == 1
    for (c, g, e), b in zip(items, batched, strict=True):
        _assert_same(b, model.analyze(c, granularity=g, extract_embedding=e))


def test_without_the_re_zeroing_a_padded_batch_would_differ(model, monkeypatch):
    """The guard is needed: with the positional-conv hook disabled, padding leaks into the short clip."""
    clips = [noise(0.7, seed=1), noise(5.0, seed=2)]
    alone = model.analyze(clips[0], granularity="frame", extract_embedding=True)
    for conv in check_structure(model._auto.model):  # this test's instance only: its hooks, removed
        monkeypatch.setattr(conv, "_forward_pre_hooks", {})
    leaky = model.analyze_batch([(c, "frame", True) for c in clips], max_batch=2)[0]
    assert np.abs(leaky.embedding - alone.embedding).max() > 1e-2


def test_padded_batches_on_two_threads_at_once_equal_one_at_a_time(model):
    """The worker's model lanes run passes side by side on one model: each thread's padding mask is its own.
    Thread A runs padded batches (two lengths), thread B unpadded ones of another shape, at the same time;
    a mask shared between them would be applied to B's pass (a shape error, or wrong scores)."""
    padded = [noise(0.7, seed=31), noise(5.0, seed=32)]
    plain = [noise(2.9, seed=33), noise(2.9, seed=34), noise(2.9, seed=35)]
    expected = {
        "padded": [model.analyze(c, granularity="frame", extract_embedding=True) for c in padded],
        "plain": [model.analyze(c, granularity="frame", extract_embedding=True) for c in plain],
    }

    def four_batches(clips: list) -> list:
        return [model.analyze_batch([(c, "frame", True) for c in clips], max_batch=len(clips)) for _ in range(4)]

    got = run_side_by_side({"padded": lambda: four_batches(padded), "plain": lambda: four_batches(plain)})
    for name, runs in got.items():
        assert len(runs) == 4
        for batched in runs:
            for b, a in zip(batched, expected[name], strict=True):
                _assert_same(b, a)


def test_forward_passes_are_ceil_of_windows_over_batch_size(short_windows):
    model = short_windows
    lengths = [0.7, 1.3, 2.9, 5.0, 3.7, 1.0]
    clips = [noise(s, seed=20 + i) for i, s in enumerate(lengths)]
    windows = [len(plan_windows(c.size, model.window_samples, model.overlap_samples)) for c in clips]
    assert windows == [1, 1, 2, 3, 3, 1]  # 11 windows, of many lengths

    before = model.forward_passes
    alone = [model.analyze(c, granularity="frame", extract_embedding=True) for c in clips]
    assert model.forward_passes - before == sum(windows)  # one at a time: one pass per window
    for size in (1, 3, 4, 11, 16):
        before = model.forward_passes
        batched = model.analyze_batch([(c, "frame", True) for c in clips], max_batch=size)
        assert model.forward_passes - before == math.ceil(sum(windows) / size), size
        for b, a in zip(batched, alone, strict=True):
            _assert_same(b, a)


def test_long_inputs_with_the_default_windows(model):
    """A 35 s input (two 30 s-class windows) batched with short clips; frames trimmed at the seam as alone."""
    clips = [noise(35.0, seed=30), noise(1.3, seed=31), noise(2.9, seed=32)]
    for granularity in ("utterance", "frame"):
        alone = [model.analyze(c, granularity=granularity, extract_embedding=True) for c in clips]
        before = model.forward_passes
        batched = model.analyze_batch([(c, granularity, True) for c in clips], max_batch=2)
        assert model.forward_passes - before == 2  # 4 windows
        assert batched[0].windows == 2
        for b, a in zip(batched, alone, strict=True):
            _assert_same(b, a)


def test_bad_inputs_fail_with_their_codes(model):
    good = noise(1.3, seed=40)
    too_short = np.zeros(300, np.float32)  # shorter than the 400-sample receptive field
    empty = np.zeros(0, np.float32)
    for bad, code in [(too_short, INVALID_FORMAT), (empty, EMPTY_FILE)]:
        before = model.forward_passes
        with pytest.raises(MediaError) as err:
            model.analyze_batch([(good, "utterance", False), (bad, "utterance", False)])
        assert err.value.code == code
        assert model.forward_passes == before  # checked before anything runs
    with pytest.raises(ValueError, match="granularity"):
        model.analyze_batch([(good, "word", False)])

    before = model.forward_passes
    results = model.analyze_batch(
        [(too_short, "utterance", False), (good, "frame", False), (empty, "utterance", False),
         (good, "word", False), (noise(0.7, seed=41), "utterance", True)],
        max_batch=4, return_exceptions=True,
    )
    assert model.forward_passes - before == 1  # the two good ones, together
    assert [type(r).__name__ for r in results] == [
        "MediaError", "EmotionAnalysis", "MediaError", "ValueError", "EmotionAnalysis"
    ]
    assert results[0].code == INVALID_FORMAT and results[2].code == EMPTY_FILE
    _assert_same(results[1], model.analyze(good, granularity="frame"))
    assert model.analyze_batch([]) == []


def test_plan_batches_longest_first_in_the_fewest_batches():
    refs = [WindowRef(i, 0, 0, n) for i, n in enumerate([500, 9000, 700, 9000, 4000])]
    batches = plan_batches(refs, 2)
    assert [[r.item for r in b] for b in batches] == [[1, 3], [4, 2], [0]]
    assert len(plan_batches(refs, 8)) == 1 and len(plan_batches(refs, 1)) == 5
    assert plan_batches([], 4) == []


def test_an_unexpected_model_structure_is_refused_at_load(model):
    """The FunASR internals the exact batches rely on are checked when the model is built, not trusted."""
    import torch.nn as nn

    def broken(change):
        auto = copy.copy(model._auto)
        auto.model = copy.deepcopy(model._auto.model)
        change(auto.model.modality_encoders["AUDIO"])
        return auto

    def unpadded_conv(enc):
        check_structure(model._auto.model)  # the original passes
        next(m for m in enc.relative_positional_encoder.modules() if isinstance(m, nn.Conv1d)).padding = (0,)

    def extra_conv(enc):
        enc.relative_positional_encoder.append(nn.Conv1d(64, 64, 3, padding=1))

    def time_norm(enc):
        enc.relative_positional_encoder[1][3] = nn.GroupNorm(4, 64)

    def fixed_positions(enc):
        enc.fixed_positional_encoder = nn.Identity()

    def default_extractor(enc):
        enc.modality_cfg.extractor_mode = "default"

    for change, message in [
        (unpadded_conv, "zero padding"),
        (extra_conv, "positional Conv1d layers"),
        (time_norm, "normalises across frames"),
        (fixed_positions, "fixed positional encoder"),
        (default_extractor, "extractor_mode"),
    ]:
        with pytest.raises(UnsupportedModelError, match=message):
            EmotionModel(broken(change), model_dir=DEMO_DIR, version="test")


def test_the_cuda_one_at_a_time_path_equals_funasrs(model, monkeypatch):
    """On CUDA ``analyze`` skips FunASR's ``generate`` (it empties the CUDA cache after every call) and runs
    the padded-batch forward one window per pass: same results as FunASR's own path, one pass per window."""
    clips = [noise(s, seed=40 + i) for i, s in enumerate(LENGTHS)]
    alone = [model.analyze(c, granularity="frame", extract_embedding=True) for c in clips]
    monkeypatch.setattr(model, "batch_path_alone", True)
    calls = []
    monkeypatch.setattr(model._auto, "generate", lambda *a, **k: calls.append(1))
    before = model.forward_passes
    direct = [model.analyze(c, granularity="frame", extract_embedding=True) for c in clips]
    assert calls == [] and model.forward_passes - before == len(clips)
    for d, a in zip(direct, alone, strict=True):
        _assert_same(d, a)
