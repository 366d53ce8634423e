"""The emotion engine, run for real: FunASR's AutoModel loads the tiny demo model from the repository.

The demo model has random weights, so nothing here checks *which* emotion wins; these tests check the
contract (labels, shapes, probabilities, windowing, offline loading, process-wide side effects).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from media_ops import emotion
from media_ops.emotion import LABELS, EmotionModel, ModelDirError, frames_for, parse_label, plan_windows
from media_ops.emotion import analysis as emotion_analysis  # where EmotionModel.load looks up _auto_model_class
from media_ops.errors import EMPTY_FILE, INVALID_FORMAT, MediaError

DEMO_DIR = Path(emotion.__file__).resolve().parents[1] / "demo_models" / "emotion2vec_demo"
DEMO_DIM = 64  # embed_dim in the demo config.yaml (the real emotion2vec_plus_large: 1024)
RAW_LABELS = ["生气/angry", "厌恶/disgusted", "恐惧/fearful", "开心/happy", "中立/neutral", "其他/other",
              "难过/sad", "吃惊/surprised", "<unk>"]  # fmt: skip


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * emotion.SAMPLE_RATE)) * 0.1).astype(np.float32)


class NetworkBlocked:
    """Makes every DNS lookup and socket connection fail, and remembers the attempts.

    Recording matters: FunASR swallows exceptions around its update check and hub download, so a raised
    error alone could go unnoticed.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.attempts: list[str] = []

        def refuse(what: str):
            def _refuse(*args, **kwargs):
                self.attempts.append(f"{what}{args[1:2]}")
                raise OSError(f"network blocked in tests ({what})")

            return _refuse

        monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
        monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
        monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
        monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))


@pytest.fixture(scope="module")
def model() -> EmotionModel:
    torch.set_num_threads(1)
    return EmotionModel.load(DEMO_DIR, threads=1)


@pytest.fixture
def spy_auto_model(monkeypatch):
    """Wraps FunASR's real AutoModel to record the keyword arguments it is built with."""
    real = emotion_analysis._auto_model_class()
    calls: list[dict] = []

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(emotion_analysis, "_auto_model_class", lambda: spy)
    return calls


def test_parse_label():
    assert parse_label("开心/happy") == "happy"
    assert parse_label("中立/neutral") == "neutral"
    assert parse_label("<unk>") == "unknown"
    assert [parse_label(raw) for raw in RAW_LABELS] == list(LABELS)
    with pytest.raises(ValueError):
        parse_label("玩笑/joking")


def test_load_is_offline_with_disable_update(monkeypatch, spy_auto_model):
    net = NetworkBlocked(monkeypatch)
    loaded = EmotionModel.load(DEMO_DIR, threads=1)
    analysis = loaded.analyze(noise(1.0))
    assert net.attempts == []
    (kwargs,) = spy_auto_model
    assert kwargs["disable_update"] is True
    assert kwargs["model"] == str(DEMO_DIR)
    assert kwargs["device"] == "cpu"
    assert kwargs["ncpu"] == 1
    assert analysis.model == {"name": "emotion2vec_demo", "version": loaded.version}
    assert len(loaded.version) == 12 and loaded.version == emotion.model_version(DEMO_DIR / "model.pt")


def test_load_leaves_threads_logging_and_rngs_as_they_were(monkeypatch, spy_auto_model):
    torch.set_num_threads(1)
    real_spy = emotion_analysis._auto_model_class()

    def changes_threads(**kwargs):  # as FunASR does when ncpu is not passed (its default is 4)
        auto = real_spy(**kwargs)
        torch.set_num_threads(3)
        return auto

    monkeypatch.setattr(emotion_analysis, "_auto_model_class", lambda: changes_threads)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)

    EmotionModel.load(DEMO_DIR, threads=1)  # FunASR reseeds all three generators with 0

    assert torch.get_num_threads() == 1
    assert spy_auto_model[0]["ncpu"] == 1
    assert root.handlers == handlers and root.level == level
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected


def test_mistyped_dir_fails_clearly_without_network(monkeypatch, spy_auto_model, tmp_path):
    net = NetworkBlocked(monkeypatch)
    with pytest.raises(ModelDirError, match="does not exist.*EMOTION_MODEL_DIR"):
        EmotionModel.load(str(DEMO_DIR) + "_typo")
    with pytest.raises(ModelDirError, match="does not exist"):
        EmotionModel.load("iic/emotion2vec_plus_large")  # a hub name is not a directory either
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    shutil.copy(DEMO_DIR / "config.yaml", incomplete)
    with pytest.raises(ModelDirError, match="lacks model.pt, tokens.txt"):
        EmotionModel.load(incomplete)
    unknown_labels = tmp_path / "unknown_labels"
    shutil.copytree(DEMO_DIR, unknown_labels)
    (unknown_labels / "tokens.txt").write_text("".join(t + "\n" for t in ["玩笑/joking", *RAW_LABELS[1:]]))
    with pytest.raises(ModelDirError, match="joking"):
        EmotionModel.load(unknown_labels)
    assert len(spy_auto_model) == 1  # only the complete directory reached FunASR
    assert net.attempts == []


def test_checkpoint_that_does_not_fit_the_config_is_refused(tmp_path):
    # FunASR itself would only print a warning and keep random weights for the missing keys.
    bad = tmp_path / "bad"
    shutil.copytree(DEMO_DIR, bad)
    state = torch.load(bad / "model.pt", weights_only=True)
    # Like the published emotion2vec+ checkpoints, the demo has no (unused) decoder weights, and loads anyway.
    assert not any(".decoder." in key for key in state)
    EmotionModel.load(bad)
    del state["proj.weight"]
    torch.save(state, bad / "model.pt")
    with pytest.raises(ModelDirError, match="does not match its config.yaml"):
        EmotionModel.load(bad)


def test_utterance_result(model):
    analysis = model.analyze(noise(2.0))
    assert analysis.granularity == "utterance"
    assert analysis.windows == 1
    assert list(analysis.scores) == list(LABELS)
    assert sum(analysis.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert all(0.0 <= p <= 1.0 for p in analysis.scores.values())
    assert analysis.top["label"] == max(analysis.scores, key=analysis.scores.get)
    assert analysis.top["score"] == analysis.scores[analysis.top["label"]]
    assert analysis.labels_raw == RAW_LABELS
    assert analysis.frames is None and analysis.embedding is None

    data = analysis.to_json()
    assert json.loads(json.dumps(data)) == data
    assert "embedding" not in data and "embedding_shape" not in data
    assert data["scores"] == analysis.scores and data["windows"] == 1 and data["duration_seconds"] == 2.0


def test_utterance_embedding(model):
    analysis = model.analyze(noise(2.0), extract_embedding=True)
    assert analysis.embedding.shape == (DEMO_DIM,)
    assert analysis.embedding.dtype == np.float32
    data = analysis.to_json()
    assert data["embedding_shape"] == [DEMO_DIM] and "embedding" not in data


def test_frame_result(model):
    audio = noise(2.0, seed=1)
    utterance = model.analyze(audio, extract_embedding=True)
    analysis = model.analyze(audio, granularity="frame", extract_embedding=True)
    n_frames = frames_for(audio.size)
    assert n_frames == 99  # 50 frames per second

    frames = analysis.frames
    assert frames["hop_seconds"] == 0.02
    assert frames["labels"] == list(LABELS)
    scores = np.array(frames["scores"])
    assert scores.shape == (n_frames, len(LABELS))
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)
    assert len({row.argmax() for row in scores}) > 1  # per-frame, not the utterance score repeated
    assert analysis.embedding.shape == (n_frames, DEMO_DIM)
    assert analysis.scores == pytest.approx(utterance.scores)

    # Frame scores come from the model's own head: applied to the mean frame feature (FunASR's utterance
    # embedding), the same head reproduces FunASR's own utterance scores.
    np.testing.assert_allclose(analysis.embedding.mean(axis=0), utterance.embedding, atol=1e-5)
    head_on_mean = model.scores_from_features(utterance.embedding)[0]
    np.testing.assert_allclose(head_on_mean, [utterance.scores[lab] for lab in LABELS], atol=1e-5)
    np.testing.assert_allclose(model.scores_from_features(analysis.embedding), scores, atol=1e-6)

    data = analysis.to_json()
    assert len(data["frames"]["scores"]) == n_frames
    assert data["embedding_shape"] == [n_frames, DEMO_DIM]
    assert json.loads(json.dumps(data)) == data


def test_plan_windows_tiles_the_input():
    window, overlap, n = 30 * 16000, 16000, 70 * 16000 + 123
    windows = plan_windows(n, window, overlap)
    assert len(windows) == 3
    assert windows[0].start == 0 and windows[-1].end == n
    assert windows[0].own_start == 0 and windows[-1].own_end == n
    for a, b in zip(windows, windows[1:], strict=False):
        assert a.own_end == b.own_start  # owned spans tile the input, nothing counted twice
        assert a.end - b.start == overlap
    for w in windows:
        assert w.end - w.start <= window
        assert w.start % emotion.HOP_SAMPLES == 0
    assert len(plan_windows(30 * 16000, window, overlap)) == 1
    assert len(plan_windows(35 * 16000, window, overlap)) == 2


def test_long_input_is_windowed(model):
    assert model.window_seconds == 30.0 and model.overlap_seconds == 1.0
    long = model.analyze(noise(70.0), granularity="frame")
    assert long.windows == 3
    assert len(long.frames["scores"]) == frames_for(70 * 16000)  # overlaps trimmed, no frame lost or doubled
    assert sum(long.scores.values()) == pytest.approx(1.0, abs=1e-6)


def test_window_scores_are_duration_weighted(model):
    audio = noise(35.0, seed=2)
    analysis = model.analyze(audio, extract_embedding=True)
    assert analysis.windows == 2
    windows = plan_windows(audio.size, model.window_samples, model.overlap_samples)
    parts = [model.analyze(audio[w.start : w.end], extract_embedding=True) for w in windows]
    weights = [(w.own_end - w.own_start) / audio.size for w in windows]
    for label in LABELS:
        expected = sum(wt * p.scores[label] for wt, p in zip(weights, parts, strict=True))
        assert analysis.scores[label] == pytest.approx(expected, abs=1e-6)
    expected_embedding = sum(wt * p.embedding for wt, p in zip(weights, parts, strict=True))
    np.testing.assert_allclose(analysis.embedding, expected_embedding, atol=1e-5)
    assert analysis.embedding.shape == (DEMO_DIM,)


def test_input_types(model):
    audio = noise(1.0, seed=3)
    reference = model.analyze(audio).scores
    assert model.analyze(audio.astype(np.float64)).scores == pytest.approx(reference, abs=1e-6)
    pcm = (audio * 32767).astype(np.int16)
    from_pcm = model.analyze(pcm).scores
    assert from_pcm == pytest.approx(model.analyze(pcm.astype(np.float32) / 32768.0).scores, abs=1e-6)

    rejected = [
        (np.zeros((2, 16000), np.float32), INVALID_FORMAT),  # stereo / 2-D
        (np.zeros(16000, np.uint8), INVALID_FORMAT),
        (np.full(16000, np.nan, np.float32), INVALID_FORMAT),
        (np.zeros(100, np.float32), INVALID_FORMAT),  # shorter than one frame
        (np.zeros(0, np.float32), EMPTY_FILE),
    ]
    for bad, code in rejected:
        with pytest.raises(MediaError) as err:
            model.analyze(bad)
        assert err.value.code == code
    with pytest.raises(ValueError, match="granularity"):
        model.analyze(audio, granularity="word")
