"""No job lost, no usage doubled: kill -9, flushed Redis, timeouts, retries, heartbeats, graceful shutdown.

Real processes throughout: worker subprocesses (``manage.py run_worker``) or the real worker code in-process,
the test session's PostgreSQL and Redis, and the reconciler as the periodic task runs it (``run_once``).
A job is made slow with the test-only ``JOB_TEST_DELAY_SECONDS`` setting (one uninterrupted sleep before the
handler, like a long model call).
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import services
from jobs.models import FINAL_STATUSES, Job, JobStatus
from jobs.upkeep import reconcile
from jobs.worker.handlers import Outcome
from media_ops.errors import MediaError
from testing.assertions import wait_until
from testing.workers import (
    WorkerProcesses,
    assert_books_balance,
    open_reservations,
    reservations_for,
    reserved_seconds,
    submit_upload,
)

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = "/api/v1/watermark/embed"
DETECT = "/api/v1/watermark/detect"


def job(job_id) -> Job:
    return Job.objects.get(pk=job_id)


@pytest.fixture
def workers(redis_clean, _isolated_media, tmp_path):
    procs = WorkerProcesses(_isolated_media, tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture
def fast_recovery(settings):
    """Reconciler settings for the test process: notice a dead worker after 5 s, retry at once."""
    settings.WORKER_LOST_AFTER_SECONDS = 5
    settings.JOB_RETRY_BACKOFF_SECONDS = 0
    settings.RECONCILE_QUEUED_GRACE_SECONDS = 0
    return settings


# --- real worker processes ----------------------------------------------------------------------------------


def test_kill_9_mid_job_then_another_worker_and_the_reconciler_finish_everything(
    api_client, tenant, workers, fast_recovery
):
    ids = [submit_upload(api_client) for _ in range(3)]
    first = workers.start("watermark", JOB_TEST_DELAY_SECONDS=60)
    victim = wait_until(
        lambda: Job.objects.filter(pk__in=ids, status=JobStatus.RUNNING).first(), 120,
        "worker A to start a job",
    )
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    assert job(victim.pk).status == JobStatus.RUNNING  # nobody told the database

    second = workers.start("watermark")

    def everything_final() -> bool:
        reconcile.run_once()
        return Job.objects.filter(pk__in=ids, status__in=FINAL_STATUSES).count() == len(ids)

    wait_until(everything_final, 240, "all jobs final", interval=0.5)
    assert second.poll() is None, workers.output(second)
    killed = job(victim.pk)
    assert killed.status == JobStatus.SUCCEEDED, (killed.error_code, workers.output(second))
    assert killed.attempts >= 2 and killed.worker_name != victim.worker_name
    assert_books_balance(tenant, ids)


def test_flushed_redis_queued_jobs_are_reenqueued_and_complete(api_client, tenant, run_worker, fast_recovery):
    import django_rq

    ids = [submit_upload(api_client), submit_upload(api_client, DETECT)]
    django_rq.get_connection("watermark").flushdb()  # Redis loses every queued job
    report = reconcile.run_once()
    assert sorted(report.reenqueued_missing) == sorted(ids)
    assert reconcile.run_once().reenqueued_missing == []  # now they are there: nothing to do
    run_worker(["watermark"])
    assert {job(i).status for i in ids} == {JobStatus.SUCCEEDED}
    assert_books_balance(tenant, ids)


def test_heartbeat_continues_during_one_long_call(api_client, workers):
    job_id = submit_upload(api_client)
    workers.start("watermark", JOB_TEST_DELAY_SECONDS=6, WORKER_HEARTBEAT_SECONDS=0.3)
    running = wait_until(
        lambda: Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).first(), 120, "the job to start"
    )
    beats = {running.heartbeat_at}

    def beating_while_stuck() -> bool:
        row = job(job_id)
        if row.status == JobStatus.RUNNING and row.progress_message == "Starting":  # still in the long call
            beats.add(row.heartbeat_at)
        return len(beats) >= 4

    wait_until(beating_while_stuck, 30, "heartbeats during the long call", interval=0.1)
    wait_until(lambda: job(job_id).status in FINAL_STATUSES, 60, "the job to finish")
    assert job(job_id).status == JobStatus.SUCCEEDED


def test_sigterm_lets_the_current_job_finish(api_client, workers):
    job_id = submit_upload(api_client)
    proc = workers.start("watermark", JOB_TEST_DELAY_SECONDS=3)
    wait_until(lambda: job(job_id).status == JobStatus.RUNNING, 120, "the job to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, workers.output(proc)
    row = job(job_id)
    assert row.status == JobStatus.SUCCEEDED and row.attempts == 1


def test_sigterm_requeues_a_job_that_outlasts_the_grace(api_client, tenant, workers, run_worker, settings):
    job_id = submit_upload(api_client)
    proc = workers.start("watermark", JOB_TEST_DELAY_SECONDS=120, WORKER_SHUTDOWN_GRACE_SECONDS=1)
    wait_until(lambda: job(job_id).status == JobStatus.RUNNING, 120, "the job to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, workers.output(proc)
    row = job(job_id)
    assert row.status == JobStatus.QUEUED and row.attempts == 0 and row.rq_job_id, workers.output(proc)
    settings.JOB_TEST_DELAY_SECONDS = 0
    run_worker(["watermark"])  # the job was put back on the queue: another worker takes it
    assert job(job_id).status == JobStatus.SUCCEEDED
    assert_books_balance(tenant, [job_id])


# --- timeouts -----------------------------------------------------------------------------------------------


def test_job_over_its_timeout_fails_with_timeout_and_releases_its_reservation(
    api_client, tenant, run_worker, settings
):
    settings.JOB_TIMEOUTS = {"watermark_embed": 1}
    settings.JOB_TEST_DELAY_SECONDS = 30
    job_id = submit_upload(api_client)
    assert [r.state for r in reservations_for(job(job_id))] == ["reserved"]
    run_worker(["watermark"])
    row = job(job_id)
    assert row.status == JobStatus.FAILED and row.error_code == "TIMEOUT", row.error_message
    assert [r.state for r in reservations_for(row)] == ["released"]
    assert_books_balance(tenant, [job_id])


def test_reconciler_times_out_a_job_stuck_where_the_worker_cannot_interrupt_it(api_client, tenant, settings):
    settings.JOB_TIMEOUTS = {"watermark_embed": 60}
    job_id = submit_upload(api_client)
    services.start(job_id, "stuck-worker")
    long_ago = timezone.now() - timedelta(seconds=60 + settings.JOB_TIMEOUT_GRACE_SECONDS + 1)
    Job.objects.filter(pk=job_id).update(started_at=long_ago, heartbeat_at=timezone.now())  # alive, stuck
    report = reconcile.run_once()
    assert report.timed_out == [job_id]
    row = job(job_id)
    assert row.status == JobStatus.FAILED and row.error_code == "TIMEOUT"
    assert_books_balance(tenant, [job_id])


# --- lost workers and retry limits --------------------------------------------------------------------------


def test_lost_worker_is_retried_up_to_the_kind_limit_then_worker_lost(
    api_client, tenant, settings, redis_clean
):
    settings.JOB_MAX_ATTEMPTS_BY_KIND = {"watermark_embed": 2}
    settings.WORKER_LOST_AFTER_SECONDS = 30
    settings.JOB_RETRY_BACKOFF_SECONDS = 0
    job_id = submit_upload(api_client)
    silent = timezone.now() - timedelta(seconds=31)

    services.start(job_id, "worker-1")
    Job.objects.filter(pk=job_id).update(heartbeat_at=silent)
    assert reconcile.run_once().retried_lost == [job_id]
    row = job(job_id)
    assert row.status == JobStatus.QUEUED and row.attempts == 1 and row.rq_job_id  # enqueued again

    services.start(job_id, "worker-2")
    Job.objects.filter(pk=job_id).update(heartbeat_at=silent)
    assert reconcile.run_once().failed_lost == [job_id]
    row = job(job_id)
    assert row.status == JobStatus.FAILED and row.error_code == "WORKER_LOST" and row.attempts == 2
    assert_books_balance(tenant, [job_id])


def test_a_fresh_heartbeat_is_never_mistaken_for_a_lost_worker(api_client, settings, redis_clean):
    settings.WORKER_LOST_AFTER_SECONDS = 30
    job_id = submit_upload(api_client)
    services.start(job_id, "worker-1")
    assert not reconcile.run_once().retried_lost
    assert job(job_id).status == JobStatus.RUNNING


def test_retry_waits_for_its_backoff(api_client, settings, redis_clean):
    settings.JOB_RETRY_BACKOFF_SECONDS = 30
    settings.WORKER_LOST_AFTER_SECONDS = 30
    job_id = submit_upload(api_client)
    services.start(job_id, "worker-1")
    Job.objects.filter(pk=job_id).update(heartbeat_at=timezone.now() - timedelta(seconds=31))
    reconcile.run_once()
    row = job(job_id)
    assert row.status == JobStatus.QUEUED and row.rq_job_id == "" and row.retry_at > timezone.now()
    assert reconcile.run_once().enqueued_retries == []  # not yet
    Job.objects.filter(pk=job_id).update(retry_at=timezone.now() - timedelta(seconds=1))
    assert reconcile.run_once().enqueued_retries == [job_id]
    assert job(job_id).rq_job_id


def test_a_stale_duplicate_rq_job_never_runs_the_job_twice(api_client, tenant, run_worker, settings, monkeypatch):
    import django_rq
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RQJob

    from jobs.worker import runner

    job_id = submit_upload(api_client)
    stale = job(job_id).rq_job_id
    assert services.enqueue(job(job_id), claim={"rq_job_id": stale})  # a re-enqueue; the old one stays
    outcomes: list[str] = []
    run_job = runner.run_job
    monkeypatch.setattr(runner, "run_job", lambda pk: outcomes.append(run_job(pk)) or outcomes[-1])  # RQ's target
    run_worker(["watermark"])
    row = job(job_id)
    assert row.status == JobStatus.SUCCEEDED and row.attempts == 1
    # The stale RQ job ran first and did nothing; the live one ran the job (the pipeline finishes it on its own
    # thread, so RQ's part of it ends as "pipelined"; the serial worker returns the job's status).
    assert outcomes == ["skipped", "pipelined" if settings.WORKER_PIPELINE else "succeeded"]
    with pytest.raises(NoSuchJobError):  # and, finished, RQ deleted it (result_ttl=0: the row is the truth)
        RQJob.fetch(stale, connection=django_rq.get_connection("watermark"))
    assert_books_balance(tenant, [job_id])


def test_failed_registry_is_reconciled_with_the_rows(api_client, tenant, redis_clean, settings):
    import django_rq
    from rq.job import Job as RQJob
    from rq.registry import FailedJobRegistry

    settings.JOB_MAX_ATTEMPTS_BY_KIND = {"watermark_embed": 1}
    queue = django_rq.get_queue("watermark")
    registry = FailedJobRegistry(queue=queue)

    def fail_in_rq(job_id, exc_string):
        """RQ's own failure path (as its abandoned-job cleanup uses): failed status, Result, registry."""
        from rq.job_lifecycle import record_job_failure

        rq_id = job(job_id).rq_job_id
        rq_job = RQJob.fetch(rq_id, connection=queue.connection)
        queue.remove(rq_job)
        with queue.connection.pipeline() as pipeline:
            record_job_failure(rq_job, exc_string, pipeline)
            pipeline.execute()
        assert rq_id in registry.get_job_ids()
        return rq_id

    timed_out = submit_upload(api_client)
    services.start(timed_out, "w", rq_job_id=job(timed_out).rq_job_id)
    fail_in_rq(timed_out, "Traceback...\nrq.timeouts.JobTimeoutException: Task exceeded maximum timeout")
    crashed = submit_upload(api_client)
    services.start(crashed, "w", rq_job_id=job(crashed).rq_job_id)
    fail_in_rq(crashed, "Traceback...\npsycopg.OperationalError: server closed the connection")
    never_started = submit_upload(api_client)
    fail_in_rq(never_started, "AbandonedJobError")
    settled = submit_upload(api_client)
    services.start(settled, "w")
    services.fail(job(settled), "INVALID_FORMAT", "bad")
    stale_entry = fail_in_rq(settled, "whatever")

    report = reconcile.run_once()
    assert report.timed_out == [timed_out] and job(timed_out).error_code == "TIMEOUT"
    assert report.failed_lost == [crashed] and job(crashed).error_code == "WORKER_LOST"
    assert report.reenqueued_missing == [never_started] and job(never_started).status == JobStatus.QUEUED
    assert stale_entry in report.failed_registry_removed
    assert registry.get_job_ids() == []
    for job_id in (timed_out, crashed, settled):
        assert [r.state for r in reservations_for(job(job_id))] == ["released"]


def test_reconciler_closes_a_reservation_a_final_job_still_holds(api_client, tenant, redis_clean):
    job_id = submit_upload(api_client)
    Job.objects.filter(pk=job_id).update(status=JobStatus.FAILED, error_code="PROCESSING_FAILED")  # bypass
    assert open_reservations() == 1
    assert reconcile.run_once().reservations_closed == [job_id]
    assert_books_balance(tenant, [job_id])
    assert reconcile.run_once().reservations_closed == []


def test_reconciler_releases_the_reservation_of_a_deleted_job(api_client, tenant, redis_clean):
    """Billing keeps the job's id, not a foreign key: a queued job deleted by staff must not hold its seconds
    and a concurrency slot forever."""
    job_id = submit_upload(api_client)
    assert open_reservations() == 1 and reserved_seconds(tenant) > 0
    Job.objects.filter(pk=job_id).delete()
    assert reconcile.run_once().reservations_closed == [job_id]
    assert open_reservations() == 0 and reserved_seconds(tenant) == 0
    assert reconcile.run_once().reservations_closed == []


def test_manage_py_reconcile(api_client, redis_clean, settings):
    from io import StringIO

    from django.core.management import call_command

    settings.RECONCILE_QUEUED_GRACE_SECONDS = 0
    job_id = submit_upload(api_client)
    redis_clean.flushdb()
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert '"reenqueued_missing": 1' in out.getvalue()
    assert job(job_id).status == JobStatus.QUEUED


# --- transient errors and bad input (the real worker code, handlers replaced) -------------------------------


@pytest.fixture
def scripted_handler(monkeypatch, settings):
    """Replace the detect handler by a script of outcomes; no model is loaded (the pool preloads nothing)."""
    import jobs.worker.handlers
    import jobs.worker.rq_worker

    settings.JOB_RETRY_BACKOFF_SECONDS = 0
    monkeypatch.setattr(jobs.worker.rq_worker, "families_for", lambda queues: [])
    seen: list[dict] = []

    def install(*steps):
        script = list(steps)

        def handler(ctx):
            seen.append({"batch_size_limit": getattr(ctx, "batch_size_limit", None)})
            step = script.pop(0) if len(script) > 1 else script[0]
            if isinstance(step, BaseException):
                raise step
            return Outcome(result={"detected": False}, model_name="scripted", model_version="1")

        monkeypatch.setattr(jobs.worker.handlers, "watermark_detect", handler)
        return seen

    return install


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which is what the worker recognises."""


def test_transient_media_error_is_retried_with_backoff_then_succeeds(
    api_client, tenant, run_worker, scripted_handler
):
    seen = scripted_handler(MediaError("PROCESSING_FAILED", "flaky read", retryable=True), "ok")
    job_id = submit_upload(api_client, DETECT)
    run_worker(["watermark"])
    row = job(job_id)
    assert row.status == JobStatus.SUCCEEDED and row.attempts == 2 and len(seen) == 2
    assert_books_balance(tenant, [job_id])


def test_bad_input_fails_at_once_with_its_code(api_client, tenant, run_worker, scripted_handler):
    seen = scripted_handler(MediaError("INVALID_FORMAT", "not decodable"), "ok")
    job_id = submit_upload(api_client, DETECT)
    run_worker(["watermark"])
    row = job(job_id)
    assert row.status == JobStatus.FAILED and row.error_code == "INVALID_FORMAT" and len(seen) == 1
    assert_books_balance(tenant, [job_id])


def test_transient_errors_stop_at_the_attempt_limit(
    api_client, tenant, run_worker, scripted_handler, settings
):
    settings.JOB_MAX_ATTEMPTS = 3
    seen = scripted_handler(MediaError("PROCESSING_FAILED", "still flaky", retryable=True))
    job_id = submit_upload(api_client, DETECT)
    run_worker(["watermark"])
    row = job(job_id)
    assert row.status == JobStatus.FAILED and row.error_code == "PROCESSING_FAILED" and len(seen) == 3
    assert_books_balance(tenant, [job_id])


def test_cuda_oom_is_retried_unbatched(api_client, tenant, run_worker, scripted_handler):
    seen = scripted_handler(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "ok")
    job_id = submit_upload(api_client, DETECT)
    run_worker(["watermark"])
    row = job(job_id)
    assert row.status == JobStatus.SUCCEEDED and row.batch_size_limit == 1
    assert [s["batch_size_limit"] for s in seen] == [None, 1]
    assert_books_balance(tenant, [job_id])


def test_storage_hiccup_is_retried(api_client, tenant, run_worker, scripted_handler, monkeypatch):
    from django.core.files.storage import FileSystemStorage

    scripted_handler("ok")
    real_open = FileSystemStorage.open
    calls = {"n": 0}

    def flaky_open(self, name, mode="rb"):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionResetError("storage connection reset")
        return real_open(self, name, mode)

    monkeypatch.setattr(FileSystemStorage, "open", flaky_open)
    job_id = submit_upload(api_client, DETECT)
    run_worker(["watermark"])
    row = job(job_id)
    assert row.status == JobStatus.SUCCEEDED and row.attempts == 2
    assert_books_balance(tenant, [job_id])


def test_missing_input_fails_at_once(api_client, tenant, run_worker, scripted_handler):
    from django.core.files.storage import default_storage

    scripted_handler("ok")
    job_id = submit_upload(api_client, DETECT)
    default_storage.delete(job(job_id).input_file)
    run_worker(["watermark"])
    row = job(job_id)
    assert row.status == JobStatus.FAILED and row.error_code == "FILE_NOT_FOUND" and row.attempts == 1
    assert_books_balance(tenant, [job_id])
