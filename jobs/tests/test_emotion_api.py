"""Emotion jobs end to end: the API, real Redis, the real worker and the demo emotion2vec model through
FunASR's real ``AutoModel`` loading code."""

from __future__ import annotations

import io

import numpy as np
import pytest

from media_ops.emotion import LABELS
from testing.assertions import assert_error
from testing.uploads import upload

pytestmark = pytest.mark.django_db(transaction=True)

ANALYZE = "/api/v1/emotion/analyze"


def _analyze(client, run_worker, fixture="speech.mp3", **data) -> dict:
    response = client.post(ANALYZE, {"file": upload(fixture), **data}, format="multipart")
    assert response.status_code == 202, response.json()
    assert response.json()["kind"] == "emotion"
    run_worker(["emotion"])
    job = client.get(f"/api/v1/jobs/{response.json()['id']}").json()
    assert job["status"] == "succeeded", job
    return job


def test_utterance(api_client, run_worker):
    job = _analyze(api_client, run_worker, granularity="utterance")
    result = job["result"]
    assert set(result["scores"]) == set(LABELS) and len(LABELS) == 9
    assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert result["top"]["label"] == max(result["scores"], key=result["scores"].get)
    assert len(result["labels_raw"]) == 9 and any("/" in label for label in result["labels_raw"])
    assert result["frames"] is None
    assert job["model"]["name"] == "emotion2vec_demo" and job["model"]["version"]
    assert job["output_url"] is None  # no embedding requested, no output


def test_frame_granularity_gives_a_plottable_curve(api_client, run_worker):
    job = _analyze(api_client, run_worker, fixture="speech_16k_mono.wav", granularity="frame")
    frames = job["result"]["frames"]
    assert frames["hop_seconds"] == 0.02 and frames["labels"] == list(LABELS)
    duration = job["input"]["duration_seconds"]
    assert len(frames["scores"]) == pytest.approx(duration * 50, abs=3)
    assert all(len(row) == 9 and sum(row) == pytest.approx(1.0, abs=2e-3) for row in frames["scores"])


def test_embedding_is_a_downloadable_npy(api_client, run_worker):
    job = _analyze(api_client, run_worker, granularity="utterance", extract_embedding="true")
    assert "embedding" not in job["result"]
    response = api_client.get(f"/api/v1/jobs/{job['id']}/output")
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('-embedding.npy"')
    embedding = np.load(io.BytesIO(b"".join(response.streaming_content)))
    assert embedding.dtype == np.float32 and embedding.shape == tuple(job["result"]["embedding_shape"])
    assert embedding.ndim == 1 and np.isfinite(embedding).all()

    frame_job = _analyze(api_client, run_worker, granularity="frame", extract_embedding="true")
    shape = frame_job["result"]["embedding_shape"]
    assert len(shape) == 2 and shape[0] == len(frame_job["result"]["frames"]["scores"])


def test_bad_granularity(api_client):
    body = assert_error(
        api_client.post(ANALYZE, {"file": upload("speech.mp3"), "granularity": "word"}, format="multipart"),
        400, "VALIDATION_ERROR",
    )
    assert "granularity" in body["error"]["details"]["fields"]


def test_tenant_isolation(api_client, other_client, run_worker):
    job = _analyze(api_client, run_worker, extract_embedding="true")
    assert_error(other_client.get(f"/api/v1/jobs/{job['id']}"), 404, "NOT_FOUND")
    assert_error(other_client.get(f"/api/v1/jobs/{job['id']}/output"), 404, "NOT_FOUND")
    assert other_client.get("/api/v1/jobs?kind=emotion").json()["results"] == []
