"""Worker liveness that survives a long model call, periodic reconciliation, and graceful shutdown.

RQ's ``SimpleWorker`` runs the job in the main thread and sends no heartbeat until it returns, so a 10-minute
forward pass looks exactly like a dead worker. ``Heartbeat`` is a daemon thread of the worker process that,
every ``WORKER_HEARTBEAT_SECONDS`` while a job runs, writes ``Job.heartbeat_at`` of it and of its batch
companions (one UPDATE) (the database is what the
reconciler trusts) and refreshes the worker's, the execution's and the RQ job's TTLs in Redis. A thread keeps
beating while the main thread sits in a C call (torch releases the GIL); a process killed with ``-9`` stops
beating, which is exactly the signal the reconciler needs.

``Maintenance`` is a second daemon thread that runs ``jobs.upkeep.reconcile.run_once`` every
``RECONCILE_INTERVAL_SECONDS`` in at most one process at a time (a Redis lock), so any running worker is also
the periodic reconciler and no extra process is needed (``manage.py reconcile`` does the same on demand).

Graceful shutdown: the first SIGTERM lets the current job finish (RQ's warm shutdown); if it is still running
``WORKER_SHUTDOWN_GRACE_SECONDS`` later, the main thread is interrupted with ``WorkerShutdown`` (via SIGUSR1)
and ``jobs.worker.runner`` puts the job back in the queue before the process exits.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.upkeep import reconcile

logger = logging.getLogger(__name__)

RECONCILE_LOCK_KEY = "audioseal:reconcile:lock"
SHUTDOWN_SIGNAL = signal.SIGUSR1


class WorkerShutdown(BaseException):  # noqa: N818 - BaseException so that `except Exception` cannot swallow it
    """Raised in the main thread when the worker must stop before its current job finished."""


@dataclass(frozen=True)
class CurrentJob:
    job_id: str
    worker_name: str


_lock = threading.Lock()
_current: CurrentJob | None = None  # the job RQ handed us (the batch leader)
_companions: dict[str, str] = {}  # batch companions running here: job id -> worker name
# Jobs handed to this process's pipeline (jobs.worker.pipeline): they outlive the RQ job that started them,
# so ``job_finished`` (the RQ job's end) leaves them alone; the pipeline removes each when it is settled.
_pipelined: dict[str, str] = {}


def job_started(job_id, worker_name: str) -> None:
    """Called by the task once the job is ``running`` here: the heartbeat covers it from now on."""
    global _current
    with _lock:
        _current = CurrentJob(str(job_id), worker_name)


def job_finished() -> None:
    global _current
    with _lock:
        _current = None
        _companions.clear()


def companions_started(job_ids, worker_name: str) -> None:
    """Batching claimed these jobs to run with the current one: the same heartbeat keeps them alive."""
    with _lock:
        _companions.update({str(j): worker_name for j in job_ids})


def companions_finished(job_ids) -> None:
    with _lock:
        for job_id in job_ids:
            _companions.pop(str(job_id), None)


def pipelined_started(job_ids, worker_name: str) -> None:
    """The pipeline took these jobs over: the heartbeat keeps them alive until ``pipelined_finished``."""
    with _lock:
        _pipelined.update({str(j): worker_name for j in job_ids})


def pipelined_finished(job_ids) -> None:
    with _lock:
        for job_id in job_ids:
            _pipelined.pop(str(job_id), None)


def current_job() -> CurrentJob | None:
    with _lock:
        return _current


def running_here() -> list[CurrentJob]:
    """Every job this process is running now: the current one, its batch companions and the pipeline's."""
    with _lock:
        jobs = [CurrentJob(j, w) for j, w in {**_pipelined, **_companions}.items()]
        return ([_current] if _current is not None else []) + jobs


def beat_jobs(jobs: list[CurrentJob]) -> int:
    """Record that ``jobs`` are alive, in one UPDATE per worker name (one, in practice); returns how many
    were still running here (a canceled or taken-away job is not touched)."""
    by_worker: dict[str, list[str]] = {}
    for job in jobs:
        by_worker.setdefault(job.worker_name, []).append(job.job_id)
    now = timezone.now()
    return sum(
        Job.objects.filter(pk__in=ids, status=JobStatus.RUNNING, worker_name=worker[:200]).update(heartbeat_at=now)
        for worker, ids in by_worker.items()
    )


class _Loop(threading.Thread):
    """A daemon thread calling ``tick`` every ``interval`` seconds until stopped; closes its DB connection."""

    def __init__(self, name: str, interval: float) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = max(0.05, float(interval))
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - a hiccup (DB restart, Redis blip) must not kill the thread
                    logger.exception("%s tick failed", self.name)
                    connection.close()  # reconnect on the next tick
        finally:
            connection.close()

    def tick(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self, wait: float = 5.0) -> None:
        self._stopped.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(wait)


class Heartbeat(_Loop):
    def __init__(self, worker, interval: float | None = None) -> None:
        super().__init__("job-heartbeat", settings.WORKER_HEARTBEAT_SECONDS if interval is None else interval)
        self.worker = worker

    def tick(self) -> None:
        jobs = running_here()
        if not jobs:
            return
        beat_jobs(jobs)
        # keep RQ's view consistent too (worker key, execution, started registry)
        self.worker.beat_running_execution()


class Maintenance(_Loop):
    def __init__(self, worker_name: str, interval: float | None = None) -> None:
        super().__init__("reconciler", settings.RECONCILE_INTERVAL_SECONDS if interval is None else interval)
        self.worker_name = worker_name

    def tick(self) -> None:
        reconcile.run_once_locked(owner=self.worker_name, ttl=self.interval)


def install_shutdown_handler() -> None:
    """SIGUSR1 interrupts the current job with ``WorkerShutdown`` (only while a job is running here)."""

    def handler(signum, frame) -> None:
        if current_job() is not None:
            raise WorkerShutdown("worker shutting down")

    signal.signal(SHUTDOWN_SIGNAL, handler)


def interrupt_after(seconds: float) -> threading.Timer:
    """Send ourselves SIGUSR1 after ``seconds`` unless cancelled (the job finished in time)."""

    def fire() -> None:
        if current_job() is not None:
            logger.warning("shutdown grace of %ss is over: requeueing the current job", seconds)
            os.kill(os.getpid(), SHUTDOWN_SIGNAL)

    timer = threading.Timer(max(0.0, seconds), fire)
    timer.daemon = True
    timer.start()
    return timer
