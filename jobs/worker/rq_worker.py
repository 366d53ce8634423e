"""The RQ worker that runs jobs in-process next to a warm model pool.

RQ's default worker forks a child per job, which would reload the models every time and breaks CUDA
(CUDA state does not survive ``fork()``). ``PoolWorker`` is RQ's ``SimpleWorker`` (no fork) that loads the
pool for its queues before taking the first job and runs one job at a time. ``PipelineWorker`` (the default,
``WORKER_PIPELINE``) adds the pipeline of ``jobs.worker.pipeline``: it hands each prepared model job to a
model thread and dequeues the next while the model runs, and drains (or gives back) what is in flight when
it stops.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import django_rq
from django.conf import settings
from rq import SimpleWorker
from rq.worker import WorkerStatus

from jobs.kinds import KINDS
from jobs.worker import heartbeat, pipeline
from jobs.worker.pool import get_pool
from jobs.worker.presence import WorkerHeartbeat, worker_document
from jobs.worker.workdirs import clean_host_temp, clean_stale_workdirs

logger = logging.getLogger(__name__)


def families_for(queues: list[str]) -> list[str]:
    return sorted({s.model_family for s in KINDS.values() if s.queue in queues and s.model_family})


class PoolWorker(SimpleWorker):
    """SimpleWorker that warms the model pool for its queues at start."""

    def __init__(self, queues, *args, **kwargs) -> None:
        super().__init__(queues, *args, **kwargs)
        self.pool = get_pool()
        self.pool.preload(families_for([q.name for q in self.queues]))
        self.running = None  # (rq job, execution) while a job runs: the heartbeat thread refreshes its TTLs
        # Held while the heartbeat thread refreshes the running execution and while RQ cleans it up: RQ's
        # refresh is an HSET, which would recreate an execution key deleted a moment before (an orphan key
        # per such race: one in 2,000 jobs was left in a benchmark).
        self._running_lock = threading.Lock()
        self._shutdown_timer = None

    # --- liveness, periodic reconciliation and graceful shutdown (jobs.worker.heartbeat) ---------------------------

    def work(self, burst: bool = False, *args, **kwargs) -> bool:
        """Run the RQ loop with the heartbeat thread (and, unless bursting, the reconciler thread) alive."""
        threads: list = [heartbeat.Heartbeat(self)]
        if not burst and settings.RECONCILE_IN_WORKER:
            threads.append(heartbeat.Maintenance(self.name))
        for thread in threads:
            thread.start()
        try:
            return super().work(burst, *args, **kwargs)
        finally:
            if self._shutdown_timer is not None:
                self._shutdown_timer.cancel()
            for thread in threads:
                thread.stop()

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        heartbeat.install_shutdown_handler()

    def request_stop(self, signum, frame) -> None:
        """Warm shutdown: finish the current job, but requeue it if it outlasts the shutdown grace."""
        busy = self.get_state() == WorkerStatus.BUSY
        super().request_stop(signum, frame)  # raises StopRequested when idle
        if busy and self._shutdown_timer is None:
            self._shutdown_timer = heartbeat.interrupt_after(settings.WORKER_SHUTDOWN_GRACE_SECONDS)

    def execute_job(self, job, queue) -> None:
        """SimpleWorker.execute_job, remembering the execution for the heartbeat thread."""
        execution = self.prepare_execution(job)
        self.running = (job, execution)
        try:
            self.perform_job(job, queue, execution)
        finally:
            with self._running_lock:
                self.running = None
        self.set_state(WorkerStatus.IDLE)

    def beat_running_execution(self) -> None:
        """Refresh RQ's TTLs of the job running now, if any (the heartbeat thread): never one RQ has cleaned up."""
        with self._running_lock:
            if self.running is not None:
                rq_job, execution = self.running
                self.maintain_heartbeats(rq_job, execution)

    def cleanup_execution(self, job, pipeline, execution=None) -> None:
        """RQ's cleanup of a run (queued on ``pipeline``), after which the heartbeat thread leaves it alone."""
        with self._running_lock:
            self.running = None
        super().cleanup_execution(job, pipeline, execution)

    # --- presence for /readyz and /metrics, temp file cleanup (jobs.worker.presence, jobs.worker.workdirs) ------

    def register_birth(self) -> None:
        """Also clean what a crashed worker left on this host, and start publishing our presence."""
        super().register_birth()
        try:
            clean_stale_workdirs(keep_worker=self.name)
        except Exception:  # noqa: BLE001 - a cleanup problem must not stop the worker from starting
            logger.exception("stale work dir cleanup failed")
        self.presence = WorkerHeartbeat(self.connection, self.name, lambda: worker_document(self))
        self.presence.start()

    def register_death(self) -> None:
        presence = getattr(self, "presence", None)
        if presence is not None:
            presence.stop()  # gone from /readyz at once, not after the TTL
        super().register_death()

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        clean_host_temp(self.name)  # stale temp files of this host; never raises


class PipelineWorker(PoolWorker):
    """PoolWorker whose model jobs go through a pipeline (``jobs.worker.pipeline``) instead of one at a time.

    RQ stays the queue and the main thread stays RQ's loop: it dequeues, starts and prepares a job and
    hands it over, then dequeues the next while the model runs, as long as fewer than the pipeline's depth
    are in flight (back-pressure: the rest of the queue is for other workers). Stopping: warm (SIGTERM)
    drains the pipeline for ``WORKER_SHUTDOWN_GRACE_SECONDS`` and gives back what is left; cold (second
    signal) gives back at once; in burst mode the worker waits for the pipeline before it decides the
    queues are empty (a job the pipeline retried is back in the queue by then).
    """

    def __init__(self, queues, *args, **kwargs) -> None:
        super().__init__(queues, *args, **kwargs)
        self.pipeline: pipeline.Pipeline | None = None
        self._cold_shutdown = False

    def work(self, burst: bool = False, *args, **kwargs) -> bool:
        self.pipeline = pipeline.Pipeline(self.pool, self.name, depth=settings.WORKER_PIPELINE_DEPTH)
        pipeline.activate(self.pipeline)
        # torch takes the GIL back after each op; with the CPU stages running Python meanwhile, a short
        # switch interval keeps the model thread from waiting up to 5 ms per op (settings.py, measured).
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(float(settings.WORKER_PIPELINE_SWITCH_INTERVAL) or switch_interval)
        try:
            return super().work(burst, *args, **kwargs)
        finally:
            sys.setswitchinterval(switch_interval)
            pipeline.activate(None)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """RQ's dequeue, once the pipeline has room; in burst mode (``timeout`` None) an empty queue counts
        only once the pipeline is idle too."""
        while not self.pipeline.wait_for_room(timeout=1.0):
            self.heartbeat()  # RQ's own worker key stays fresh while we hold back
        while True:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            if result is not None or timeout is not None or not self.pipeline.in_flight():
                return result
            self.pipeline.wait_idle()

    def request_force_stop(self, signum, frame) -> None:
        self._cold_shutdown = True
        super().request_force_stop(signum, frame)

    def teardown(self) -> None:
        """Before RQ's teardown (and before the heartbeat thread stops): drain or give back the pipeline."""
        pipe = self.pipeline
        if pipe is not None:
            try:
                if self._cold_shutdown or not self._drain(pipe):
                    pipe.give_back()
            finally:
                pipe.stop()
        super().teardown()

    def _drain(self, pipe: pipeline.Pipeline) -> bool:
        deadline = time.monotonic() + float(settings.WORKER_SHUTDOWN_GRACE_SECONDS)
        while pipe.in_flight():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            pipe.wait_idle(min(1.0, left))
            self.heartbeat()
        return True


def build_worker(queue_names: list[str], name: str | None = None) -> PoolWorker:
    """The worker ``manage.py run_worker`` and the tests run: pipelined unless ``WORKER_PIPELINE`` is off."""
    queues = [django_rq.get_queue(q) for q in queue_names]
    worker_class = PipelineWorker if settings.WORKER_PIPELINE else PoolWorker
    return worker_class(queues, connection=queues[0].connection, name=name)


def default_queues() -> list[str]:
    return list(settings.RQ_QUEUES)
