"""Detection by regions, and the search that finds a watermark an edit moved (trims, crops, splices,
polarity inversion, speed), with the negative controls the search must not turn into detections. All but the
region-rule test need the trained demo checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from media_ops import audio, watermark
from media_ops.watermark import MODEL_RATE, AlignmentSearch, Analysis, WatermarkModels
from testing.demo import load_demo_models, needs_demo_models
from testing.speech import fixture_speech, looped_speech
from testing.uploads import FIXTURES

FRAME = 320


@pytest.fixture(scope="module")
def models() -> WatermarkModels:
    return load_demo_models()


@pytest.fixture(scope="module")
def marked(models) -> np.ndarray:
    """The first speech fixture watermarked with 1A2B (16 kHz mono)."""
    x = fixture_speech()
    return watermark.embed(models, x[None], MODEL_RATE, watermark.parse_message("1A2B"))[0]


def _detect(models, y: np.ndarray, **kwargs) -> dict:
    return watermark.detect(models, y[None, :], MODEL_RATE, **kwargs)


def _messages(result: dict) -> list[str]:
    return [s["message"] for s in result["segments"]]


# --- the region rule (no model) -----------------------------------------------------------------------------


def _analysis(marked_spans: list[tuple[float, float]], seconds: float) -> Analysis:
    hop = int(MODEL_RATE * watermark.HOP_SECONDS)
    a = Analysis.empty(int(seconds * MODEL_RATE), hop)
    for start, end in marked_spans:
        a.probs[int(start * MODEL_RATE) : int(end * MODEL_RATE)] = 0.9
    return a


def test_region_rule_bridges_short_gaps_and_drops_islands():
    # 1.0-2.0 and 2.08-3.0 s: an 80 ms gap is bridged; 4.0-4.15 s is an island (< 0.2 s); 5.0-5.3 s stays.
    a = _analysis([(1.0, 2.0), (2.08, 3.0), (4.0, 4.15), (5.0, 5.3)], 6.0)
    spans = [s.seconds() for s in watermark._segments(a, watermark._Alignment())]
    assert spans == [pytest.approx((1.0, 3.0)), pytest.approx((5.0, 5.3))]
    # A gap of 0.15 s is not bridged.
    a = _analysis([(1.0, 2.0), (2.15, 3.0)], 4.0)
    assert len(watermark._segments(a, watermark._Alignment())) == 2
    # Audio shorter than two islands: half the audio is enough.
    assert len(watermark._segments(_analysis([(0.0, 0.15)], 0.3), watermark._Alignment())) == 1


# --- regions ------------------------------------------------------------------------------------------------


@needs_demo_models
@pytest.mark.parametrize("aligned", [True, False], ids=["on-grid", "off-grid"])
def test_spliced_file_yields_one_region_with_its_message(models, marked, aligned):
    """clean + watermarked + clean: the watermark covers ~30 % of the file; the old whole-file verdict said no."""
    before = fixture_speech("speech2_16k_mono.wav")  # 3.537 s: 56,592 samples, 272 past a frame boundary
    if aligned:
        before = before[: len(before) // FRAME * FRAME]
    after = looped_speech(5.0, 7, "speech2_16k_mono.wav")
    spliced = np.concatenate([before, marked, after])
    start, end = len(before) / MODEL_RATE, (len(before) + len(marked)) / MODEL_RATE

    result = _detect(models, spliced)
    assert result["detected"] is True
    assert result["summary"] == "Watermark found in 1 region"
    assert result["probability"] < 0.5  # what the whole-file rule used to compare with 0.5
    [seg] = result["segments"]
    assert seg["start_seconds"] == pytest.approx(start, abs=0.1)
    assert seg["end_seconds"] == pytest.approx(end, abs=0.1)
    assert seg["message"] == "1A2B" and result["message"] == "1A2B"
    assert seg["bits"] == watermark.parse_message("1A2B")
    assert seg["confidence"] == "high"
    values = np.asarray(result["localization"]["values"])
    assert values[int(start * 100) + 10 : int(end * 100) - 10].min() > 0.5  # the curve shows it too
    clean_part = values[: int(start * 100) - 10]
    # No region there (one segment above), and the curve stays low: the v3 demo model's per-hop probability on
    # clean speech has rare single-hop blips (measured: one hop of 354 at 0.55), which the region rule ignores.
    assert np.count_nonzero(clean_part > 0.5) <= 0.01 * len(clean_part) and clean_part.max() < 0.7


@needs_demo_models
@pytest.mark.parametrize("second_on_grid", [True, False], ids=["both-on-grid", "second-off-grid"])
def test_two_regions_with_two_messages(models, second_on_grid):
    first = fixture_speech()
    second = fixture_speech("speech2_16k_mono.wav")
    a = watermark.embed(models, first[None], MODEL_RATE, watermark.parse_message("1A2B"))[0]
    b = watermark.embed(models, second[None], MODEL_RATE, watermark.parse_message("C3A5"))[0]
    lead = looped_speech(2.0, 1, "speech2_16k_mono.wav")  # 100 frames: the first region is on the grid
    gap = looped_speech(1.5, 2)
    if second_on_grid:
        gap = gap[: len(gap) - (len(lead) + len(a) + len(gap)) % FRAME]
    spliced = np.concatenate([lead, a, gap, b, looped_speech(1.0, 3)])

    result = _detect(models, spliced)
    assert result["summary"] == "Watermark found in 2 regions"
    assert _messages(result) == ["1A2B", "C3A5"]
    first_seg, second_seg = result["segments"]
    assert first_seg["start_seconds"] == pytest.approx(len(lead) / MODEL_RATE, abs=0.1)
    assert second_seg["start_seconds"] == pytest.approx((len(lead) + len(a) + len(gap)) / MODEL_RATE, abs=0.1)
    assert first_seg["end_seconds"] < second_seg["start_seconds"]
    # The overall message is the strongest region's: here the longer one.
    assert result["message"] == "1A2B"


# --- edits: polarity, trims, crops, speed ---------------------------------------------------------------------


@needs_demo_models
def test_polarity_inversion_is_read_back_with_the_right_message(models, marked):
    result = _detect(models, -marked)
    assert result["detected"] is True and result["message"] == "1A2B"
    assert result["alignment"] == {"offset_samples": 0, "polarity": -1, "speed": 1.0}
    assert result["segments"][0]["alignment"]["polarity"] == -1
    # Unedited audio keeps polarity +1: the choice is not a coin toss.
    plain = _detect(models, marked)
    assert plain["message"] == "1A2B"
    assert plain["alignment"] == {"offset_samples": 0, "polarity": 1, "speed": 1.0}


@needs_demo_models
@pytest.mark.parametrize("k", [1, 2, 37, 123, 200, 319])
def test_trim_of_k_samples_finds_the_offset_and_the_message(models, marked, k):
    result = _detect(models, marked[k:])
    assert result["detected"] is True and result["message"] == "1A2B"
    assert result["alignment"]["offset_samples"] == k  # k zeros put back restore the grid
    assert result["alignment"]["polarity"] == 1
    assert len(result["segments"]) == 1 and result["probability"] > 0.9


@needs_demo_models
def test_without_the_search_a_trim_is_lost(models, marked):
    """The search is what finds it: read as it is, a 123-sample trim gives no trustworthy region."""
    result = _detect(models, marked[123:], search=None)
    assert result["message"] != "1A2B"


@needs_demo_models
@pytest.mark.parametrize("name", ["speech_16k_mono.wav", "speech2_16k_mono.wav", "speech_44k_stereo.flac"])
def test_crop_keeping_the_middle_half(models, name):
    samples, rate = audio.decode(FIXTURES / name)
    marked = watermark.embed(models, samples, rate, watermark.parse_message("BEEF"))
    n = marked.shape[-1]
    crop = marked[:, n // 4 : n // 4 + n // 2]
    result = watermark.detect(models, crop, rate)
    assert result["detected"] is True and result["message"] == "BEEF"
    if rate == MODEL_RATE:
        assert result["alignment"]["offset_samples"] == (n // 4) % FRAME


@needs_demo_models
def test_inverted_trimmed_crop(models, marked):
    result = _detect(models, -marked[5000:45000])
    assert result["message"] == "1A2B"
    assert result["alignment"] == {"offset_samples": 5000 % FRAME, "polarity": -1, "speed": 1.0}


@needs_demo_models
def test_speed_search_when_asked(models, marked):
    faster = audio.resample(marked, int(MODEL_RATE * 1.1), MODEL_RATE)  # played 10 % faster
    assert not _detect(models, faster, search=AlignmentSearch(speeds=()))["detected"]  # no speed search
    assert not _detect(models, faster)["detected"]  # the default searches 0.95 and 1.05 only
    result = _detect(models, faster, search=AlignmentSearch(speeds=(0.9, 1.1)))
    assert result["detected"] is True and result["message"] == "1A2B"
    assert result["alignment"]["speed"] == 1.1
    [seg] = result["segments"]
    assert seg["end_seconds"] == pytest.approx(len(faster) / MODEL_RATE, abs=0.05)  # the file's own timeline


@needs_demo_models
@pytest.mark.parametrize("factor", [0.95, 1.05])
def test_default_search_undoes_a_5_percent_speed_change(models, marked, factor):
    changed = audio.resample(marked, int(MODEL_RATE * factor), MODEL_RATE)  # played 5 % slower / faster
    assert not _detect(models, changed, search=AlignmentSearch(speeds=()))["detected"]
    result = _detect(models, changed)
    assert result["detected"] is True and result["message"] == "1A2B"
    assert result["alignment"]["speed"] == factor


# --- negative controls ----------------------------------------------------------------------------------------


def _clean_inputs() -> list[tuple[str, np.ndarray]]:
    from testing.media import synth_music

    out = []
    for name in ("speech_16k_mono.wav", "speech2_16k_mono.wav", "speech_44k_stereo.flac", "speech.mp3",
                 "speech.m4a", "speech.ogg"):
        samples, rate = audio.decode(FIXTURES / name)
        out.append((name, audio.resample(audio.to_mono(samples), rate, MODEL_RATE)))
    for seed in (1, 2, 3):
        music = synth_music(6.0, 44100, seed=seed)
        out.append((f"music{seed}", audio.resample(audio.to_mono(music), 44100, MODEL_RATE)))
    rng = np.random.default_rng(0)
    out.append(("noise", (0.05 * rng.standard_normal(3 * MODEL_RATE)).astype(np.float32)))
    return out


@needs_demo_models
def test_clean_audio_inverted_or_shifted_is_never_detected(models):
    """The search reads every file in 640 ways (and again per speed, on request): none may become a detection.
    Speech, the demo model's domain, and music and noise, where its detector marks false regions."""
    with_speeds = AlignmentSearch(speeds=(0.9, 1.1))
    found = []
    for name, y in _clean_inputs():
        for variant, v, search in (
            ("as is, speeds too", y, with_speeds),
            ("inverted", -y, watermark.SEARCH),
            ("shifted 123", y[123:], watermark.SEARCH),
            ("inverted, shifted 77", -y[77:], watermark.SEARCH),
        ):
            result = _detect(models, v, search=search)
            if result["detected"] or result["segments"] or result["message"] is not None:
                found.append((name, variant, result["segments"]))
    assert found == []


# --- batching ---------------------------------------------------------------------------------------------------


@needs_demo_models
def test_detect_batch_equals_one_at_a_time(models, marked):
    before = fixture_speech("speech2_16k_mono.wav")
    inputs = [marked[123:], -marked, np.concatenate([before, marked, before]), fixture_speech(), marked]
    items = [(y[None, :], MODEL_RATE) for y in inputs]
    alone = [watermark.detect(models, s, r) for s, r in items]
    batched = watermark.detect_batch(models, items, max_batch=4)
    for a, b in zip(alone, batched, strict=True):
        assert a["detected"] == b["detected"] and a["message"] == b["message"]
        assert a["alignment"] == b["alignment"]
        assert [(s["message"], s["alignment"]) for s in a["segments"]] == [
            (s["message"], s["alignment"]) for s in b["segments"]
        ]
        for sa, sb in zip(a["segments"], b["segments"], strict=True):
            assert sa["start_seconds"] == pytest.approx(sb["start_seconds"], abs=0.011)
            assert sa["end_seconds"] == pytest.approx(sb["end_seconds"], abs=0.011)
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-3)


# --- which grid wins: re-synthesis evidence, with a prior for the file's own grid ------------------------------


def _marked_pass(n: int, bits_sign: float) -> Analysis:
    """A pass that reads a watermark over the whole signal, with every bit logit of sign ``bits_sign``."""
    hop = int(MODEL_RATE * 0.01)
    a = Analysis.empty(n, hop)
    a.probs[:] = 0.99
    a.hop_logits[:] = 4.0
    a.hop_bits[:] = bits_sign * 3.0 * hop
    return a


@pytest.mark.parametrize(
    ("z_own", "z_moved", "winner"),
    [(12.75, 12.79, 0), (9.0, 12.0, 240), (12.0, 9.0, 0), (7.0, 12.0, 240), (12.0, 7.0, 0)],
)
def test_overlapping_readings_are_decided_by_evidence_with_a_prior_for_the_own_grid(
    monkeypatch, z_own, z_moved, winner
):
    """Two grids read a confirmed watermark over the same stretch (one at offset 0 with all bits 1, one at 240
    with all bits 0): the stronger evidence wins, and a near tie goes to the file's own grid (measured case:
    12.75 against 12.79). Whatever the group order, only one region comes out."""
    from media_ops.watermark import search as S
    from media_ops.watermark.regions import _Alignment, _Segment

    n = 2 * MODEL_RATE
    y = np.zeros(n, np.float32)
    own = S._Group(y, 0, 1.0, {1: _marked_pass(n, +1.0)})
    moved = S._Group(y, 240, 1.0, {1: _marked_pass(n, -1.0)})
    evidence = {0: z_own, 240: z_moved}

    def judge(models, group, seg):
        return _Segment(seg.start, seg.end, group.passes[1], _Alignment(group.offset, 1, 1.0)), evidence[group.offset]

    monkeypatch.setattr(S, "_verify", judge)
    for groups in ([moved, own], [own, moved]):
        [region] = S._choose(None, groups)
        assert region.alignment.offset == winner
        assert region.to_json()["message"] == ("FFFF" if winner == 0 else "0000")
