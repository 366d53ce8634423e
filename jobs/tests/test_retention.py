"""Retention of job files (plan retention, rows kept, 410 FILE_EXPIRED) and cleanup of temporary files left
by crashed processes, including through the real worker's start and maintenance loop."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone

from jobs.models import Job, JobKind, JobStatus
from jobs.upkeep.retention import expire_files, retention_days_for
from jobs.worker.workdirs import clean_stale_uploads, clean_stale_workdirs
from testing.assertions import assert_error
from testing.uploads import stored_files

pytestmark = pytest.mark.django_db(transaction=True)


def make_job(tenant, *, days_old: float, status=JobStatus.SUCCEEDED, music: bool = False, **fields) -> Job:
    job_id = uuid.uuid4()
    job = Job.objects.create(
        id=job_id, tenant=tenant, kind=JobKind.BEATSYNC if music else JobKind.WATERMARK_EMBED, status=status,
        input_file=default_storage.save(f"inputs/{tenant.pk}/{job_id}/file-a.wav", ContentFile(b"in")),
        output_file=default_storage.save(f"outputs/{tenant.pk}/{job_id}/a.wav", ContentFile(b"out")),
        output_filename="a-watermarked.wav", output_content_type="audio/wav",
        input={"filename": "a.wav", "format": "wav"}, result={"message": "1A2B"},
        extra_inputs=(
            {"music": {"file": default_storage.save(f"inputs/{tenant.pk}/{job_id}/music.mp3", ContentFile(b"m")),
                       "format": "mp3"}} if music else {}
        ),
        **fields,
    )
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(days=days_old))
    return job


def test_expired_files_are_deleted_and_the_rows_stay(api_client, tenant, _isolated_media):
    days = retention_days_for(tenant)  # the tenant's plan
    assert days >= 2
    old = make_job(tenant, days_old=days + 0.1, music=True)
    fresh = make_job(tenant, days_old=days - 0.1)
    running = make_job(tenant, days_old=90, status=JobStatus.RUNNING)
    assert len(stored_files(_isolated_media)) == 7

    report = expire_files()
    assert report.jobs_expired == 1 and report.files_deleted == 3 and report.errors == []
    old.refresh_from_db()
    assert old.files_expired_at is not None and old.result == {"message": "1A2B"}
    remaining = {str(p.relative_to(_isolated_media)) for p in stored_files(_isolated_media)}
    assert remaining == {fresh.input_file, fresh.output_file, running.input_file, running.output_file}

    assert_error(api_client.get(f"/api/v1/jobs/{old.pk}/output"), 410, "FILE_EXPIRED")
    assert_error(api_client.get(f"/api/v1/jobs/{old.pk}/input"), 410, "FILE_EXPIRED")
    detail = api_client.get(f"/api/v1/jobs/{old.pk}").json()
    assert detail["status"] == "succeeded" and detail["input"]["filename"] == "a.wav"
    assert api_client.get(f"/api/v1/jobs/{fresh.pk}/output").status_code == 200

    assert expire_files().jobs_expired == 0  # idempotent


def test_the_plan_decides_retention(make_tenant, settings):
    from billing import selectors as billing_selectors

    short, default = make_tenant("Short"), make_tenant("Default")
    sub = billing_selectors.subscription_for(short)
    sub.retention_days_override = 2
    sub.save()
    assert retention_days_for(short) == 2
    assert retention_days_for(default) == billing_selectors.limits_for(default).retention_days > 3
    a = make_job(short, days_old=3)
    b = make_job(default, days_old=3)
    expire_files()
    a.refresh_from_db(), b.refresh_from_db()
    assert a.files_expired_at is not None and b.files_expired_at is None

    sub.retention_days_override = 0  # "not set": the RETENTION_DAYS setting applies
    sub.save()
    settings.RETENTION_DAYS = 11
    assert retention_days_for(short) == 11


def test_retention_is_a_periodic_task_run_by_the_maintenance_worker(tenant, run_worker, settings):
    from billing import periodic

    assert any(t["func"] == "jobs.upkeep.retention.periodic" for t in settings.PERIODIC_TASKS)
    old = make_job(tenant, days_old=retention_days_for(tenant) + 1)
    periodic.enqueue_all()  # what `manage.py run_scheduler` does on schedule
    run_worker([settings.PERIODIC_QUEUE])
    old.refresh_from_db()
    assert old.files_expired_at is not None


def test_expire_files_command(tenant):
    old = make_job(tenant, days_old=retention_days_for(tenant) + 1)
    call_command("expire_files")
    old.refresh_from_db()
    assert old.files_expired_at is not None


def _workdir(root, name: str):
    path = root / name
    path.mkdir(parents=True)
    (path / "input.wav").write_bytes(b"x" * 100)
    return path


def test_stale_work_dirs_are_removed_but_live_jobs_kept(tenant, settings, redis_clean):
    from jobs.worker.presence import publish_heartbeat
    from jobs.worker.workdirs import work_root

    root = work_root()
    finished = make_job(tenant, days_old=0)
    live = make_job(tenant, days_old=0, status=JobStatus.RUNNING, worker_name="w-alive")
    orphan = make_job(tenant, days_old=0, status=JobStatus.RUNNING, worker_name="w-killed")
    publish_heartbeat(redis_clean, "w-alive", {"queues": ["watermark"]}, ttl=30)
    dirs = {name: _workdir(root, str(job.pk)) for name, job in
            (("finished", finished), ("live", live), ("orphan", orphan))}
    dirs["unknown"] = _workdir(root, str(uuid.uuid4()))  # no such job
    dirs["junk_old"] = _workdir(root, "not-a-job")
    os.utime(dirs["junk_old"], (time.time() - 7200, time.time() - 7200))
    dirs["junk_new"] = _workdir(root, "partial")

    removed = clean_stale_workdirs()
    assert sorted(removed) == sorted(
        [str(finished.pk), str(orphan.pk), dirs["unknown"].name, "not-a-job"]
    )
    assert dirs["live"].exists() and dirs["junk_new"].exists()
    assert not dirs["orphan"].exists() and not dirs["finished"].exists()


def test_worker_start_cleans_what_a_crashed_worker_left(tenant, run_worker):
    from jobs.worker.workdirs import work_root

    crashed = make_job(tenant, days_old=0, status=JobStatus.RUNNING, worker_name="gone-9")
    leftover = _workdir(work_root(), str(crashed.pk))
    run_worker(["media"])
    assert not leftover.exists()


def test_the_worker_maintenance_loop_cleans_temp_files(tenant, settings, tmp_path):
    from jobs.worker.rq_worker import build_worker
    from jobs.worker.workdirs import work_root

    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    worker = build_worker(["media"])
    finished = make_job(tenant, days_old=0)
    leftover = _workdir(work_root(), str(finished.pk))
    upload = tmp_path / "tmpzz.upload.wav"
    upload.write_bytes(b"x")
    os.utime(upload, (time.time() - 7 * 24 * 3600,) * 2)
    worker.run_maintenance_tasks()  # what RQ's loop calls every maintenance_interval
    assert not leftover.exists() and not upload.exists()


def test_stale_upload_temp_files(tmp_path, settings):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    old, new, other = tmp_path / "tmpab12.upload.wav", tmp_path / "tmpcd34.upload.mp3", tmp_path / "keep.txt"
    for path in (old, new, other):
        path.write_bytes(b"x")
    os.utime(old, (time.time() - 10 * 3600, time.time() - 10 * 3600))
    os.utime(other, (time.time() - 10 * 3600, time.time() - 10 * 3600))
    assert clean_stale_uploads(max_age=3600) == 1
    assert not old.exists() and new.exists() and other.exists()
