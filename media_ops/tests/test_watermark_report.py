"""The robustness report's engine (``media_ops.watermark.report``): the quality figures, the bit accuracy, and
a report run on the demo model with small test batteries (the API tests run the real battery)."""

from __future__ import annotations

import numpy as np
import pytest

from media_ops import audio, watermark
from media_ops.errors import MediaError
from media_ops.watermark import MODEL_RATE, WatermarkModels, attacks
from media_ops.watermark.report import (
    attack_seed,
    bit_accuracy,
    quality,
    robustness_report,
    segmental_snr_db,
)
from testing.demo import load_demo_models
from testing.speech import fixture_speech

BITS = watermark.parse_message("1A2B")


@pytest.fixture(scope="module")
def models() -> WatermarkModels:
    return load_demo_models()


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return fixture_speech()[None, :]


@pytest.fixture(scope="module")
def marked(models, clean) -> np.ndarray:
    return watermark.embed(models, clean, MODEL_RATE, BITS)


def test_quality_lines_up_a_codec_delay_before_measuring():
    rng = np.random.default_rng(3)
    original = rng.normal(0, 0.1, MODEL_RATE).astype(np.float32)
    marked = original + rng.normal(0, 0.01, MODEL_RATE).astype(np.float32)  # 20 dB below
    delayed = np.concatenate([np.zeros(529, np.float32), marked])[:MODEL_RATE]  # an encoder's priming samples
    q = quality(original[None], MODEL_RATE, delayed[None], MODEL_RATE)
    assert q["offset_samples"] == 529
    assert q["snr_db"] == pytest.approx(20.0, abs=0.3)
    assert q["segmental_snr_db"] == pytest.approx(20.0, abs=0.5)
    # Without the alignment the same pair would measure about 0 dB: the delay, not the watermark.
    assert watermark.snr_db(original, delayed) < 1


def test_quality_across_sample_rates_and_of_identical_files():
    t = np.arange(44_100) / 44_100
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    q = quality(tone, 44_100, tone.copy(), 44_100)
    assert q["snr_db"] is None  # identical: no watermark at all, not "infinitely clean"
    q = quality(audio.resample(tone, 44_100, 16_000), 16_000, tone, 44_100)
    assert q["offset_samples"] == 0 and q["snr_db"] > 30


def test_segmental_snr_ignores_silence_and_clamps():
    x = np.concatenate([np.zeros(3200), 0.1 * np.ones(3200)]).astype(np.float32)
    assert segmental_snr_db(x, x, MODEL_RATE) == 35.0  # clamped at the top: an identical frame is not +inf
    assert segmental_snr_db(np.zeros(3200, np.float32), np.ones(3200, np.float32), MODEL_RATE) is None


def test_bit_accuracy_against_the_expected_bits():
    assert bit_accuracy([0.9] * 16, [1] * 16) == 1.0
    assert bit_accuracy([0.9] * 8 + [0.1] * 8, [1] * 16) == 0.5
    assert bit_accuracy(None, [1] * 16) is None


def test_seeds_are_stable_and_differ_per_attack_and_version():
    assert attack_seed("2026-12-1", "noise_10db") == attack_seed("2026-12-1", "noise_10db")
    assert attack_seed("2026-12-1", "noise_10db") != attack_seed("2026-12-1", "noise_20db")
    assert attack_seed("2026-12-1", "noise_10db") != attack_seed("2026-12-2", "noise_10db")


def _zero(x, sr, rng):
    return np.zeros_like(x)


def _broken(x, sr, rng):
    raise RuntimeError("codec missing")


BATTERY = (
    attacks.get("noise_20db"),
    attacks.Attack("silence", "test", "every sample zero", _zero),
    attacks.Attack("broken", "test", "raises", _broken),
    attacks.get("trim_123"),
)


def test_report_reads_every_attacked_copy_and_is_reproducible(models, marked, clean):
    report = robustness_report(models, marked, MODEL_RATE, battery=BATTERY, battery_version="t",
                               original=(clean, MODEL_RATE))
    rows = {r["name"]: r for r in report["attacks"]}
    assert list(rows) == ["noise_20db", "silence", "broken", "trim_123"]
    assert report["expected_message"] == "1A2B" and report["message_source"] == "detected"
    assert rows["noise_20db"]["message_survived"] and rows["noise_20db"]["bit_accuracy"] == 1.0
    assert rows["trim_123"]["message_survived"]  # found by the alignment search: the grid moved by 123 samples
    assert rows["trim_123"]["alignment"]["offset_samples"] != 0
    assert not rows["silence"]["detected"] and rows["silence"]["error"] is None
    # An attack that fails is reported as such and does not take the report down.
    assert not rows["broken"]["detected"] and "codec missing" in rows["broken"]["error"]
    assert report["summary"]["attacks"] == 4 and report["summary"]["message_survived"] == 2
    assert report["quality"]["snr_db"] == pytest.approx(watermark.snr_db(clean, marked), abs=0.01)

    again = robustness_report(models, marked, MODEL_RATE, battery=BATTERY, battery_version="t",
                              original=(clean, MODEL_RATE))
    assert [r | {"error": None} for r in again["attacks"]] == [r | {"error": None} for r in report["attacks"]]


def test_no_watermark_and_no_message_is_an_input_error(models, clean):
    with pytest.raises(MediaError) as caught:
        robustness_report(models, clean, MODEL_RATE, battery=BATTERY[:1], battery_version="t")
    assert caught.value.code == "NO_WATERMARK" and not caught.value.retryable
    report = robustness_report(models, clean, MODEL_RATE, battery=BATTERY[:1], battery_version="t",
                               expected_bits=BITS)
    assert report["message_source"] == "given" and not report["reference"]["detected"]
