"""The job lifecycle: submission, the state machine, progress and results.

This module is the only code that changes ``Job.status``, through named moves (``start``, ``succeed``,
``fail``, ``time_out``, ``lose_worker``, ``retry``, ``cancel``) over one private ``_transition``. Every
transition is a conditional UPDATE
(``WHERE status IN <allowed sources>``), so two actors racing (a cancel and a worker finishing, two
reconcilers) can never both win, and no transition is lost to a read-modify-write.

    queued -> running -> succeeded | failed
    queued | running -> canceled
    queued -> failed          (e.g. the input vanished before a worker took it)
    running -> queued         (retry after a transient error or a lost worker)
"""

from __future__ import annotations

import logging
import os
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from billing import selectors as billing_selectors
from billing import services as billing_services
from billing.contracts import BillableJob
from billing.selectors import Limits, Standing
from core.errors import ServiceError, from_media_error
from core.units import human_bytes
from jobs import notify
from jobs.kinds import spec
from jobs.models import FINAL_STATUSES, Batch, DirectUpload, Job, JobStatus
from jobs.queues import get_queue
from jobs.webhooks import endpoints, outbox
from media_ops import beatsync
from media_ops.errors import MediaError

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from accounts.models import ApiKey, Tenant

logger = logging.getLogger(__name__)

ALLOWED_SOURCES: dict[str, frozenset[str]] = {
    JobStatus.RUNNING: frozenset({JobStatus.QUEUED}),
    JobStatus.SUCCEEDED: frozenset({JobStatus.RUNNING}),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED, JobStatus.RUNNING}),
    JobStatus.CANCELED: frozenset({JobStatus.QUEUED, JobStatus.RUNNING}),
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING}),
}


class JobCanceled(Exception):
    """Raised inside a handler when the job was canceled (or taken away) while it ran."""


# --- submission ---------------------------------------------------------------------------------------------


@dataclass
class Submission:
    """A validated request to create a job, independent of how it arrived (API, dashboard, admin)."""

    tenant: Tenant
    kind: str
    files: Mapping[str, UploadedFile]
    params: dict[str, Any] = field(default_factory=dict)
    api_key: ApiKey | None = None
    user: AbstractBaseUser | AnonymousUser | None = None
    idempotency_key: str = ""
    callback_url: str = ""
    request_fingerprint: str = ""  # see jobs.idempotency: compared when the idempotency key is replayed
    standing: Standing | None = None  # billing's reading of the tenant, when the request already made it
    # Called inside the creating transaction, before the row is inserted: it may complete ``job.params``
    # (embed's ``message=auto`` takes the next free message of the tenant's registry here), and whatever it
    # writes rolls back with the job when the submission fails.
    prepare: Callable[[Job], None] | None = None
    batch: Batch | None = None  # the batch this job is an item of (jobs.batches)
    batch_index: int | None = None
    # Inputs already in storage (field -> storage name): a presigned direct upload, used in place (not
    # copied), never deleted by a refusal here; ``direct_upload_id`` is consumed in the job's transaction.
    stored_inputs: Mapping[str, str] = field(default_factory=dict)
    direct_upload_id: Any = None


def _upload_path(upload: UploadedFile) -> tuple[str, bool]:
    """A filesystem path for the upload, writing a temporary copy only when Django kept it in memory."""
    if hasattr(upload, "temporary_file_path"):
        return upload.temporary_file_path(), False
    import tempfile

    fd, path = tempfile.mkstemp(prefix="upload-")
    with os.fdopen(fd, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return path, True


def check_upload_size(upload: UploadedFile, field_name: str, limit: int | None = None) -> None:
    """``limit``: the tenant's plan limit (``billing.selectors.limits_for``); default the global ceiling."""
    limit = settings.MAX_UPLOAD_BYTES if limit is None else limit
    if upload.size > limit:
        raise ServiceError(
            "FILE_TOO_LARGE",
            # In the units the upload page states the limit in (core.units); the exact bytes are in details.
            f"`{field_name}` is {human_bytes(upload.size)}; the limit is {human_bytes(limit)}.",
            {"field": field_name, "size_bytes": upload.size, "limit_bytes": limit},
        )


def video_limits(limits: Limits) -> beatsync.VideoLimits:
    """The plan's (or, from ``limits_for(None)``, the global) video limits in media_ops' terms."""
    return beatsync.VideoLimits(
        max_pixels_per_frame=limits.max_video_pixels,
        max_fps=limits.max_video_fps,
        max_pixels_per_second=limits.max_video_pixel_rate,
    )


def probe_upload(
    kind: str, upload: UploadedFile, field_name: str, tenant: Tenant | None = None, *, limits: Limits | None = None
) -> dict[str, Any]:
    """Validate one upload (size, real format, duration, video frame size and rate) against the tenant's plan
    limits; raises ServiceError."""
    if upload.size == 0:
        raise ServiceError("EMPTY_FILE", f"`{field_name}` is empty.", {"field": field_name})
    limits = limits if limits is not None else billing_selectors.limits_for(tenant)
    check_upload_size(upload, field_name, limits.max_file_bytes)
    path, is_temp = _upload_path(upload)
    try:
        info = spec(kind).probe(
            path, max_duration_seconds=limits.max_audio_seconds, field=field_name, video_limits=video_limits(limits)
        )
    except MediaError as exc:
        error = from_media_error(exc)
        error.details.setdefault("field", field_name)
        raise error from exc
    finally:
        if is_temp:
            os.unlink(path)
    info.update(filename=os.path.basename(upload.name or field_name), size_bytes=upload.size)
    return info


def _storage_name(job: Job, role: str, upload_name: str, fmt: str) -> str:
    stem = Path(get_valid_filename(os.path.basename(upload_name or role)) or role).stem[:80] or role
    return f"inputs/{job.tenant_id}/{job.id}/{role}-{stem}.{fmt}"


def validate_submission(sub: Submission) -> dict[str, dict[str, Any]]:
    """Check a submission before anything is written: the callback URL and every input file (probed against
    the plan's limits). Returns each input's probe info. A refused direct upload is discarded (object and
    row): nothing refused stays stored."""
    kind_spec = spec(sub.kind)
    if sub.callback_url:
        endpoints.check_callback_url(sub.callback_url)  # INVALID_CALLBACK_URL before any work (SSRF guard)
    missing = [i.name for i in kind_spec.inputs if i.required and sub.files.get(i.name) is None]
    if missing:
        raise ServiceError("VALIDATION_ERROR", "Missing file upload.", {"fields": {n: ["required"] for n in missing}})
    sent = [name for name in kind_spec.input_names if sub.files.get(name) is not None]  # optional ones may be absent
    standing = sub.standing or billing_selectors.standing_for(sub.tenant)
    try:
        return {
            name: probe_upload(sub.kind, sub.files[name], name, sub.tenant, limits=standing.limits)
            for name in sent
        }
    except ServiceError:
        if sub.direct_upload_id is not None:
            discard_direct_upload(sub.direct_upload_id)
        raise


def discard_direct_upload(upload_id: Any) -> None:
    """Delete a refused direct upload: its object, then its row (only while unconsumed)."""
    upload = DirectUpload.objects.filter(pk=upload_id, consumed_at__isnull=True).first()
    if upload is not None:
        _delete_file(upload.storage_name)
        upload.delete()


def _consume_direct_upload(sub: Submission, job: Job) -> None:
    """Mark the direct upload used by ``job``, once: a conditional UPDATE inside the job's transaction, so two
    jobs racing for one upload cannot both have it and a refused job (quota) leaves it unused."""
    consumed = DirectUpload.objects.filter(
        pk=sub.direct_upload_id, tenant=sub.tenant, consumed_at__isnull=True
    ).update(consumed_at=timezone.now(), job=job)
    if not consumed:
        raise ServiceError(
            "UPLOAD_ALREADY_USED", "This upload was already used for a job; upload the file again.",
            {"field": "upload_id", "upload_id": str(sub.direct_upload_id)},
        )


def submit(sub: Submission, infos: dict[str, dict[str, Any]] | None = None) -> Job:
    """Validate the uploads, store them and create the queued job, all or nothing.

    The files are probed before anything is written (``infos``: when ``validate_submission`` already ran, as
    batches do before their transaction). The row, the stored files and the quota reservation are made in
    one transaction; if any step fails the stored files are deleted, so a refused upload leaves no row and
    no file. The job is enqueued only after the transaction commits.
    """
    kind_spec = spec(sub.kind)
    if infos is None:
        infos = validate_submission(sub)
    standing = sub.standing or billing_selectors.standing_for(sub.tenant)

    stored: list[str] = []
    try:
        with transaction.atomic():
            primary = kind_spec.input_names[0]
            job = Job(
                id=uuid.uuid4(),
                tenant=sub.tenant,
                kind=sub.kind,
                params=sub.params,
                api_key=sub.api_key,
                created_by=sub.user if getattr(sub.user, "is_authenticated", False) else None,
                input=infos[primary],
                audio_seconds=kind_spec.billable_seconds(infos, primary),
                idempotency_key=sub.idempotency_key,
                request_fingerprint=sub.request_fingerprint,
                callback_url=sub.callback_url,
                progress_message="Queued",
                enqueued_at=timezone.now(),
                batch=sub.batch,
                batch_index=sub.batch_index,
            )
            job.rq_job_id = _new_rq_job_id(job)  # in the row from the start: pushed to RQ after the commit
            extra: dict[str, Any] = {}
            for name in infos:  # the inputs sent (an optional one may be absent), probed above
                upload = sub.files[name]
                if name in sub.stored_inputs:  # a direct upload: already in storage, used where it is
                    saved = sub.stored_inputs[name]
                else:
                    upload.seek(0)
                    saved = default_storage.save(
                        _storage_name(job, name, upload.name, infos[name].get("format", "bin")), upload
                    )
                    stored.append(saved)
                if name == primary:
                    job.input_file = saved
                else:
                    extra[name] = {"file": saved, **infos[name]}
            job.extra_inputs = extra
            if sub.prepare is not None:
                sub.prepare(job)
            job.save(force_insert=True)
            if sub.direct_upload_id is not None:
                _consume_direct_upload(sub, job)
            billing_services.reserve(billable_job(job), standing)
            transaction.on_commit(lambda: _push_after_commit(job))
    except BaseException:
        for name in stored:
            _delete_file(name)
        raise
    return job


def timeout_for(kind: str) -> int:
    """Seconds a job of ``kind`` may run (settings.JOB_TIMEOUTS, else JOB_TIMEOUT_SECONDS)."""
    return int(settings.JOB_TIMEOUTS.get(kind, settings.JOB_TIMEOUT_SECONDS))


def max_attempts_for(kind: str) -> int:
    """How many times a job of ``kind`` may start before a transient failure or lost worker is final."""
    return max(1, int(settings.JOB_MAX_ATTEMPTS_BY_KIND.get(kind, settings.JOB_MAX_ATTEMPTS)))


def retry_delay(attempts: int) -> float:
    """Exponential backoff before the retry that follows attempt number ``attempts`` (1-based)."""
    base = float(settings.JOB_RETRY_BACKOFF_SECONDS)
    return min(base * (2 ** max(0, attempts - 1)), float(settings.JOB_RETRY_BACKOFF_MAX_SECONDS))


def _new_rq_job_id(job: Job) -> str:
    return f"job-{job.id}-{job.attempts}-{secrets.token_hex(4)}"


# How long RQ keeps a job's own record after it ran. The row is the truth (status, result, error), and
# nothing reads RQ's return value: a finished RQ job is deleted at once (``result_ttl=0``: no job hash, no
# result stream, no finished-registry entry per job, so Redis does not grow with the jobs run). A failed RQ
# job (the worker process died in it, or ``run_job`` raised past its own error mapping) is kept for the
# reconciler, which reads its traceback and then deletes it (``jobs.upkeep.reconcile``).
RQ_RESULT_TTL = 0
RQ_FAILURE_TTL = 7 * 24 * 3600


def _push(job: Job) -> None:
    """Put the RQ job the row names on the job's queue (the row already says which RQ job may run it).

    One pipeline, one round trip (MULTI/EXEC): RQ's own enqueue without one sends the queue registration and
    the job in two."""
    queue = get_queue(spec(job.kind).queue)
    with queue.connection.pipeline() as pipe:
        queue.enqueue(
            "jobs.worker.runner.run_job",
            str(job.id),
            job_id=job.rq_job_id,
            job_timeout=timeout_for(job.kind),
            result_ttl=RQ_RESULT_TTL,
            failure_ttl=RQ_FAILURE_TTL,
            pipeline=pipe,
        )
        pipe.execute()


def _push_after_commit(job: Job) -> None:
    """A new job's first enqueue: if Redis is down the row stays queued and the reconciler enqueues it."""
    try:
        _push(job)
    except redis.RedisError:
        logger.warning("could not enqueue job %s; the reconciler will", job.id, exc_info=True)


def enqueue(job: Job, *, claim: Mapping[str, Any] | None = None) -> bool:
    """Put the job on its model family's RQ queue under a fresh RQ job id. Safe to call again (re-enqueue).

    The id is written to the row *before* the RQ job exists: a worker only runs the RQ job the row names
    (``start`` checks it), so a stale duplicate left in Redis can never run the job twice, and the write is
    also the claim that makes concurrent reconcilers enqueue a job once: it only happens while the job is
    queued and matches ``claim`` (extra filters, e.g. the RQ id the caller saw). Returns whether it enqueued.
    (A new job gets its RQ id in the row it is inserted with: ``submit`` needs no claim.)
    """
    rq_job_id = _new_rq_job_id(job)
    claimed = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED, **(claim or {})).update(
        rq_job_id=rq_job_id, enqueued_at=timezone.now(), retry_at=None
    )
    if not claimed:
        return False
    job.rq_job_id = rq_job_id
    _push(job)
    return True


def delete_files(names: Sequence[str]) -> None:
    """Delete stored files a rolled-back creation left behind (missing ones are fine; errors are logged)."""
    for name in names:
        _delete_file(name)


def _delete_file(name: str) -> None:
    if not name:
        return
    try:
        default_storage.delete(name)
    except Exception:  # noqa: BLE001 - cleanup must not hide the original error
        logger.exception("could not delete %s", name)


def billable_job(job: Job) -> BillableJob:
    """What billing is told about ``job`` (billing sits below jobs and does not know the Job model)."""
    return BillableJob(
        job_id=job.pk,
        tenant_id=job.tenant_id,
        kind=job.kind,
        audio_seconds=job.audio_seconds,
        succeeded=job.status == JobStatus.SUCCEEDED,
    )


# --- the state machine --------------------------------------------------------------------------------------


def _transition(job: Job, to: str, *, where: Mapping[str, Any] | None = None, **fields: Any) -> bool:
    """Move ``job`` to ``to`` if its current status allows it (and the row matches ``where``); update ``job``
    in place. Returns success."""
    sources = ALLOWED_SOURCES[to]
    now = timezone.now()
    values: dict[str, Any] = {"status": to, **fields}
    if to in FINAL_STATUSES:
        values.setdefault("finished_at", now)
    with transaction.atomic():
        updated = Job.objects.filter(pk=job.pk, status__in=sources, **(where or {})).update(**values)
        if not updated:
            job.refresh_from_db()
            return False
        for name, value in values.items():
            setattr(job, name, value)
        if to in FINAL_STATUSES:
            billing_services.on_job_final(billable_job(job))
            if job.batch_id is None:
                outbox.on_job_final(job)  # the delivery row commits with the final status (an outbox)
            else:
                _close_batch_item(job)  # a batch sends ONE event, when its last item ends
        transaction.on_commit(lambda: notify.publish(job.id, to, job.progress))
    return True


# Take one item off the batch's open count; the statement that takes it to 0 also stamps completed_at, so
# exactly one transaction sees ``completed`` true. The UPDATE locks the batch row: concurrent finishers of one
# batch decrement one after another (each sees the others' committed decrements), never both from 1.
_CLOSE_BATCH_ITEM_SQL = """
UPDATE jobs_batch SET open_items = open_items - 1,
       completed_at = CASE WHEN open_items = 1 THEN %(now)s ELSE completed_at END
WHERE id = %(batch)s AND open_items > 0
RETURNING open_items = 0 AND completed_at = %(now)s
"""


def _close_batch_item(job: Job) -> None:
    """Inside a batch item's final transition: count it done; the last one writes ``batch.completed``."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_CLOSE_BATCH_ITEM_SQL, {"now": now, "batch": job.batch_id})
        row = cursor.fetchone()
    if row and row[0]:
        batch = Batch.objects.select_related("tenant").get(pk=job.batch_id)
        outbox.on_batch_completed(batch)


def start(job_id, worker_name: str, rq_job_id: str | None = None) -> Job | None:
    """queued -> running for the worker that dequeued it; None when the job is gone or no longer queued.

    With ``rq_job_id``, only the RQ job that the row names may start it: a duplicate or stale RQ job (left
    in Redis by a re-enqueue) is skipped, and so is a retry still waiting for its backoff.
    """
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return None
    now = timezone.now()
    ok = _transition(
        job,
        JobStatus.RUNNING,
        where={"rq_job_id": rq_job_id} if rq_job_id is not None else None,
        started_at=now,
        heartbeat_at=now,
        worker_name=worker_name[:200],
        attempts=job.attempts + 1,
        progress=1,
        progress_message="Starting",
        retry_at=None,
    )
    return job if ok else None


def start_batch(kind: str, worker_name: str, limit: int, *, exclude: Sequence[Any] = ()) -> list[Job]:
    """queued -> running for up to ``limit`` queued jobs of ``kind`` (oldest first), claimed in ONE statement.

    For batching: the worker that dequeued a job takes others of its kind along. ``FOR UPDATE SKIP LOCKED``
    means two workers claiming at once take different jobs and never wait for each other; only jobs with an
    RQ job (enqueued), not waiting for a retry backoff and not limited to running alone are taken.
    """
    if limit <= 0:
        return []
    table = Job._meta.db_table
    now = timezone.now()
    # A MATERIALIZED CTE, not ``id IN (SELECT … LIMIT n)``: PostgreSQL may re-run such a subquery per row
    # and claim more than ``n`` (seen: 4 for a limit of 3).
    sql = f"""
        WITH picked AS MATERIALIZED (
            SELECT id FROM {table}
            WHERE kind = %s AND status = %s AND retry_at IS NULL AND rq_job_id <> ''
              AND (batch_size_limit IS NULL OR batch_size_limit <> 1) AND NOT (id = ANY(%s::uuid[]))
            ORDER BY enqueued_at, created_at
            LIMIT %s
            FOR UPDATE SKIP LOCKED)
        UPDATE {table} AS job SET status = %s, started_at = %s, heartbeat_at = %s, worker_name = %s,
               attempts = job.attempts + 1, progress = 1, progress_message = 'Starting', retry_at = NULL
        FROM picked WHERE job.id = picked.id AND job.status = %s
        RETURNING job.*"""
    params = [kind, JobStatus.QUEUED, [uuid.UUID(str(pk)) for pk in exclude], int(limit),
              JobStatus.RUNNING, now, now, worker_name[:200], JobStatus.QUEUED]
    with transaction.atomic():
        started = list(Job.objects.raw(sql, params))
        if started:
            transaction.on_commit(lambda: notify.publish_many([(j.id, JobStatus.RUNNING, 1) for j in started]))
    return sorted(started, key=lambda j: (j.enqueued_at or j.created_at, j.created_at))


def retry(
    job: Job,
    code: str,
    message: str,
    *,
    delay: float | None = None,
    count_attempt: bool = True,
    where: Mapping[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """running -> queued after a transient failure or a lost worker; the caller checked the attempt limit.

    With a delay (default: the backoff for the attempts made) the job waits with ``retry_at`` set and the
    reconciler enqueues it when that time comes; with none it is enqueued as soon as this commits. The
    reservation is kept: the job is still active. ``count_attempt=False`` gives the attempt back (a worker
    shutting down, not the job's fault).
    """
    delay = retry_delay(job.attempts) if delay is None else max(0.0, delay)
    now = timezone.now()
    attempts = job.attempts if count_attempt else max(0, job.attempts - 1)
    with transaction.atomic():
        ok = _transition(
            job,
            JobStatus.QUEUED,
            where=where,
            attempts=attempts,
            rq_job_id="",
            retry_at=now + timedelta(seconds=delay) if delay > 0 else None,
            worker_name="",
            heartbeat_at=None,
            progress=0,
            progress_message=f"Retrying after {code}"[:200],
            **fields,
        )
        if ok:
            logger.warning("job %s requeued after %s (attempt %s): %s", job.id, code, job.attempts, message)
            if delay <= 0:
                transaction.on_commit(lambda: enqueue(job, claim={"rq_job_id": ""}))
    return ok


def report_progress(job: Job, percent: int, message: str) -> None:
    """Record progress (also a heartbeat). Raises JobCanceled when the job stopped being ours."""
    percent = max(0, min(99, int(percent)))
    updated = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        progress=percent, progress_message=message[:200], heartbeat_at=timezone.now()
    )
    if not updated:
        raise JobCanceled(str(job.pk))
    job.progress, job.progress_message = percent, message[:200]
    notify.publish(job.id, JobStatus.RUNNING, percent)


def succeed(
    job: Job,
    *,
    result: dict[str, Any],
    model_name: str = "",
    model_version: str = "",
    output_file: str = "",
    output_filename: str = "",
    output_content_type: str = "",
    audio_seconds: float | None = None,
) -> bool:
    ok = _transition(
        job,
        JobStatus.SUCCEEDED,
        result=result,
        model_name=model_name,
        model_version=model_version,
        output_file=output_file,
        output_filename=output_filename,
        output_content_type=output_content_type,
        audio_seconds=job.audio_seconds if audio_seconds is None else audio_seconds,
        progress=100,
        progress_message="Done",
        error_code="",
        error_message="",
    )
    if not ok:  # canceled while we were finishing: the output belongs to nobody
        _delete_file(output_file)
    return ok


@dataclass
class Success:
    """One job's successful outcome, as ``succeed`` takes it (for ``succeed_many``)."""

    job: Job
    result: dict[str, Any]
    model_name: str = ""
    model_version: str = ""
    output_file: str = ""
    output_filename: str = ""
    output_content_type: str = ""
    audio_seconds: float | None = None


SUCCESS_FIELDS = ("status", "finished_at", "result", "model_name", "model_version", "output_file",
                  "output_filename", "output_content_type", "audio_seconds", "progress", "progress_message",
                  "error_code", "error_message")


def succeed_many(successes: Sequence[Success], *, worker_name: str) -> list[Job]:
    """running -> succeeded for a batch the worker finished together, in ONE transaction whose number of
    statements does not grow with the batch: the rows still running on ``worker_name`` are locked (one
    ``SELECT … FOR UPDATE``: a cancel, a reconciler or another worker racing us waits, then sees the final
    state, or wins first and the job is left out), written with one ``bulk_update``, billed with
    ``billing.services.settle_many``, and announced with one pipelined publish after the commit.

    The same move as ``succeed``, with the same guarantees: a job that stopped being ours (canceled, given
    back, taken over) is not touched and its output file is deleted. Per job only what a job asks for
    costs a statement: its webhook delivery row (a callback URL or the tenant's webhooks) and its batch's
    open-item count. Returns the jobs that succeeded (updated in place, like ``succeed``).
    """
    if not successes:
        return []
    by_id = {str(s.job.pk): s for s in successes}
    now = timezone.now()
    with transaction.atomic():
        mine = {
            str(pk)
            for pk in Job.objects.select_for_update()
            .filter(pk__in=list(by_id), status=JobStatus.RUNNING, worker_name=worker_name[:200])
            .values_list("pk", flat=True)
        }
        done = [s for key, s in by_id.items() if key in mine]
        for s in done:
            job = s.job
            job.status, job.finished_at, job.result = JobStatus.SUCCEEDED, now, s.result
            job.model_name, job.model_version = s.model_name, s.model_version
            job.output_file, job.output_filename = s.output_file, s.output_filename
            job.output_content_type = s.output_content_type
            job.audio_seconds = job.audio_seconds if s.audio_seconds is None else s.audio_seconds
            job.progress, job.progress_message, job.error_code, job.error_message = 100, "Done", "", ""
        if done:
            Job.objects.bulk_update([s.job for s in done], SUCCESS_FIELDS)
            billing_services.settle_many([billable_job(s.job) for s in done])
            for s in done:
                if s.job.batch_id is not None:
                    _close_batch_item(s.job)  # a batch sends ONE event, when its last item ends
                elif s.job.callback_url or s.job.tenant.webhook_url:
                    outbox.on_job_final(s.job)  # the delivery row commits with the final status
            updates = [(s.job.id, JobStatus.SUCCEEDED, 100) for s in done]
            transaction.on_commit(lambda: notify.publish_many(updates))
    for key, s in by_id.items():
        if key not in mine:  # canceled or taken away while we were finishing: the output belongs to nobody
            _delete_file(s.output_file)
    return [s.job for s in done]


def fail(job: Job, code: str, message: str, *, where: Mapping[str, Any] | None = None) -> bool:
    """queued | running -> failed with a stable ``code`` (shown to the customer) and a human ``message``."""
    return _transition(
        job, JobStatus.FAILED, where=where, error_code=code, error_message=message[:2000], progress_message="Failed"
    )


def timeout_message(limit: int) -> str:
    return f"The job ran longer than its {limit} s limit and was stopped."


def time_out(job: Job, *, where: Mapping[str, Any] | None = None) -> bool:
    """running -> failed ``TIMEOUT``: the job outlived its kind's time limit (the worker's or the reconciler's
    finding)."""
    return fail(job, "TIMEOUT", timeout_message(timeout_for(job.kind)), where=where)


def lose_worker(job: Job, message: str, *, code: str = "WORKER_LOST", where: Mapping[str, Any] | None = None) -> str:
    """The worker running ``job`` is gone: retry it while attempts remain, else fail it with ``code``.

    Returns ``"retried"``, ``"failed"`` or ``""`` when the job had already moved on (``where`` no longer
    matched: another actor settled it first).
    """
    if job.attempts < max_attempts_for(job.kind):
        return "retried" if retry(job, code, message, where=where) else ""
    return "failed" if fail(job, code, message, where=where) else ""


def cancel_if_active(job: Job) -> bool:
    """Cancel ``job`` if it is still queued or running; False (no error) when it already ended."""
    return _transition(job, JobStatus.CANCELED, progress_message="Canceled")


def cancel(job: Job) -> bool:
    """Cancel a queued or running job. A running job stops at its next progress report."""
    if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        raise ServiceError(
            "INVALID_STATE", f"A {job.status} job cannot be canceled.", {"status": job.status}
        )
    ok = _transition(job, JobStatus.CANCELED, progress_message="Canceled")
    if not ok:
        raise ServiceError("INVALID_STATE", f"A {job.status} job cannot be canceled.", {"status": job.status})
    return ok
