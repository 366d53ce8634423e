"""Worker-level dynamic batching: queued jobs of one kind run in one engine call, each finishing on its own.

On CPU the default batch size is 1 (batching is slower there); these tests set BATCH_SIZE_WATERMARK to check
the mechanics and that every batched job gets exactly what it would get alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.storage import default_storage

from jobs.models import Job
from jobs.tests.helpers import upload
from media_ops import audio, watermark
from media_ops.tests import FIXTURES

pytestmark = pytest.mark.django_db(transaction=True)

DETECT = "/api/v1/watermark/detect"
EMBED = "/api/v1/watermark/embed"


@pytest.fixture
def batch_size(settings):
    """Set the watermark batch size for a fresh pool; the process-wide pool is rebuilt before and after."""
    from jobs.worker.pool import reset_pool

    def set_size(size: int) -> None:
        settings.BATCH_SIZE_WATERMARK = size
        settings.BATCH_WINDOW_MS = 0
        reset_pool()

    yield set_size
    reset_pool()


@pytest.fixture
def engine_calls(monkeypatch):
    """Records the number of inputs of every engine batch call."""
    calls: list[int] = []
    for name in ("embed_batch", "detect_batch"):
        original = getattr(watermark, name)

        def counted(models, items, _original=original, **kwargs):
            calls.append(len(items))
            return _original(models, items, **kwargs)

        monkeypatch.setattr(watermark, name, counted)
    return calls


def _clip(seconds: float, seed: int, tmp_path, edit=None) -> bytes:
    """A speech clip as WAV bytes; ``edit(clip, rate)`` may change it first (watermark it, trim it, ...)."""
    samples, rate = audio.decode(FIXTURES / "speech_16k_mono.wav")
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    start = int(rng.integers(0, samples.shape[-1] - n)) if samples.shape[-1] > n else 0
    clip = np.tile(samples, (1, 2))[:, start : start + n] * rng.uniform(0.5, 1.0)
    if edit is not None:
        clip = edit(clip, rate)
    path = tmp_path / f"clip{seed}.wav"
    audio.encode(clip.astype(np.float32), rate, "wav", path)
    return path.read_bytes()


def _submit(client, url, content: bytes, name: str, **data) -> str:
    response = client.post(url, {"file": upload(name, content=content), **data}, format="multipart")
    assert response.status_code == 202, response.json()
    return response.json()["id"]


def test_queued_detections_run_as_one_batch_with_single_run_results(
    api_client, run_worker, batch_size, engine_calls, tmp_path
):
    from jobs.worker.pool import get_pool

    batch_size(4)
    models = get_pool().get("watermark")
    bits = watermark.parse_message("1A2B")
    edits = [  # clean, watermarked then trimmed by 123 samples, watermarked then inverted, clean, clean
        None,
        lambda clip, rate: watermark.embed(models, clip, rate, bits)[:, 123:],
        lambda clip, rate: -watermark.embed(models, clip, rate, bits),
        None,
        None,
    ]
    contents = [_clip(s, i, tmp_path, e) for i, (s, e) in enumerate(zip([1.0, 1.0, 2.5, 1.0, 3.0], edits, strict=True))]
    engine_calls.clear()  # the embedding above is not what is counted
    ids = [_submit(api_client, DETECT, c, f"c{i}.wav") for i, c in enumerate(contents)]
    run_worker()

    assert sorted(engine_calls, reverse=True) == [4, 1]  # 5 jobs: a batch of 4, then the last one alone
    for job_id, content in zip(ids, contents, strict=True):
        job = Job.objects.get(pk=job_id)
        assert job.status == "succeeded", (job.error_code, job.error_message)
        path = tmp_path / f"{job_id}.wav"
        path.write_bytes(content)
        alone = watermark.detect(models, *audio.decode(path))  # what the job would get on its own
        assert job.result["detected"] == alone["detected"]
        assert job.result["message"] == alone["message"] and job.result["alignment"] == alone["alignment"]
        assert [g["message"] for g in job.result["segments"]] == [g["message"] for g in alone["segments"]]
        assert job.result["probability"] == pytest.approx(alone["probability"], abs=1e-3)
        np.testing.assert_allclose(job.result["bit_probabilities"], alone["bit_probabilities"], atol=2e-3)
        assert job.result["cached"] is False
        assert job.attempts == 1 and job.worker_name
    found = [Job.objects.get(pk=i).result for i in ids[1:3]]  # the edited ones are found, read right
    assert [(r["message"], r["alignment"]["polarity"]) for r in found] == [("1A2B", 1), ("1A2B", -1)]


def test_batched_embeddings_equal_single_embeddings(api_client, run_worker, batch_size, engine_calls, tmp_path):
    from jobs.worker.pool import get_pool

    batch_size(3)
    contents = [_clip(1.5, 10 + i, tmp_path) for i in range(3)]
    messages = ["1A2B", "FFFF", "0001"]
    ids = [_submit(api_client, EMBED, c, f"e{i}.wav", message=m) for i, (c, m) in
           enumerate(zip(contents, messages, strict=True))]
    run_worker()
    assert engine_calls == [3]
    models = get_pool().get("watermark")
    for job_id, content, message in zip(ids, contents, messages, strict=True):
        job = Job.objects.get(pk=job_id)
        assert job.status == "succeeded", (job.error_code, job.error_message)
        assert job.result["message"] == message
        src = tmp_path / f"in-{job_id}.wav"
        src.write_bytes(content)
        samples, rate = audio.decode(src)
        alone = watermark.embed(models, samples, rate, watermark.parse_message(message))
        out = tmp_path / f"out-{job_id}.wav"
        with default_storage.open(job.output_file, "rb") as fh:
            out.write_bytes(fh.read())
        marked, _ = audio.decode(out)
        np.testing.assert_allclose(marked, alone, atol=2.5 / 32768)  # 16-bit output: quantisation only


def test_a_bad_companion_fails_alone(api_client, run_worker, batch_size, engine_calls, tmp_path):
    batch_size(4)
    good = [_submit(api_client, DETECT, _clip(1.0, 20 + i, tmp_path), f"g{i}.wav") for i in range(2)]
    broken = _submit(api_client, DETECT, _clip(1.0, 30, tmp_path), "broken.wav")
    missing = _submit(api_client, DETECT, _clip(1.0, 31, tmp_path), "missing.wav")
    with default_storage.open(Job.objects.get(pk=broken).input_file, "wb") as fh:
        fh.write(b"not audio any more" * 100)
    default_storage.delete(Job.objects.get(pk=missing).input_file)
    run_worker()

    assert all(Job.objects.get(pk=j).status == "succeeded" for j in good)
    assert Job.objects.get(pk=broken).status == "failed"
    assert Job.objects.get(pk=missing).error_code == "FILE_NOT_FOUND"
    assert max(engine_calls) == 2  # the two good ones still ran together


def test_batch_size_one_never_batches(api_client, run_worker, batch_size, engine_calls, tmp_path):
    batch_size(1)
    for i in range(3):
        _submit(api_client, DETECT, _clip(1.0, 40 + i, tmp_path), f"s{i}.wav")
    run_worker()
    assert engine_calls == [1, 1, 1]
    assert Job.objects.filter(status="succeeded").count() == 3
