"""RQ entry points. Run inside a worker process that holds the model pool (``manage.py run_worker``)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from importlib import import_module
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import close_old_connections

from jobs import services
from jobs.handlers import JobContext
from jobs.kinds import spec
from jobs.pool import get_pool
from media_ops.errors import MediaError

logger = logging.getLogger(__name__)


def work_root() -> Path:
    """Where jobs keep their temporary files: one directory per job, removed when it ends."""
    root = Path(settings.VAR_DIR) / "tmp" / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _worker_name() -> str:
    from rq import get_current_job

    current = get_current_job()
    name = getattr(current, "worker_name", None) if current else None
    return name or f"{socket.gethostname()}:{os.getpid()}"


def _download(name: str, dest: Path) -> Path:
    with default_storage.open(name, "rb") as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, length=1024 * 1024)
    return dest


def run_job(job_id: str) -> str:
    close_old_connections()
    try:
        return _run(job_id)
    finally:
        close_old_connections()


def _run(job_id: str) -> str:
    job = services.start(job_id, _worker_name())
    if job is None:
        return "skipped"
    kind_spec = spec(job.kind)
    workdir = work_root() / str(job.id)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        ctx = JobContext(
            kind=job.kind,
            params=job.params,
            input=job.input,
            input_path=_download(job.input_file, workdir / f"input.{job.input.get('format', 'bin')}"),
            extra_paths={
                role: _download(meta["file"], workdir / f"{role}.{meta.get('format', 'bin')}")
                for role, meta in (job.extra_inputs or {}).items()
            },
            workdir=workdir,
            pool=get_pool(),
            progress=lambda pct, msg: services.report_progress(job, pct, msg),
        )
        module, _, func = kind_spec.handler.rpartition(".")
        outcome = getattr(import_module(module), func)(ctx)
        output_name = ""
        if outcome.output_path is not None:
            services.report_progress(job, 95, "Storing output")
            with open(outcome.output_path, "rb") as fh:
                output_name = default_storage.save(
                    f"outputs/{job.tenant_id}/{job.id}/{outcome.output_path.name}", File(fh)
                )
        services.succeed(
            job,
            result=outcome.result,
            model_name=outcome.model_name,
            model_version=outcome.model_version,
            output_file=output_name,
            output_filename=outcome.output_filename,
            output_content_type=outcome.output_content_type,
            audio_seconds=outcome.audio_seconds,
        )
        return job.status
    except services.JobCanceled:
        logger.info("job %s was canceled while running", job.id)
        return "canceled"
    except MediaError as exc:
        services.fail(job, exc.code, exc.message)
        return "failed"
    except Exception:
        logger.exception("job %s failed", job.id)
        services.fail(job, "PROCESSING_FAILED", "The job failed while processing; it has been logged.")
        return "failed"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
