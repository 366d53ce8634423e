"""The worker pipeline (jobs.worker.pipeline): CPU stages beside the model, outcomes written per batch, and
nothing lost when the worker stops, is killed, or a job is canceled or runs out of time inside it.

Overlap is shown by the order of stage events (``pipeline.listeners``), never by timings: the model call of
one job is held open until the next job has been prepared, which a serial worker can never do.
"""

from __future__ import annotations

import os
import signal
import threading
from unittest import mock

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs import services
from jobs.models import FINAL_STATUSES, Job, JobStatus
from jobs.upkeep import reconcile
from jobs.worker import pipeline
from testing.assertions import wait_until
from testing.workers import WorkerProcesses, assert_books_balance, submit_upload

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = "/api/v1/watermark/embed"
DETECT = "/api/v1/watermark/detect"


def job(job_id) -> Job:
    return Job.objects.get(pk=job_id)


@pytest.fixture
def stage_events():
    """Every stage event of the in-process pipeline, in order; optional blocking hooks per event."""
    events: list[tuple[str, str]] = []
    hooks: dict[str, list] = {}

    def listener(event: str, ids: list[str]) -> None:
        events.extend((event, i) for i in ids)
        for hook in hooks.get(event, []):
            hook(ids)

    pipeline.listeners.append(listener)
    yield events, hooks
    pipeline.listeners.remove(listener)


@pytest.fixture
def workers(redis_clean, _isolated_media, tmp_path):
    procs = WorkerProcesses(_isolated_media, tmp_path)
    yield procs
    procs.stop_all()


def test_the_pipeline_is_the_default_worker(redis_clean, settings):
    from jobs.worker.rq_worker import PipelineWorker, PoolWorker, build_worker

    assert type(build_worker(["watermark"])) is PipelineWorker
    settings.WORKER_PIPELINE = False
    assert type(build_worker(["watermark"])) is PoolWorker


def test_the_next_job_is_prepared_while_the_model_runs(api_client, tenant, run_worker, stage_events):
    """Batch size 1 (the CPU default): job k's model call does not return until job k+1 has been prepared
    on the main thread. A serial worker would wait forever here (and the hook fails after 60 s)."""
    events, hooks = stage_events
    ids = [submit_upload(api_client) for _ in range(3)]
    prepared = {i: threading.Event() for i in ids}
    hooks["prepared"] = [lambda got: [prepared[i].set() for i in got]]

    def hold_until_next_is_prepared(got: list[str]) -> None:
        index = ids.index(got[0])
        if index + 1 < len(ids):
            assert prepared[ids[index + 1]].wait(60), "the next job was not prepared while the model ran"

    hooks["infer_start"] = [hold_until_next_is_prepared]
    run_worker(["watermark"])

    assert [job(i).status for i in ids] == [JobStatus.SUCCEEDED] * 3
    for k in range(2):  # prepare of k+1 before the model call of k returned
        assert events.index(("prepared", ids[k + 1])) < events.index(("infer_end", ids[k]))
    assert [e for e, _ in events].count("infer_start") == 3  # one engine call per job at batch size 1
    assert all(job(i).output_file and default_storage.exists(job(i).output_file) for i in ids)
    assert_books_balance(tenant, ids, final=FINAL_STATUSES)


def test_a_backlog_forms_batches_and_each_batch_is_one_engine_call(
    api_client, tenant, run_worker, stage_events, settings
):
    """Five queued detections at batch size 4: the first dequeued takes three along (one claim), the fifth
    runs alone: two engine calls for five jobs, counted by the pipeline itself (``engine_calls``)."""
    from jobs.worker.pool import reset_pool

    settings.BATCH_SIZE_WATERMARK = 4
    reset_pool()
    _, hooks = stage_events
    calls: list[int] = []
    hooks["infer_start"] = [lambda got: calls.append(len(got))]
    try:
        ids = [submit_upload(api_client, DETECT) for _ in range(5)]
        run_worker(["watermark"])
    finally:
        reset_pool()
    assert sorted(calls) == [1, 4]
    assert {job(i).status for i in ids} == {JobStatus.SUCCEEDED}
    assert_books_balance(tenant, ids, final=FINAL_STATUSES)


def test_model_lanes_run_two_model_calls_side_by_side(api_client, tenant, run_worker, stage_events, settings):
    """``WORKER_MODEL_LANES=2``: the first two model calls are held at a barrier that only a second model
    call running at the same time can open; with one lane it never opens (broken after 60 s, jobs fail).
    Every job's result is the one it gets alone (the engine is the same, called from two threads)."""
    from jobs.worker.pool import get_pool, reset_pool

    settings.WORKER_MODEL_LANES = 2
    settings.RESULT_CACHE_ENABLED = False  # the same upload four times: every job must reach the model
    reset_pool()
    events, hooks = stage_events
    barrier = threading.Barrier(2, timeout=60)
    held: list[str] = []

    def meet_the_other_lane(got: list[str]) -> None:
        if len(held) < 2:
            held.append(got[0])
            barrier.wait()

    hooks["infer_start"] = [meet_the_other_lane]
    try:
        ids = [submit_upload(api_client, DETECT) for _ in range(4)]
        run_worker(["watermark"])
        assert get_pool().lanes == 2
        assert get_pool().describe()["lanes"] == 2
    finally:
        reset_pool()
    assert [job(i).status for i in ids] == [JobStatus.SUCCEEDED] * 4
    first_end = min(k for k, (e, _) in enumerate(events) if e == "infer_end")
    assert all(events.index(("infer_start", i)) < first_end for i in held)
    results = {str(job(i).result) for i in ids}  # the same upload four times: one answer, from either lane
    assert len(results) == 1
    assert_books_balance(tenant, ids, final=FINAL_STATUSES)


def test_emotion_passes_run_side_by_side_too(api_client, tenant, run_worker, stage_events, settings):
    """Two lanes, two threads: emotion passes overlap on the two lanes like watermark ones (the first two are
    held at a barrier only a second pass running at the same time can open), and a pass that starts while
    another runs gets its lane's share, one thread."""
    import torch

    from jobs.worker.pool import reset_pool

    settings.WORKER_MODEL_LANES = 2
    settings.MODEL_THREADS = 2
    settings.RESULT_CACHE_ENABLED = False  # the same upload three times: every job must reach the model
    reset_pool()
    events, hooks = stage_events
    barrier = threading.Barrier(2, timeout=60)
    held: list[tuple[str, int]] = []  # (job id, its pass's torch threads), in the order the passes started

    def meet_the_other_lane(got: list[str]) -> None:
        if len(held) < 2:
            held.append((got[0], torch.get_num_threads()))
            barrier.wait()

    hooks["infer_start"] = [meet_the_other_lane]
    before = torch.get_num_threads()
    try:
        emotion = [submit_upload(api_client, "/api/v1/emotion/analyze") for _ in range(3)]
        run_worker(["emotion"])
    finally:
        reset_pool()
        torch.set_num_threads(before)
    assert [job(i).status for i in emotion] == [JobStatus.SUCCEEDED] * 3
    first_end = min(k for k, (e, _) in enumerate(events) if e == "infer_end")
    assert all(events.index(("infer_start", i)) < first_end for i, _ in held)
    assert held[1][1] == 1  # started beside the first pass: one thread
    scores = [job(i).result["scores"] for i in emotion]  # either lane, either thread count: one answer
    assert all(s == pytest.approx(scores[0], abs=1e-5) for s in scores)
    assert_books_balance(tenant, emotion, final=FINAL_STATUSES)


def test_a_pass_alone_takes_every_thread(api_client, tenant, run_worker, stage_events, settings):
    """Two lanes, two threads, one job: nothing else is ready and the other lane is idle, so its pass runs with
    both threads (as with one lane) instead of leaving a core idle."""
    import torch

    from jobs.worker.pool import reset_pool

    settings.WORKER_MODEL_LANES = 2
    settings.MODEL_THREADS = 2
    reset_pool()
    _, hooks = stage_events
    threads_seen: list[int] = []
    hooks["infer_start"] = [lambda got: threads_seen.append(torch.get_num_threads())]
    before = torch.get_num_threads()
    try:
        ids = [submit_upload(api_client, DETECT)]
        run_worker(["watermark"])
    finally:
        reset_pool()
        torch.set_num_threads(before)
    assert job(ids[0]).status == JobStatus.SUCCEEDED
    assert threads_seen == [2]
    assert_books_balance(tenant, ids, final=FINAL_STATUSES)


def _running_jobs(client, n: int, worker_name: str) -> list[Job]:
    ids = [submit_upload(client, DETECT) for _ in range(n)]
    for job_id in ids:
        assert services.start(job_id, worker_name, rq_job_id=job(job_id).rq_job_id) is not None
    return list(Job.objects.filter(pk__in=ids).select_related("tenant"))


def _finishing_write(jobs: list[Job], worker_name: str) -> tuple[int, int]:
    """(SQL statements, commits) of ``succeed_many`` for ``jobs``."""
    successes = [services.Success(job=j, result={"detected": False}, model_name="m", model_version="1")
                 for j in jobs]
    with mock.patch.object(connection, "commit", wraps=connection.commit) as commit, \
            CaptureQueriesContext(connection) as queries:
        assert len(services.succeed_many(successes, worker_name=worker_name)) == len(jobs)
    return len(queries), commit.call_count


def test_a_batch_is_recorded_in_one_transaction_of_constant_size(api_client, tenant, redis_clean):
    small = _running_jobs(api_client, 1, "w-small")
    large = _running_jobs(api_client, 4, "w-large")
    statements_1, commits_1 = _finishing_write(small, "w-small")
    statements_4, commits_4 = _finishing_write(large, "w-large")
    assert commits_1 == commits_4 == 1
    assert statements_4 == statements_1, (statements_1, statements_4)  # not 4x: bulk statements
    ids = [j.pk for j in small + large]
    assert {job(i).status for i in ids} == {JobStatus.SUCCEEDED}
    assert all(job(i).progress == 100 and job(i).result == {"detected": False} for i in ids)
    assert_books_balance(tenant, ids, final=FINAL_STATUSES)


def test_the_finishing_write_leaves_out_a_job_that_is_no_longer_ours(api_client, tenant, redis_clean):
    jobs = _running_jobs(api_client, 3, "w-1")
    services.cancel(Job.objects.get(pk=jobs[1].pk))
    default_storage.save("outputs/orphan.wav", ContentFile(b"RIFF"))
    successes = [services.Success(job=j, result={"detected": False}, output_file="outputs/orphan.wav" if i == 1
                                  else "") for i, j in enumerate(jobs)]
    done = services.succeed_many(successes, worker_name="w-1")
    assert sorted(str(j.pk) for j in done) == sorted(str(j.pk) for j in (jobs[0], jobs[2]))
    assert job(jobs[1].pk).status == JobStatus.CANCELED
    assert not default_storage.exists("outputs/orphan.wav")  # the canceled job's output belongs to nobody
    assert services.succeed_many(successes[:1], worker_name="another-worker") == []  # not running there
    assert_books_balance(tenant, [j.pk for j in jobs], final=FINAL_STATUSES)


def test_a_job_canceled_inside_the_pipeline_ends_canceled_without_output(
    api_client, tenant, run_worker, stage_events
):
    events, hooks = stage_events
    job_id = submit_upload(api_client)
    hooks["infer_start"] = [lambda got: services.cancel(Job.objects.get(pk=got[0]))]
    run_worker(["watermark"])
    row = job(job_id)
    assert row.status == JobStatus.CANCELED and not row.output_file
    assert ("finished", job_id) in events
    assert_books_balance(tenant, [job_id], final=FINAL_STATUSES)


def test_a_model_call_that_outlasts_the_timeout_fails_the_job_with_timeout(
    api_client, tenant, run_worker, stage_events, settings
):
    import time

    _, hooks = stage_events
    settings.JOB_TIMEOUTS = {"watermark_embed": 1}
    job_id = submit_upload(api_client)
    hooks["infer_start"] = [lambda got: time.sleep(1.5)]  # a model call longer than the kind's limit
    run_worker(["watermark"])
    row = job(job_id)
    assert row.status == JobStatus.FAILED and row.error_code == "TIMEOUT", row.error_message
    assert_books_balance(tenant, [job_id], final=FINAL_STATUSES)


def test_sigterm_gives_back_the_jobs_inside_the_pipeline_and_takes_no_more(
    api_client, tenant, workers, run_worker, settings
):
    """Depth 2 at batch size 1: one job in the model (a 120 s call), one prepared behind it, the third left in
    the queue for other workers. SIGTERM with a 1 s grace: both in flight go back, attempt not counted."""
    ids = [submit_upload(api_client) for _ in range(3)]
    proc = workers.start("watermark", PIPELINE_TEST_MODEL_DELAY_SECONDS=120, WORKER_SHUTDOWN_GRACE_SECONDS=1)
    wait_until(lambda: Job.objects.filter(pk__in=ids, status=JobStatus.RUNNING).count() == 2, 120,
               "two jobs in the pipeline")
    left = Job.objects.get(pk__in=ids, status=JobStatus.QUEUED)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, workers.output(proc)
    rows = list(Job.objects.filter(pk__in=ids))
    assert all(r.status == JobStatus.QUEUED and r.attempts == 0 and r.rq_job_id for r in rows), [
        (r.status, r.attempts, r.rq_job_id) for r in rows]
    assert job(left.pk).started_at is None  # back-pressure: never taken by the busy worker
    run_worker(["watermark"])
    assert {job(i).status for i in ids} == {JobStatus.SUCCEEDED}
    assert all(job(i).attempts == 1 for i in ids)
    assert_books_balance(tenant, ids, final=FINAL_STATUSES)


def test_kill_9_with_jobs_in_the_pipeline_the_reconciler_recovers_them(
    api_client, tenant, workers, settings
):
    settings.WORKER_LOST_AFTER_SECONDS = 5
    settings.JOB_RETRY_BACKOFF_SECONDS = 0
    settings.RECONCILE_QUEUED_GRACE_SECONDS = 0
    ids = [submit_upload(api_client) for _ in range(2)]
    first = workers.start("watermark", PIPELINE_TEST_MODEL_DELAY_SECONDS=120)
    wait_until(lambda: Job.objects.filter(pk__in=ids, status=JobStatus.RUNNING).count() == 2, 120,
               "both jobs in the pipeline")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    second = workers.start("watermark")

    def everything_final() -> bool:
        reconcile.run_once()
        return Job.objects.filter(pk__in=ids, status__in=FINAL_STATUSES).count() == len(ids)

    wait_until(everything_final, 240, "all jobs final", interval=0.5)
    assert {job(i).status for i in ids} == {JobStatus.SUCCEEDED}, workers.output(second)
    assert all(job(i).attempts == 2 for i in ids)
    assert_books_balance(tenant, ids, final=FINAL_STATUSES)


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which is what the worker recognises."""


def test_cuda_oom_in_a_batch_gives_every_job_back_to_run_alone(
    api_client, tenant, run_worker, stage_events, settings, monkeypatch
):
    from jobs.worker.pool import reset_pool
    from media_ops import watermark

    settings.BATCH_SIZE_WATERMARK = 4
    settings.JOB_RETRY_BACKOFF_SECONDS = 0
    reset_pool()
    _, hooks = stage_events
    calls: list[int] = []
    hooks["infer_start"] = [lambda got: calls.append(len(got))]
    real = watermark.detect_batch

    def out_of_memory_when_batched(models, items, **kwargs):
        if len(items) > 1:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(models, items, **kwargs)

    monkeypatch.setattr(watermark, "detect_batch", out_of_memory_when_batched)
    try:
        ids = [submit_upload(api_client, DETECT) for _ in range(3)]
        run_worker(["watermark"])
    finally:
        reset_pool()
    assert calls == [3, 1, 1, 1]  # the batch failed, then each job alone
    rows = [job(i) for i in ids]
    assert all(r.status == JobStatus.SUCCEEDED and r.batch_size_limit == 1 and r.attempts == 1 for r in rows), [
        (r.status, r.error_code, r.batch_size_limit, r.attempts) for r in rows]
    assert_books_balance(tenant, ids, final=FINAL_STATUSES)
