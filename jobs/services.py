"""The job lifecycle: submission, the state machine, progress and results.

This module is the only code that changes ``Job.status``. Every transition is a conditional UPDATE
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
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from audioseal_site.errors import ApiError, from_media_error
from jobs import notify
from jobs.kinds import spec
from jobs.models import FINAL_STATUSES, Job, JobStatus

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

    tenant: Any
    kind: str
    files: Mapping[str, UploadedFile]
    params: dict[str, Any] = field(default_factory=dict)
    api_key: Any = None
    user: Any = None
    idempotency_key: str = ""
    callback_url: str = ""


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


def check_upload_size(upload: UploadedFile, field_name: str) -> None:
    limit = settings.MAX_UPLOAD_BYTES
    if upload.size > limit:
        raise ApiError(
            "FILE_TOO_LARGE",
            f"`{field_name}` is {upload.size} bytes; the limit is {limit} bytes.",
            {"field": field_name, "size_bytes": upload.size, "limit_bytes": limit},
        )


def probe_upload(kind: str, upload: UploadedFile, field_name: str) -> dict[str, Any]:
    """Validate one upload (size, real format, duration) and describe it; raises ApiError."""
    from media_ops.errors import MediaError

    if upload.size == 0:
        raise ApiError("EMPTY_FILE", f"`{field_name}` is empty.", {"field": field_name})
    check_upload_size(upload, field_name)
    path, is_temp = _upload_path(upload)
    try:
        info = spec(kind).probe(path, max_duration_seconds=settings.MAX_AUDIO_SECONDS)
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


def submit(sub: Submission) -> Job:
    """Validate the uploads, store them and create the queued job, all or nothing.

    The files are probed before anything is written. The row, the stored files and (later) the quota
    reservation are made in one transaction; if any step fails the stored files are deleted, so a refused
    upload leaves no row and no file. The job is enqueued only after the transaction commits.
    """
    kind_spec = spec(sub.kind)
    missing = [name for name in kind_spec.inputs if name not in sub.files]
    if missing:
        raise ApiError("VALIDATION_ERROR", "Missing file upload.", {"fields": {n: ["required"] for n in missing}})
    infos = {name: probe_upload(sub.kind, sub.files[name], name) for name in kind_spec.inputs}

    stored: list[str] = []
    try:
        with transaction.atomic():
            primary = kind_spec.inputs[0]
            job = Job(
                id=uuid.uuid4(),
                tenant=sub.tenant,
                kind=sub.kind,
                params=sub.params,
                api_key=sub.api_key,
                created_by=sub.user if getattr(sub.user, "is_authenticated", False) else None,
                input=infos[primary],
                audio_seconds=float(infos[primary].get("duration_seconds") or 0.0),
                idempotency_key=sub.idempotency_key,
                callback_url=sub.callback_url,
                progress_message="Queued",
            )
            extra: dict[str, Any] = {}
            for name in kind_spec.inputs:
                upload = sub.files[name]
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
            job.save(force_insert=True)
            from billing import services as billing_services

            billing_services.reserve(job)
            transaction.on_commit(lambda: enqueue(job))
    except BaseException:
        for name in stored:
            _delete_file(name)
        raise
    return job


def enqueue(job: Job) -> None:
    """Put the job on its model family's RQ queue. Safe to call again for the same job (re-enqueue)."""
    import django_rq

    kind_spec = spec(job.kind)
    queue = django_rq.get_queue(kind_spec.queue)
    rq_job = queue.enqueue(
        "jobs.tasks.run_job",
        str(job.id),
        job_id=f"job-{job.id}-{job.attempts}",
        job_timeout=settings.JOB_TIMEOUT_SECONDS,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
    )
    Job.objects.filter(pk=job.pk).update(rq_job_id=rq_job.id)
    job.rq_job_id = rq_job.id


def _delete_file(name: str) -> None:
    if not name:
        return
    try:
        default_storage.delete(name)
    except Exception:  # noqa: BLE001 - cleanup must not hide the original error
        logger.exception("could not delete %s", name)


# --- the state machine --------------------------------------------------------------------------------------


def transition(job: Job, to: str, **fields: Any) -> bool:
    """Move ``job`` to ``to`` if its current status allows it; update ``job`` in place. Returns success."""
    sources = ALLOWED_SOURCES[to]
    now = timezone.now()
    values: dict[str, Any] = {"status": to, **fields}
    if to in FINAL_STATUSES:
        values.setdefault("finished_at", now)
    with transaction.atomic():
        updated = Job.objects.filter(pk=job.pk, status__in=sources).update(**values)
        if not updated:
            job.refresh_from_db()
            return False
        for name, value in values.items():
            setattr(job, name, value)
        if to in FINAL_STATUSES:
            from billing import services as billing_services

            billing_services.on_job_final(job)
        transaction.on_commit(lambda: notify.publish(job.id, to, job.progress))
    return True


def start(job_id, worker_name: str) -> Job | None:
    """queued -> running for the worker that dequeued it; None when the job is gone or no longer queued."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return None
    now = timezone.now()
    ok = transition(
        job,
        JobStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker_name=worker_name[:200],
        attempts=job.attempts + 1,
        progress=1,
        progress_message="Starting",
    )
    return job if ok else None


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
    ok = transition(
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


def fail(job: Job, code: str, message: str) -> bool:
    return transition(job, JobStatus.FAILED, error_code=code, error_message=message[:2000], progress_message="Failed")


def cancel(job: Job) -> bool:
    """Cancel a queued or running job. A running job stops at its next progress report."""
    if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        raise ApiError(
            "INVALID_STATE", f"A {job.status} job cannot be canceled.", {"status": job.status}
        )
    ok = transition(job, JobStatus.CANCELED, progress_message="Canceled")
    if not ok:
        raise ApiError("INVALID_STATE", f"A {job.status} job cannot be canceled.", {"status": job.status})
    return ok
