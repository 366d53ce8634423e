"""The worker's own scratch space: one directory per running job, and cleaning what crashed workers left.

Each job downloads its inputs and writes its output under ``work_root()/<job id>/``, removed when the job
ends. A worker killed with -9 cannot remove its directory, so every worker, at start and in RQ's maintenance
loop, removes the directories no live worker is using (``clean_host_temp``), and Django's temporary upload
files older than ``STALE_UPLOAD_SECONDS``. File *retention* of stored inputs and outputs is another matter:
``jobs.upkeep.retention``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections

from jobs.models import Job, JobStatus
from jobs.worker.presence import live_workers

logger = logging.getLogger(__name__)


def work_root() -> Path:
    """Where jobs keep their temporary files: one directory per job, removed when it ends."""
    root = Path(settings.VAR_DIR) / "tmp" / "jobs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _live_worker_names() -> set[str] | None:
    """Names of workers with a fresh heartbeat; None when Redis cannot tell (then be conservative)."""
    try:
        return {str(w.get("name")) for w in live_workers()}
    except Exception:  # noqa: BLE001
        logger.warning("temp cleanup: cannot list live workers; keeping directories of running jobs")
        return None


def clean_stale_workdirs(root: Path | None = None, keep_worker: str | None = None) -> list[str]:
    """Remove job work directories that no live worker is using; returns the names removed.

    A directory is kept while its job is running on a worker that is alive (or, when liveness is unknown,
    while its job is running at all). Directories that are not job ids are removed once an hour old.
    """
    root = Path(root) if root is not None else work_root()
    if not root.is_dir():
        return []
    entries = {p.name: p for p in root.iterdir()}
    if not entries:
        return []
    ids = {}
    for name in entries:
        try:
            ids[name] = uuid.UUID(name)
        except ValueError:
            pass
    running = dict(
        Job.objects.filter(pk__in=list(ids.values()), status=JobStatus.RUNNING)
        .values_list("pk", "worker_name")
    )
    live = _live_worker_names() if running else set()
    removed = []
    for name, path in entries.items():
        job_id = ids.get(name)
        if job_id is None:
            stale = _age_seconds(path) > 3600
        elif job_id in running:
            worker = running[job_id]
            stale = live is not None and worker not in live and worker != keep_worker
        else:
            stale = True
        if stale:
            _remove(path)
            removed.append(name)
    if removed:
        logger.info("removed %d stale job work dir(s) under %s", len(removed), root)
    return removed


def clean_stale_uploads(directory: str | Path | None = None, max_age: float | None = None) -> int:
    """Remove Django temporary upload files older than ``max_age`` seconds (``STALE_UPLOAD_SECONDS``)."""
    directory = directory or getattr(settings, "FILE_UPLOAD_TEMP_DIR", None)
    if not directory or not Path(directory).is_dir():
        return 0
    max_age = float(max_age if max_age is not None else settings.STALE_UPLOAD_SECONDS)
    removed = 0
    for path in Path(directory).glob("*.upload*"):
        if path.is_file() and _age_seconds(path) > max_age:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _age_seconds(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass



def clean_host_temp(worker_name: str | None = None) -> None:
    """Worker maintenance loop (every worker, every host): stale job work dirs and upload temp files.

    Never raises: a cleanup problem must not stop the worker; the next run retries.
    """
    close_old_connections()
    try:
        clean_stale_workdirs(keep_worker=worker_name)
        clean_stale_uploads()
    except Exception:  # noqa: BLE001
        logger.exception("temporary file cleanup failed")
    finally:
        close_old_connections()
