"""Long audio is watermarked and detected in windows; the watermark must not fade at the window seams.

Needs the trained demo checkpoints (a random detector proves nothing about watermarking: MODELS.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from media_ops import audio, watermark
from media_ops.watermark import MODEL_RATE, WatermarkModels
from testing.demo import load_demo_models, needs_demo_models
from testing.uploads import FIXTURES

pytestmark = needs_demo_models
SECONDS = 25.0


@pytest.fixture(scope="module")
def models() -> WatermarkModels:
    return load_demo_models()


@pytest.fixture(scope="module")
def long_speech() -> np.ndarray:
    """25 s of speech: both fixtures concatenated and repeated (16 kHz mono)."""
    parts = []
    for name in ("speech_16k_mono.wav", "speech2_16k_mono.wav"):
        samples, rate = audio.decode(FIXTURES / name)
        assert rate == MODEL_RATE
        parts.append(samples[0])
    one = np.concatenate(parts)
    n = int(SECONDS * MODEL_RATE)
    return np.tile(one, n // len(one) + 1)[:n].astype(np.float32)


def _curve_near(result: dict, second: float, radius: float = 0.5) -> np.ndarray:
    hop = result["localization"]["hop_seconds"]
    values = np.asarray(result["localization"]["values"])
    return values[int((second - radius) / hop) : int((second + radius) / hop)]


def test_long_input_is_really_windowed(models, long_speech):
    windows = models._windows(len(long_speech))
    assert len(windows) == 3
    seams = [s / MODEL_RATE for _, s, _, _ in windows[1:]]
    assert seams == [10.0, 20.0]


def test_watermark_is_detected_across_window_seams(models, long_speech):
    bits = watermark.parse_message("1A2B")
    marked = watermark.embed(models, long_speech[None, :], MODEL_RATE, bits)
    assert watermark.snr_db(long_speech[None, :], marked) > 15

    result = watermark.detect(models, marked, MODEL_RATE)
    assert result["detected"] and result["probability"] > 0.9
    assert result["message"] == "1A2B"  # the bit logits are averaged over all windows, not just the first
    values = np.asarray(result["localization"]["values"])
    assert len(values) == int(SECONDS / watermark.HOP_SECONDS)
    for seam in (10.0, 20.0):  # the localisation curve stays high across each seam, not just on average
        near = _curve_near(result, seam)
        assert near.min() > 0.5, (seam, near.round(2).tolist())
        assert near.mean() > 0.8, seam
    assert result["watermarked_seconds"] > 0.9 * SECONDS

    clean = watermark.detect(models, long_speech[None, :], MODEL_RATE)
    assert not clean["detected"] and clean["probability"] < 0.1
    for seam in (10.0, 20.0):  # and no false positive appears at a seam either
        assert _curve_near(clean, seam).max() < 0.5


def test_windowed_embedding_matches_one_pass_away_from_the_end(models, long_speech):
    """The context on both sides makes each window's kept centre what a single pass would compute."""
    import torch

    x = long_speech[: int(14 * MODEL_RATE)]  # 14 s: two windows with a seam at 10 s
    assert len(models._windows(len(x))) == 2
    bits = watermark.parse_message("00FF")
    windowed = models.watermark_16k(x, bits)
    with torch.inference_mode():
        whole = models.generator.get_watermark(
            torch.from_numpy(x)[None, None, :], message=torch.tensor([bits])
        )[0, 0].numpy()
    # Identical for the LSTM-free demo model; with the full-size model's LSTM the state starts fresh in
    # each window, so only close. Either way close everywhere, seam included.
    seam = slice(int(9.5 * MODEL_RATE), int(10.5 * MODEL_RATE))
    scale = np.abs(whole).max()
    assert np.abs(windowed[seam] - whole[seam]).max() < 0.5 * scale
    corr = np.corrcoef(windowed, whole)[0, 1]
    assert corr > 0.9
