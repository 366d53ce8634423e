"""Retention of job files and cleanup of temporary files, also after a crash.

* ``expire_files``: deletes the stored inputs and outputs of final jobs older than their tenant's retention
  (billing's effective ``retention_days``: the plan, or a staff override; ``RETENTION_DAYS`` when billing
  has no answer). The job row stays with all its metadata and ``files_expired_at`` set, so the API can
  answer ``410 FILE_EXPIRED`` instead of pretending the job never existed. Files are deleted before the row
  is marked: a crash in between leaves an unmarked row whose files are partly gone, and the next run
  deletes again (deleting a missing file is a no-op) and marks it.
* ``clean_stale_workdirs``: a worker keeps a job's temporary files in ``VAR_DIR/tmp/jobs/<job id>`` and
  removes them when the job ends; a worker killed mid-job leaves them behind. At worker start and
  periodically, directories whose job is not running on a live worker are removed.
* ``clean_stale_uploads``: Django's temporary upload files left by a web process that crashed mid-request.
* ``prune_request_log``: the API request log (``accounts.ApiRequest``) older than the tenant's plan's
  ``request_log_days``; the same periodic run.
* ``periodic``: retention as a ``PERIODIC_TASKS`` entry (``manage.py run_scheduler`` enqueues it every
  ``RETENTION_INTERVAL_SECONDS`` on the maintenance queue); ``clean_host_temp``: every worker's maintenance
  loop (RQ's, every ``maintenance_interval``) cleans its own host's temporary files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from accounts import request_log
from accounts.models import ApiRequest, Tenant
from billing import selectors as billing_selectors
from jobs.models import FINAL_STATUSES, Job

logger = logging.getLogger(__name__)

@dataclass
class RetentionReport:
    jobs_expired: int = 0
    files_deleted: int = 0
    errors: list[str] = field(default_factory=list)


def retention_days_for(tenant: Any) -> int:
    """Days a tenant's job files are kept: billing's effective limit, else ``RETENTION_DAYS``.

    A plan value of 0 (or no billing answer) means "not set" and falls back to the setting; deleting
    files the moment a job finishes would break every client that downloads after polling.
    """
    try:
        days = int(billing_selectors.limits_for(tenant).retention_days)
    except Exception:  # noqa: BLE001 - billing trouble must not stop retention; the setting is safe
        logger.exception("could not read the retention of tenant %s; using RETENTION_DAYS", tenant.pk)
        days = 0
    return days if days > 0 else int(settings.RETENTION_DAYS)


def job_files(job: Job) -> list[str]:
    """Every stored file of a job: the primary input, extra inputs (e.g. beat-sync music), the output."""
    names = [job.input_file, job.output_file]
    names += [meta.get("file", "") for meta in (job.extra_inputs or {}).values() if isinstance(meta, dict)]
    return [n for n in names if n]


def expire_files(now: datetime | None = None, batch_size: int = 500) -> RetentionReport:
    """Delete the files of final jobs past their tenant's retention; mark the rows ``files_expired_at``."""
    now = now or timezone.now()
    report = RetentionReport()
    candidates = Job.objects.filter(status__in=FINAL_STATUSES, files_expired_at__isnull=True)
    for tenant_id in candidates.order_by().values_list("tenant_id", flat=True).distinct():
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is None:
            continue
        cutoff = now - timedelta(days=retention_days_for(tenant))
        # A job's files are as old as the job: inputs were stored when it was created.
        due = candidates.filter(tenant_id=tenant_id, created_at__lt=cutoff).order_by("created_at")
        while True:
            batch = list(due[:batch_size])
            if not batch:
                break
            for job in batch:
                _expire_job(job, now, report)
            if all(j.files_expired_at is None for j in batch):  # every delete failed: retry next run
                break
    if report.jobs_expired or report.errors:
        logger.info(
            "retention: %d job(s) expired, %d file(s) deleted, %d error(s)",
            report.jobs_expired, report.files_deleted, len(report.errors),
        )
    return report


def _expire_job(job: Job, now: datetime, report: RetentionReport) -> None:
    deleted = 0
    for name in job_files(job):
        try:
            default_storage.delete(name)
            deleted += 1
        except Exception as exc:  # noqa: BLE001 - one bad object must not stop the run
            report.errors.append(f"{job.pk}: {name}: {exc}")
            logger.warning("retention: could not delete %s of job %s: %s", name, job.pk, exc)
            return
    updated = Job.objects.filter(pk=job.pk, files_expired_at__isnull=True).update(files_expired_at=now)
    job.files_expired_at = now
    report.files_deleted += deleted
    report.jobs_expired += updated


def prune_request_log(now: datetime | None = None) -> int:
    """Delete request log rows past their tenant's plan's ``request_log_days``; returns how many."""
    now = now or timezone.now()
    deleted = 0
    for tenant_id in ApiRequest.objects.order_by().values_list("tenant_id", flat=True).distinct():
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is not None:
            deleted += request_log.prune(tenant, now - timedelta(days=billing_selectors.request_log_days(tenant)))
    if deleted:
        logger.info("retention: %d request log row(s) pruned", deleted)
    return deleted


# --- periodic ----------------------------------------------------------------------------------------------


def periodic() -> dict[str, int]:
    """The ``retention`` entry of ``settings.PERIODIC_TASKS`` (run by a maintenance-queue worker).

    Safe if two run at once: each job is marked with a conditional UPDATE and deleting a file twice is a no-op.
    """
    report = expire_files()
    pruned = prune_request_log()
    return {
        "jobs_expired": report.jobs_expired, "files_deleted": report.files_deleted, "errors": len(report.errors),
        "requests_pruned": pruned,
    }
