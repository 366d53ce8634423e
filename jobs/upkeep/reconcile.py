"""The reconciler: brings every job to a true state after crashes, using the database as the truth.

Redis only carries work. Whatever happened (a worker killed with ``-9``, Redis flushed or restarted, a lost
``on_commit``), one pass of ``run_once`` repairs it:

1. queued jobs whose retry backoff is over, or whose RQ job is missing from Redis (or ended there without
   the row following), are enqueued again under a new RQ id;
2. running jobs past their kind's timeout (plus a grace, for a call the worker could not interrupt) are
   failed with ``TIMEOUT``; running jobs whose heartbeat stopped (the worker died) are retried up to the
   kind's attempt limit, then failed with ``WORKER_LOST``;
3. the RQ failed-job registries are matched against the rows: an RQ failure whose row is still active is
   retried or failed as above, and entries whose row is final are removed;
4. reservations still held by final jobs are settled or released (``billing.on_job_final``, idempotent);
5. webhook deliveries that are due are handed to the webhook queue.

Every repair is a conditional UPDATE through ``jobs.services`` (the state machine) or a claim in
``services.enqueue``, so several reconcilers (every worker runs one, plus ``manage.py reconcile``) and
workers racing with them can never apply one repair twice. Failing a job goes through the final transition,
which releases its reservation in the same transaction.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing import services as billing_services
from billing.contracts import BillableJob
from billing.models import Reservation, ReservationState
from jobs import services
from jobs.kinds import KINDS
from jobs.models import FINAL_STATUSES, Job, JobStatus
from jobs.webhooks import outbox

logger = logging.getLogger(__name__)

ACTIVE_RQ_STATUSES = frozenset({"queued", "started", "scheduled", "deferred"})
BATCH = 500


@dataclass
class Report:
    """What one pass did (job ids per repair), for the command's output, logs and tests."""

    enqueued_retries: list[str] = field(default_factory=list)
    reenqueued_missing: list[str] = field(default_factory=list)
    retried_lost: list[str] = field(default_factory=list)
    failed_lost: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    failed_registry_removed: list[str] = field(default_factory=list)
    reservations_closed: list[str] = field(default_factory=list)
    webhooks_enqueued: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {name: len(value) for name, value in self.__dict__.items()}

    def __bool__(self) -> bool:
        return any(self.__dict__.values())


def _queue_names() -> list[str]:
    return sorted({spec.queue for spec in KINDS.values()})


def _connection():
    import django_rq

    return django_rq.get_connection(_queue_names()[0])


# --- 1. queued jobs -----------------------------------------------------------------------------------------


def _rq_status(rq_job_id: str, connection) -> str | None:
    """The RQ job's status, or None when Redis does not have it."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RQJob

    try:
        status = RQJob.fetch(rq_job_id, connection=connection).get_status(refresh=False)
    except NoSuchJobError:
        return None
    return str(getattr(status, "value", status))


def enqueue_queued(report: Report) -> None:
    """Enqueue due retries and queued jobs that Redis lost."""
    now = timezone.now()
    grace = now - timedelta(seconds=settings.RECONCILE_QUEUED_GRACE_SECONDS)
    connection = _connection()
    candidates = Job.objects.filter(status=JobStatus.QUEUED).filter(
        Q(retry_at__isnull=True) | Q(retry_at__lte=now)
    ).order_by("created_at")
    for job in candidates.iterator(chunk_size=BATCH):
        if not job.rq_job_id:
            # A retry whose backoff is over (or whose immediate enqueue was lost with its process).
            if job.retry_at is not None or (job.enqueued_at or job.created_at) <= grace:
                if services.enqueue(job, claim={"rq_job_id": ""}):
                    report.enqueued_retries.append(str(job.id))
            continue
        if (job.enqueued_at or job.created_at) > grace:
            continue  # just enqueued: the RQ job may not be visible yet
        if _rq_status(job.rq_job_id, connection) in ACTIVE_RQ_STATUSES:
            continue
        if services.enqueue(job, claim={"rq_job_id": job.rq_job_id}):
            logger.warning("job %s was queued but missing from Redis: enqueued again", job.id)
            report.reenqueued_missing.append(str(job.id))


# --- 2. running jobs ----------------------------------------------------------------------------------------


def lost_or_retry(job: Job, code: str, message: str, report: Report, *, where: dict) -> None:
    """Retry a running job that lost its worker, or fail it with ``code`` when out of attempts."""
    outcome = services.lose_worker(job, message, code=code, where=where)
    if outcome == "retried":
        report.retried_lost.append(str(job.id))
    elif outcome == "failed":
        report.failed_lost.append(str(job.id))


def recover_running(report: Report) -> None:
    """Fail running jobs over their timeout; retry or fail those whose worker stopped sending heartbeats."""
    now = timezone.now()
    lost_before = now - timedelta(seconds=settings.WORKER_LOST_AFTER_SECONDS)
    for job in Job.objects.filter(status=JobStatus.RUNNING).order_by("started_at").iterator(chunk_size=BATCH):
        limit = services.timeout_for(job.kind)
        started = job.started_at or job.created_at
        if started + timedelta(seconds=limit + settings.JOB_TIMEOUT_GRACE_SECONDS) <= now:
            if services.time_out(job, where={"started_at": job.started_at}):
                report.timed_out.append(str(job.id))
            continue
        last_sign = job.heartbeat_at or job.started_at or job.created_at
        if last_sign <= lost_before:
            lost_or_retry(
                job, "WORKER_LOST",
                f"The worker running this job stopped responding ({job.worker_name or 'unknown'}).",
                report, where={"heartbeat_at": job.heartbeat_at, "started_at": job.started_at},
            )


# --- 3. the RQ failed-job registries ------------------------------------------------------------------------


def job_id_from_rq(rq_job_id: str) -> uuid.UUID | None:
    """``job-<uuid>-<attempt>-<token>`` (see ``services.enqueue``) -> the Job's id; None for other RQ jobs."""
    if not rq_job_id.startswith("job-"):
        return None
    try:
        return uuid.UUID(rq_job_id[4:40])
    except ValueError:
        return None


def _failure_text(rq_job_id: str, connection) -> str:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RQJob

    try:
        result = RQJob.fetch(rq_job_id, connection=connection).latest_result()
    except NoSuchJobError:
        return ""
    return (getattr(result, "exc_string", "") or "") if result is not None else ""


def reconcile_failed_registry(report: Report) -> None:
    """Make RQ's failed registries agree with the rows, then drop the entries the rows have settled."""
    import django_rq
    from rq.registry import FailedJobRegistry, StartedJobRegistry

    for name in _queue_names():
        queue = django_rq.get_queue(name)
        StartedJobRegistry(queue=queue).cleanup()  # abandoned executions (dead workers) -> failed registry
        registry = FailedJobRegistry(queue=queue)
        for rq_job_id in registry.get_job_ids():
            job_id = job_id_from_rq(rq_job_id)
            job = Job.objects.filter(pk=job_id).first() if job_id else None
            if job is not None and job.status not in FINAL_STATUSES and job.rq_job_id == rq_job_id:
                failure = _failure_text(rq_job_id, queue.connection)
                where = {"rq_job_id": rq_job_id}
                if job.status == JobStatus.QUEUED:
                    if services.enqueue(job, claim=where):
                        report.reenqueued_missing.append(str(job.id))
                elif "JobTimeoutException" in failure:
                    if services.time_out(job, where=where):
                        report.timed_out.append(str(job.id))
                else:
                    logger.warning("job %s: RQ saw a failure the row did not: %s", job.id, failure[-500:])
                    lost_or_retry(
                        job, "WORKER_LOST", "The worker running this job failed.", report, where=where
                    )
                job.refresh_from_db()
                if job.status not in FINAL_STATUSES and job.rq_job_id == rq_job_id:
                    continue  # could not settle it now; keep the evidence for the next pass
            registry.remove(rq_job_id, delete_job=True)
            report.failed_registry_removed.append(rq_job_id)


# --- 4. reservations ----------------------------------------------------------------------------------------


def close_reservations(report: Report) -> None:
    """Settle/release reservations that final jobs still hold (billing.on_job_final is idempotent), and
    release those whose job row is gone (deleted by staff or with its tenant's data): billing keeps the job's
    id, not a foreign key, so a deleted job would otherwise hold its seconds and a concurrency slot forever."""
    held = Reservation.objects.filter(state=ReservationState.RESERVED)
    final = Job.objects.filter(pk__in=held.values("job_id"), status__in=FINAL_STATUSES)
    for job in final.iterator(chunk_size=BATCH):
        with transaction.atomic():
            billing_services.on_job_final(services.billable_job(job))
        logger.warning("job %s was %s but still held its reservation: closed", job.id, job.status)
        report.reservations_closed.append(str(job.id))
    orphans = held.exclude(job_id__in=Job.objects.values("pk")).values_list("job_id", "tenant_id")
    for job_id, tenant_id in orphans.iterator(chunk_size=BATCH):
        with transaction.atomic():
            gone = BillableJob(job_id=job_id, tenant_id=tenant_id, kind="", audio_seconds=None)
            if billing_services.release(gone):
                logger.warning("job %s no longer exists but held a reservation: released", job_id)
                report.reservations_closed.append(str(job_id))


# --- the pass -----------------------------------------------------------------------------------------------


def run_once() -> Report:
    """One full reconciliation pass. Safe to run concurrently with workers and other reconcilers."""
    report = Report()
    recover_running(report)
    reconcile_failed_registry(report)
    enqueue_queued(report)
    close_reservations(report)
    report.webhooks_enqueued.extend(outbox.enqueue_due())
    if report:
        logger.info("reconcile: %s", {k: v for k, v in report.counts().items() if v})
    return report


def periodic() -> dict[str, int] | None:
    """The ``PERIODIC_TASKS`` entry (billing.periodic's scheduler, on the maintenance queue)."""
    import socket

    owner = f"periodic:{socket.gethostname()}"
    report = run_once_locked(owner=owner, ttl=settings.RECONCILE_INTERVAL_SECONDS)
    return report.counts() if report is not None else None


def run_once_locked(owner: str, ttl: float) -> Report | None:
    """``run_once`` unless another process ran it in the last ``ttl`` seconds (a Redis lock, not released:
    it spaces passes across every worker that runs the reconciler)."""
    connection = _connection()
    if not connection.set("audioseal:reconcile:lock", owner, nx=True, px=max(1000, int(ttl * 1000))):
        return None
    return run_once()
