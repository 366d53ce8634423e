"""RQ entry points. Run inside a worker process that holds the model pool (``manage.py run_worker``)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import time
from importlib import import_module
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import close_old_connections, connection
from rq.timeouts import JobTimeoutException

from audioseal_site import log, metrics
from jobs import batching, heartbeat, services
from jobs import cache as result_cache
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


class StorageError(Exception):
    """A transient storage failure (network, S3 5xx, disk): the job is retried, not failed."""


class InputMissing(Exception):
    """The job's stored input is gone: retrying cannot help."""


def _storage_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:  # pragma: no cover - boto3 is optional (local storage)
        pass
    return tuple(errors)


def _is_missing(exc: BaseException) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    response = getattr(exc, "response", None)
    code = str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    return code in ("404", "NoSuchKey", "NotFound")


def _download(name: str, dest: Path) -> Path:
    try:
        if hasattr(default_storage, "download_to"):  # S3: ranged GETs straight into the file
            return default_storage.download_to(name, dest)
        with default_storage.open(name, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, length=1024 * 1024)
    except _storage_errors() as exc:
        if _is_missing(exc):
            raise InputMissing(name) from exc
        raise StorageError(f"could not read {name}: {exc}") from exc
    return dest


def _save_output(name: str, path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            return default_storage.save(name, File(fh))
    except _storage_errors() as exc:
        raise StorageError(f"could not store {name}: {exc}") from exc


def is_cuda_oom(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError (or the RuntimeError older torch raises), without importing torch."""
    return type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower() and "cuda" in str(exc).lower()
    )


def _free_cuda_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _test_delay() -> None:
    """TEST ONLY (settings.JOB_TEST_DELAY_SECONDS, 0 = off): one long uninterrupted call, like a model's."""
    delay = float(getattr(settings, "JOB_TEST_DELAY_SECONDS", 0) or 0)
    if delay > 0:
        time.sleep(delay)


PROGRESS_MIN_INTERVAL_SECONDS = 0.5


def progress_reporter(job):
    """The handler's progress callback: the first report at once, then at most one per 0.5 s.

    Each report is a database write and a Redis publish; a 1 s clip finishes in ~0.1 s, so its intermediate
    steps are invisible to a person anyway and only cost the worker time (issue 9). Cancellation is still
    noticed at the next report that goes through (at most 0.5 s late), and the heartbeat thread keeps the job
    alive in between.
    """
    last = [float("-inf")]

    def report(percent: int, message: str) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_MIN_INTERVAL_SECONDS:
            return
        last[0] = now
        services.report_progress(job, percent, message)

    return report


def retry_or_fail(job, code: str, message: str, *, final_code: str | None = None, **fields) -> str:
    """Retry a transient failure with backoff while attempts remain; else fail with ``final_code``."""
    if job.attempts < services.max_attempts_for(job.kind):
        if services.retry(job, code, message, **fields):
            return "retrying"
    services.fail(job, final_code or code, message)
    return "failed"


def record_outcome(job, outcome, cache_key=None) -> None:
    """Store a handler's outcome: remember it in the result cache, save its output file, mark the job done.

    Shared by single jobs and by the companions of a batch (``jobs.batching``)."""
    if cache_key is not None:
        outcome.result = result_cache.remember(job, cache_key, outcome.result)
    output_name = ""
    if outcome.output_path is not None:
        services.report_progress(job, 95, "Storing output")
        output_name = _save_output(
            f"outputs/{job.tenant_id}/{job.id}/{outcome.output_path.name}", outcome.output_path
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


def run_job(job_id: str) -> str:
    close_old_connections()
    try:
        with log.context(job_id=job_id):  # every log line of the job carries its id (and tenant, below)
            status = _run(job_id)
            logger.info("job %s ended: %s", job_id, status, extra={"outcome": status})
            if status != "skipped":
                metrics.record_job_final(job_id)  # job duration histogram, shared through Redis
        return status
    finally:
        close_old_connections()


def _run(job_id: str) -> str:
    from rq import get_current_job

    rq_job = get_current_job()
    worker_name = _worker_name()
    job = services.start(job_id, worker_name, rq_job_id=rq_job.id if rq_job is not None else None)
    if job is None:
        return "skipped"
    log.bind(tenant_id=job.tenant_id)
    heartbeat.job_started(job.pk, job.worker_name)
    try:
        return _execute(job)
    except heartbeat.WorkerShutdown:
        connection.close_if_unusable_or_obsolete()
        services.retry(job, "WORKER_SHUTDOWN", "worker shut down", delay=0, count_attempt=False)
        return "requeued"
    except (SystemExit, KeyboardInterrupt):  # cold shutdown: give the job back before the process exits
        connection.close_if_unusable_or_obsolete()
        services.retry(job, "WORKER_SHUTDOWN", "worker shut down", delay=0, count_attempt=False)
        raise
    finally:
        heartbeat.job_finished()


def _execute(job) -> str:
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
            progress=progress_reporter(job),
        )
        ctx.batch_size_limit = job.batch_size_limit  # 1 after a CUDA OOM: batching code must honour it
        cache_key = result_cache.key_for(job, ctx.input_path, ctx.pool)  # None: kind not cacheable
        if cache_key is not None and result_cache.complete_from_cache(job, cache_key):
            return job.status  # answered from the result cache: no model call, billed per RESULT_CACHE_CHARGE
        _test_delay()
        module, _, func = kind_spec.handler.rpartition(".")
        handler_started = time.perf_counter()
        outcome = batching.run_with_companions(job, ctx, job.worker_name)  # None: batch size 1 or no companions
        if outcome is None:
            outcome = getattr(import_module(module), func)(ctx)
        metrics.observe_inference(job.kind, kind_spec.model_family, time.perf_counter() - handler_started)
        record_outcome(job, outcome, cache_key)
        return job.status
    except services.JobCanceled:
        logger.info("job %s was canceled while running", job.id)
        return "canceled"
    except JobTimeoutException:
        limit = services.timeout_for(job.kind)
        services.fail(job, "TIMEOUT", f"The job ran longer than its {limit} s limit and was stopped.")
        return "failed"
    except InputMissing:
        services.fail(job, "FILE_NOT_FOUND", "The job's input file is missing from storage.")
        return "failed"
    except StorageError as exc:
        logger.warning("job %s: storage error: %s", job.id, exc)
        return retry_or_fail(job, "STORAGE_ERROR", "Storage was unavailable; the job could not complete.")
    except MediaError as exc:
        if exc.retryable:
            return retry_or_fail(job, exc.code, exc.message)
        services.fail(job, exc.code, exc.message)  # a property of the input: retrying cannot help
        return "failed"
    except Exception as exc:
        if is_cuda_oom(exc):
            logger.warning("job %s: CUDA out of memory; retrying unbatched", job.id)
            _free_cuda_memory()
            return retry_or_fail(
                job, "RESOURCE_LIMIT", "The GPU ran out of memory for this input.", batch_size_limit=1
            )
        logger.exception("job %s failed", job.id)
        services.fail(job, "PROCESSING_FAILED", "The job failed while processing; it has been logged.")
        return "failed"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
