"""Worker-level dynamic batching: queued jobs of one kind run in one engine call, each finishing on its own.

These tests set BATCH_SIZE_WATERMARK / BATCH_SIZE_EMOTION to check the mechanics and that every batched job
gets exactly what it would get alone. Emotion batches are checked by the model's forward passes (its own
counter), not by engine calls: one call could still loop over its inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.storage import default_storage

from jobs.models import Job
from media_ops import audio, watermark
from testing.uploads import FIXTURES, upload

pytestmark = pytest.mark.django_db(transaction=True)

DETECT = "/api/v1/watermark/detect"
EMOTION = "/api/v1/emotion/analyze"
EMBED = "/api/v1/watermark/embed"


@pytest.fixture
def batch_size(settings):
    """Set a family's batch size for a fresh pool; the process-wide pool is rebuilt before and after."""
    from jobs.worker.pool import reset_pool

    def set_size(size: int, family: str = "watermark") -> None:
        setattr(settings, f"BATCH_SIZE_{family.upper()}", size)
        reset_pool()

    yield set_size
    reset_pool()


@pytest.fixture
def engine_calls(monkeypatch):
    """Records the number of inputs of every engine batch call."""
    from media_ops.watermark import detection, embedding

    calls: list[int] = []
    for module, name in ((embedding, "embed_batch"), (detection, "detect_batch")):
        original = getattr(module, name)

        def counted(models, items, _original=original, **kwargs):
            calls.append(len(items))
            return _original(models, items, **kwargs)

        # where it is defined (single-job embed/detect call it there) and where handlers look it up
        monkeypatch.setattr(module, name, counted)
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


def test_one_heartbeat_keeps_the_leader_and_its_companions_alive(api_client, tenant):
    """Batch companions are beaten by the worker's one heartbeat, in one UPDATE with the leader; a companion
    that stopped running here (canceled) is not touched."""
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from jobs import services
    from jobs.models import JobStatus
    from jobs.worker import heartbeat

    ids = [_submit(api_client, DETECT, (FIXTURES / "speech_16k_mono.wav").read_bytes(), f"h{i}.wav")
           for i in range(3)]
    for job_id in ids:
        Job.objects.filter(pk=job_id).update(rq_job_id=f"rq-{job_id}")
        assert services.start(job_id, "w1", rq_job_id=f"rq-{job_id}") is not None
    long_ago = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk__in=ids).update(heartbeat_at=long_ago)
    services.cancel(Job.objects.get(pk=ids[2]))
    heartbeat.job_started(ids[0], "w1")
    heartbeat.companions_started(ids[1:], "w1")
    try:
        with CaptureQueriesContext(connection) as queries:
            assert heartbeat.beat_jobs(heartbeat.running_here()) == 2
        assert len(queries) == 1
    finally:
        heartbeat.job_finished()
    rows = {str(j.pk): j for j in Job.objects.filter(pk__in=ids)}
    assert rows[str(ids[0])].heartbeat_at > long_ago and rows[str(ids[1])].heartbeat_at > long_ago
    assert rows[str(ids[2])].status == JobStatus.CANCELED and rows[str(ids[2])].heartbeat_at == long_ago
    assert heartbeat.running_here() == []


def test_companions_are_claimed_in_one_statement_and_leave_no_rq_job_behind(
    api_client, run_worker, batch_size, redis_clean, tmp_path
):
    """The companions' claim is one UPDATE (no per-job round trips), skips rows another claimer holds, and
    their RQ jobs are removed from the queue AND deleted: after the run no RQ job key is left in Redis."""
    import threading

    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from jobs import services

    batch_size(4)
    # five jobs: the Free plan runs five at once
    ids = [_submit(api_client, DETECT, _clip(1.0, 50 + i, tmp_path), f"k{i}.wav") for i in range(5)]
    leader = Job.objects.get(pk=ids[0])

    # A row locked by another transaction (another worker's claim in flight) is skipped, not waited for.
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with transaction.atomic():
            list(Job.objects.select_for_update().filter(pk=ids[1]))
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(10)
    try:
        with CaptureQueriesContext(connection) as queries:
            claimed = services.start_batch(leader.kind, "w-test", 2, exclude=[leader.pk])
        assert [str(j.pk) for j in claimed] == ids[2:4]  # oldest first, ids[1] skipped (locked elsewhere)
        assert sum("UPDATE" in q["sql"] for q in queries) == 1
        assert all(j.status == "running" and j.attempts == 1 and j.worker_name == "w-test" for j in claimed)
    finally:
        release.set()
        holder.join()
    for job in claimed:  # give them back, as a batch interrupted by shutdown would
        services.retry(job, "TEST", "given back", delay=0, count_attempt=False)

    run_worker()
    assert set(Job.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"succeeded"}
    # Finished leaders' RQ jobs are deleted by RQ (result_ttl=0: the row is the truth), the companions' by the
    # leader that claimed them: no RQ job is left behind, with or without an expiry.
    assert not list(redis_clean.scan_iter("rq:job:*")), list(redis_clean.scan_iter("rq:job:*"))


def _alone(model, content: bytes, path, **options):
    """What an emotion job on ``content`` gets on its own: the single handler's input, ``analyze``."""
    path.write_bytes(content)
    samples, rate = audio.decode(path)
    mono16 = audio.resample(audio.to_mono(samples), rate, 16_000).astype(np.float32)
    return model.analyze(mono16, **options)


def test_queued_emotion_jobs_of_different_lengths_run_in_one_forward_pass(
    api_client, run_worker, batch_size, tmp_path
):
    from jobs.worker.pool import get_pool

    batch_size(4, "emotion")
    lengths = [0.7, 1.3, 2.9, 5.0]
    options = [{"granularity": "frame", "extract_embedding": True}, {"granularity": "utterance"},
               {"granularity": "utterance", "extract_embedding": True}, {"granularity": "frame"}]
    contents = [_clip(s, 60 + i, tmp_path) for i, s in enumerate(lengths)]
    ids = [_submit(api_client, EMOTION, c, f"m{i}.wav", **{k: str(v).lower() for k, v in o.items()})
           for i, (c, o) in enumerate(zip(contents, options, strict=True))]
    model = get_pool().get("emotion")  # loaded and warmed before counting
    assert get_pool().batch_size("emotion") == 4
    before = model.forward_passes
    run_worker(["emotion"])
    assert model.forward_passes - before == 1  # four jobs, four lengths, one window each: one padded pass

    for job_id, content, opts in zip(ids, contents, options, strict=True):
        job = Job.objects.get(pk=job_id)
        assert job.status == "succeeded", (job.error_code, job.error_message)
        assert job.attempts == 1 and job.worker_name
        alone = _alone(model, content, tmp_path / f"{job_id}.wav", **opts)
        expected = alone.to_json()
        assert job.result["top"]["label"] == expected["top"]["label"]
        assert job.result["windows"] == expected["windows"] == 1
        assert job.result["duration_seconds"] == expected["duration_seconds"]
        for label, score in expected["scores"].items():
            assert job.result["scores"][label] == pytest.approx(score, abs=1e-5)
        if expected["frames"] is None:
            assert job.result["frames"] is None
        else:  # stored rounded to 4 decimals: a value on a rounding edge may move by one step
            np.testing.assert_allclose(job.result["frames"]["scores"], expected["frames"]["scores"], atol=1.5e-4)
        if alone.embedding is None:
            assert not job.output_file
        else:
            with default_storage.open(job.output_file, "rb") as fh:
                stored = np.load(fh)
            assert stored.shape == alone.embedding.shape
            np.testing.assert_allclose(stored, alone.embedding, atol=1e-4)


def test_a_too_short_emotion_companion_fails_alone(api_client, run_worker, batch_size, tmp_path):
    from jobs.worker.pool import get_pool

    batch_size(4, "emotion")
    good = [_submit(api_client, EMOTION, _clip(s, 70 + i, tmp_path), f"ok{i}.wav") for i, s in enumerate([1.1, 2.3])]
    short = _submit(api_client, EMOTION, _clip(0.02, 72, tmp_path), "short.wav")  # 320 samples < 400
    model = get_pool().get("emotion")
    before = model.forward_passes
    run_worker(["emotion"])
    assert all(Job.objects.get(pk=j).status == "succeeded" for j in good)
    assert Job.objects.get(pk=short).status == "failed"
    assert Job.objects.get(pk=short).error_code == "INVALID_FORMAT"
    assert model.forward_passes - before == 1  # the two good ones still ran together
