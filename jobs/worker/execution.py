"""Around a handler, for single and batched runs alike: its context, its outcome, and its errors.

Both the runner (one job) and batching (a leader with companions) build a job's context with
``build_context``, store a handler's outcome with ``record_outcome`` and turn an error into the right state
move with ``settle_error``: there is ONE mapping from "what went wrong" to "what the job becomes", so a job
fails, retries or is given back the same way whether it ran alone or in a batch.

    handler error                       ->  job
    JobCanceled (canceled while running) ->  nothing (already final)
    JobTimeoutException (RQ's limit)     ->  failed TIMEOUT
    InputMissing (stored input gone)     ->  failed FILE_NOT_FOUND
    StorageError (transient)             ->  retried with backoff, then failed STORAGE_ERROR
    MediaError retryable / not           ->  retried / failed with the media code
    ModelPinMismatch (pinned elsewhere)  ->  failed MODEL_VERSION_UNAVAILABLE
    CUDA out of memory                   ->  retried unbatched (batch_size_limit=1), then failed RESOURCE_LIMIT
    anything else                        ->  failed PROCESSING_FAILED (logged)
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.files import File
from django.core.files.storage import default_storage
from rq.timeouts import JobTimeoutException

from jobs import services
from jobs.worker import cache as result_cache
from jobs.worker import provenance as job_provenance
from jobs.worker.handlers import JobContext, Outcome
from jobs.worker.workdirs import work_root
from media_ops.errors import MediaError

if TYPE_CHECKING:
    from jobs.models import Job

logger = logging.getLogger(__name__)

PROGRESS_MIN_INTERVAL_SECONDS = 0.5


class StorageError(Exception):
    """A transient storage failure (network, S3 5xx, disk): the job is retried, not failed."""


class InputMissing(Exception):
    """The job's stored input is gone: retrying cannot help."""


class ModelPinMismatch(Exception):
    """The job asked for a model version (``params.model_version``) this worker does not hold."""


def loaded_model_version(kind: str, pool: Any) -> str:
    """The version of the model this worker's pool runs ``kind`` on (what the result will record)."""
    from jobs.model_versions import BEATSYNC_MODEL, MODEL_OF_KIND

    model = MODEL_OF_KIND[kind]
    if model == "generator":
        return pool.get("watermark").generator_version
    if model == "detector":
        return pool.get("watermark").detector_version
    if model == "emotion":
        return pool.get("emotion").version
    return BEATSYNC_MODEL[1]


def check_model_pin(job: Job, pool: Any) -> None:
    """Refuse to run a pinned job on another model than the one it pinned (never a silent substitute)."""
    pinned = (job.params or {}).get("model_version")
    if not pinned:
        return
    loaded = loaded_model_version(job.kind, pool)
    if loaded != pinned:
        raise ModelPinMismatch(f"The job pinned model version {pinned}; this worker runs {loaded}.")


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


def download(name: str, dest: Path) -> Path:
    """Copy a stored file to ``dest``; InputMissing when it is gone, StorageError when storage failed."""
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


def save_output(name: str, path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            return default_storage.save(name, File(fh))
    except _storage_errors() as exc:
        raise StorageError(f"could not store {name}: {exc}") from exc


def progress_reporter(job: Job) -> Callable[[int, str], None]:
    """The handler's progress callback: at most one report per 0.5 s, counting ``start``'s own ("Starting").

    Each report is a database write and a Redis publish; a 1 s clip finishes in ~0.1 s, so its intermediate
    steps are invisible to a person anyway and only cost the worker time (such a job now writes no progress
    between "Starting" and its final state). Cancellation is still noticed at the next report that goes
    through (at most 0.5 s late), or at the final write, which only moves a job that is still running; the
    heartbeat thread keeps the job alive in between.
    """
    last = [time.monotonic()]  # the context is built right after ``start`` wrote progress 1 "Starting"

    def report(percent: int, message: str) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_MIN_INTERVAL_SECONDS:
            return
        last[0] = now
        services.report_progress(job, percent, message)

    return report


def build_context(job: Job, pool: Any) -> JobContext:
    """A fresh work directory with the job's inputs downloaded into it, and the handler's context."""
    check_model_pin(job, pool)
    workdir = work_root() / str(job.id)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    ctx = JobContext(
        kind=job.kind,
        params=job.params,
        input=job.input,
        input_path=download(job.input_file, workdir / f"input.{job.input.get('format', 'bin')}"),
        extra_paths={
            role: download(meta["file"], workdir / f"{role}.{meta.get('format', 'bin')}")
            for role, meta in (job.extra_inputs or {}).items()
        },
        workdir=workdir,
        pool=pool,
        progress=progress_reporter(job),
    )
    ctx.batch_size_limit = job.batch_size_limit  # 1 after a CUDA OOM: batching code must honour it
    ctx.provenance = job_provenance.for_job(job)  # what the embed handler signs its output with
    return ctx


def record_outcome(job: Job, outcome: Outcome, cache_key: Any = None) -> None:
    """Store a handler's outcome: remember it in the result cache, save its output file, mark the job done."""
    if cache_key is not None:
        outcome.result = result_cache.remember(job, cache_key, outcome.result)
    output_name = ""
    if outcome.output_path is not None:
        services.report_progress(job, 95, "Storing output")
        output_name = save_output(f"outputs/{job.tenant_id}/{job.id}/{outcome.output_path.name}", outcome.output_path)
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


def is_cuda_oom(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError (or the RuntimeError older torch raises), without importing torch."""
    return type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower() and "cuda" in str(exc).lower()
    )


def _free_cuda_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def retry_or_fail(job: Job, code: str, message: str, *, final_code: str | None = None, **fields: Any) -> str:
    """Retry a transient failure with backoff while attempts remain; else fail with ``final_code``."""
    if job.attempts < services.max_attempts_for(job.kind):
        if services.retry(job, code, message, **fields):
            return "retrying"
    services.fail(job, final_code or code, message)
    return "failed"


def settle_error(job: Job, exc: BaseException) -> str:
    """Move ``job`` to what ``exc`` means for it (the table in the module docstring); returns the outcome."""
    if isinstance(exc, services.JobCanceled):
        logger.info("job %s was canceled while running", job.id)
        return "canceled"
    if isinstance(exc, JobTimeoutException):
        services.time_out(job)
        return "failed"
    if isinstance(exc, InputMissing):
        services.fail(job, "FILE_NOT_FOUND", "The job's input file is missing from storage.")
        return "failed"
    if isinstance(exc, ModelPinMismatch):
        services.fail(job, "MODEL_VERSION_UNAVAILABLE", str(exc))
        return "failed"
    if isinstance(exc, StorageError):
        logger.warning("job %s: storage error: %s", job.id, exc)
        return retry_or_fail(job, "STORAGE_ERROR", "Storage was unavailable; the job could not complete.")
    if isinstance(exc, MediaError):
        if exc.retryable:
            return retry_or_fail(job, exc.code, exc.message)
        services.fail(job, exc.code, exc.message)  # a property of the input: retrying cannot help
        return "failed"
    if is_cuda_oom(exc):
        logger.warning("job %s: CUDA out of memory; retrying unbatched", job.id)
        _free_cuda_memory()
        return retry_or_fail(job, "RESOURCE_LIMIT", "The GPU ran out of memory for this input.", batch_size_limit=1)
    logger.error("job %s failed", job.id, exc_info=exc)
    services.fail(job, "PROCESSING_FAILED", "The job failed while processing; it has been logged.")
    return "failed"
