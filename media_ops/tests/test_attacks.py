"""The attack battery's contracts (media_ops/watermark/attacks.py): every attack really edits the audio, keeps
the sample rate, rank, channel count and (unless it says otherwise) the length, is reproducible from its seed,
and does what its name says (measured on tones and speech, not assumed)."""

from __future__ import annotations

import numpy as np
import pytest

from media_ops.watermark import attacks
from testing.speech import fixture_speech

SR = 16_000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return fixture_speech()


def _tone(freq: float, seconds: float = 1.0, amp: float = 0.1) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


def _level_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-20)


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SR)[int(np.argmax(spec))])


def test_battery_is_versioned_and_named_once():
    assert attacks.BATTERY_VERSION == "2026-12-1"
    names = [a.name for a in attacks.BATTERY]
    assert len(names) == len(set(names)) >= 25
    rows = attacks.describe()
    assert [r["name"] for r in rows] == names and all(r["description"] and r["family"] for r in rows)
    with pytest.raises(KeyError, match="unknown attack"):
        attacks.get("no-such-attack")


@pytest.mark.parametrize("attack", attacks.BATTERY, ids=lambda a: a.name)
def test_every_attack_edits_and_keeps_its_contract(attack, speech):
    y = attack(speech, SR, np.random.default_rng(7))
    assert y.dtype == np.float32 and y.ndim == 1 and np.all(np.isfinite(y))
    if attack.changes_length:
        assert len(y) != len(speech)
    else:
        assert len(y) == len(speech)
    n = min(len(y), len(speech))
    assert not np.allclose(y[:n], speech[:n], atol=1e-4), "the attack left the audio unchanged"
    again = attack(speech, SR, np.random.default_rng(7))
    np.testing.assert_array_equal(y, again)  # reproducible from the seed
    stereo = attack(np.stack([speech, 0.5 * speech]), SR, np.random.default_rng(7))
    assert stereo.shape == (2, len(y)) and stereo.dtype == np.float32


def test_polarity_inverts_every_sample(speech):
    np.testing.assert_array_equal(attacks.get("polarity")(speech, SR), -speech)


def test_cuts_keep_the_right_samples(speech):
    np.testing.assert_array_equal(attacks.get("trim_123")(speech, SR), speech[123:])
    np.testing.assert_array_equal(attacks.get("trim_0.5s")(speech, SR), speech[8000:])
    crop = attacks.get("crop_middle_50")(speech, SR)
    start = (len(speech) - len(crop)) // 2
    assert abs(len(crop) - len(speech) / 2) <= 1
    np.testing.assert_array_equal(crop, speech[start : start + len(crop)])
    inserted = attacks.get("silence_0.5s")(speech, SR, np.random.default_rng(3))
    assert len(inserted) == len(speech) + 8000
    zero_run = np.flatnonzero(inserted == 0.0)
    assert len(zero_run) >= 8000


def test_speed_changes_length_and_pitch_together():
    tone = _tone(1000.0, 2.0)
    fast = attacks.get("speed_1.05")(tone, SR)
    slow = attacks.get("speed_0.95")(tone, SR)
    assert abs(len(fast) - len(tone) / 1.05) <= 2 and abs(len(slow) - len(tone) / 0.95) <= 2
    assert _peak_hz(fast) == pytest.approx(1050, abs=3)
    assert _peak_hz(slow) == pytest.approx(950, abs=3)


def test_pitch_shift_moves_a_tone_by_a_semitone_and_keeps_length():
    tone = _tone(440.0, 2.0)
    up = attacks.get("pitch_up_1")(tone, SR)
    down = attacks.get("pitch_down_1")(tone, SR)
    assert len(up) == len(down) == len(tone)
    assert _peak_hz(up[SR // 2 :]) == pytest.approx(440 * 2 ** (1 / 12), abs=4)
    assert _peak_hz(down[SR // 2 :]) == pytest.approx(440 * 2 ** (-1 / 12), abs=4)


@pytest.mark.parametrize(
    ("name", "stopped_hz", "passed_hz"),
    [("lowpass_3k", 6000, 1000), ("lowpass_4k", 7500, 2000), ("resample_8k", 4500, 1000),
     ("resample_11k", 6000, 2000), ("highpass_500", 250, 1500)],
)
def test_band_limits_stop_what_they_should(name, stopped_hz, passed_hz):
    attack = attacks.get(name)
    stop, keep = _tone(stopped_hz), _tone(passed_hz)
    assert _level_db(attack(stop, SR)[SR // 10 : -SR // 10]) < _level_db(stop) - 30  # edges: filter transients
    assert _level_db(attack(keep, SR)) == pytest.approx(_level_db(keep), abs=1.0)


@pytest.mark.parametrize(("name", "snr"), [("noise_20db", 20), ("noise_10db", 10)])
def test_noise_is_at_its_snr(name, snr, speech):
    y = attacks.get(name)(speech, SR, np.random.default_rng(1))
    assert _level_db(speech) - _level_db(y - speech) == pytest.approx(snr, abs=0.3)


@pytest.mark.parametrize("name", ["mix_music_-6db", "mix_noise_-6db"])
def test_mixing_is_6_db_below_the_signal(name, speech):
    y = attacks.get(name)(speech, SR, np.random.default_rng(1))
    assert _level_db(speech) - _level_db(y - speech) == pytest.approx(6.0, abs=0.3)


@pytest.mark.parametrize("name", ["mp3_24k", "mp3_64k", "aac_32k", "aac_64k", "opus_24k", "opus_48k"])
def test_codecs_are_lossy_but_aligned(name, speech):
    y = attacks.get(name)(speech, SR)
    residual = _level_db(speech) - _level_db(y - speech)
    assert 3 < residual < 60  # lossy, not a copy, still the same audio
    corr = [float(np.dot(y[:-k or None], speech[k:])) for k in range(0, 8)]
    corr_back = [float(np.dot(y[k:], speech[:-k])) for k in range(1, 8)]
    assert max(corr) == corr[0] and corr[0] > max(corr_back)  # the codec's delay was removed


def test_gain_and_clipping_levels(speech):
    assert _level_db(attacks.get("gain_-10db")(speech, SR)) == pytest.approx(_level_db(speech) - 10, abs=0.01)
    clipped = attacks.get("clipping")(speech, SR)
    assert np.max(np.abs(clipped)) == pytest.approx(0.5 * np.max(np.abs(speech)), rel=1e-6)


def test_room_effects_add_a_tail():
    click = np.zeros(SR, np.float32)
    click[100] = 0.5
    for name in ("reverb", "echo"):
        y = attacks.get(name)(click, SR)
        assert np.sum(y[2000:] ** 2) > 1e-4, name  # energy well after the click


def test_synthetic_music_is_seeded_and_at_its_level():
    a = attacks.synthetic_music(2 * SR, SR, np.random.default_rng(5), level_db=-20.0)
    b = attacks.synthetic_music(2 * SR, SR, np.random.default_rng(5), level_db=-20.0)
    np.testing.assert_array_equal(a, b)
    assert _level_db(a) == pytest.approx(-20.0, abs=0.01)
    assert not np.array_equal(a, attacks.synthetic_music(2 * SR, SR, np.random.default_rng(6)))
