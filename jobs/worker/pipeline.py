"""A pipeline per worker process: the CPU work of a job runs beside the model, not in front of it.

The serial worker did decode → model → encode → bookkeeping for one job at a time, so the model idled
during every job's CPU work (~28 ms per 1 s clip on this project's CPU machine, more with MP3 output). Here
each worker process runs three stages on three threads:

* **prepare** (the RQ main thread, inside RQ's job and its timeout): the RQ job is dequeued and the job
  started as before (``jobs.worker.runner``), its input downloaded, the result cache asked, and the
  handler's ``prepare`` stage run (decode, resample). Queued jobs of the same kind are claimed along
  (``services.start_batch``, ``FOR UPDATE SKIP LOCKED``) when the family batches, so a backlog forms full
  batches without anybody waiting. The prepared jobs go on the *ready* list and the RQ job ends
  (``"pipelined"``): from here the database row, not RQ, says where the job is, as for batch companions.
* **model** (one thread per model lane: ``ModelPool.lanes``, 1 on CUDA, one per ``MODEL_THREADS`` thread
  on CPU): whenever a lane is free it takes the oldest ready job and the ready jobs of the same kind behind
  it, up to the pool's batch size (no sleep, no waiting window: what is ready now), and makes the handler's
  ``infer`` call (the engine's batch call: ``embed_batch``, ``detect_batch``,
  ``EmotionModel.analyze_batch``). Nothing else runs on these threads: no database, no Redis, no progress
  reports. torch releases the GIL inside its kernels, so the other stages (and the other lanes) really run
  meanwhile, and ``MODEL_THREADS`` bounds the model's threads in all (each lane has its share). On CPU two
  single-threaded lanes beat one two-threaded pass, for SEANet (whose passes split poorly over threads) and
  for emotion2vec alike (``media_ops.pool.resolve_lanes``). A pass that is alone (the other lanes idle,
  nothing else ready) takes every thread instead (``ModelPool.pass_threads``), so a lone job runs as fast
  as it would with one lane; the lane sets its own torch thread count before each pass (per thread in
  torch).
* **finish** (one thread): the handler's ``finish`` stage (encode, sign), the result cache, the output
  upload, then ONE transaction for the batch's successes (``services.succeed_many``: a constant number of
  statements, events published on commit); a failure is settled per job through the one error mapping
  (``jobs.worker.execution.settle_error``).

Back-pressure: the main thread dequeues the next RQ job only while fewer than ``depth`` jobs are in flight
(``WORKER_PIPELINE_DEPTH``, default twice the batch size per lane, at least 2 per lane: one in the model,
the next prepared),
so a busy worker leaves the rest of the queue to the other workers.

Reliability, stage by stage:

* Heartbeats: every job in flight is registered with ``jobs.worker.heartbeat`` (``pipelined_started``), so
  the one heartbeat thread keeps them all alive; a process killed with ``-9`` stops beating and the
  reconciler retries its jobs, as before.
* Timeouts: ``prepare`` runs under RQ's job timeout; afterwards each job carries its deadline (its kind's
  timeout from its start) and the pipeline fails it ``TIMEOUT`` when it is past it before or after the model
  call. A model call that never returns cannot be interrupted (no Python thread can be); the reconciler
  times such a job out from ``started_at``, as for any stuck worker.
* Cancellation: a canceled job is noticed at its progress reports and, at the latest, by the final write,
  which only moves jobs still running here (its output is deleted).
* Warm shutdown (SIGTERM): no new RQ job is taken; the pipeline drains for ``WORKER_SHUTDOWN_GRACE_SECONDS``
  and gives back whatever is left (``services.retry(count_attempt=False)``); a cold shutdown gives back at
  once.
* CUDA out of memory in a batch: every job of the batch is given back to run alone
  (``batch_size_limit=1``, attempt not counted); alone, the normal mapping retries it, then fails it.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import prefetch_related_objects
from django.utils import timezone
from rq.timeouts import JobTimeoutException

from core import log, metrics
from jobs import services
from jobs.kinds import spec
from jobs.models import Job, JobStatus
from jobs.worker import batching, heartbeat
from jobs.worker import cache as result_cache
from jobs.worker.execution import build_context, is_cuda_oom, save_output, settle_error
from jobs.worker.handlers import JobContext, Stages, stages_of

if TYPE_CHECKING:
    from collections.abc import Iterable

logger = logging.getLogger(__name__)
# "job … ended: <outcome>" lines use the runner's logger whichever thread ends the job, so one query by
# logger finds the end of every job, pipelined or not.
outcome_logger = logging.getLogger("jobs.worker.runner")

# TEST ONLY: callables ``listener(event, job_ids)`` told of each stage boundary, in the order it happens:
# "prepared" (main thread), "infer_start" / "infer_end" (model thread), "finished" (finishing thread).
# Tests see the overlap from the order of these events, not from timings.
listeners: list[Callable[[str, list[str]], None]] = []

_active: Pipeline | None = None


def active() -> Pipeline | None:
    """The pipeline of this worker process, while its worker runs (None: the serial path)."""
    return _active


def activate(pipeline: Pipeline | None) -> None:
    global _active
    _active = pipeline


def _tell(event: str, entries: Iterable[Entry]) -> None:
    if listeners:
        ids = [str(e.job.pk) for e in entries]
        for listener in list(listeners):
            listener(event, ids)


@dataclass(eq=False)
class Entry:
    """One job inside the pipeline, from its prepared input to its outcome."""

    job: Job
    ctx: JobContext
    stages: Stages
    cache_key: Any
    prepared: Any
    deadline: float  # time.monotonic() after which the job has outlived its kind's timeout
    batch_size: int  # at most this many jobs in its engine call (1 after a CUDA out-of-memory)
    inferred: Any = None  # what ``infer`` returned for it, or the exception it met
    released: bool = False  # its work dir, heartbeat and in-flight slot are given up


@dataclass(eq=False)
class Batch:
    """What the model thread hands to the finishing thread: jobs that shared one engine call (or none)."""

    entries: list[Entry]
    error: BaseException | None = None  # the engine call itself failed (concerns every entry)
    timed_out: bool = False  # past their deadline before the call: never ran
    infer_seconds: float = 0.0
    family: str = ""
    kinds: list[str] = field(default_factory=list)


class Pipeline:
    """The model and finishing threads of one worker process, and the jobs in flight between them."""

    def __init__(self, pool: Any, worker_name: str, *, depth: int = 0) -> None:
        self.pool = pool
        self.worker_name = worker_name
        largest = max(int(pool.batch_size("watermark")), int(pool.batch_size("emotion")), 1)
        self.lanes = max(1, int(pool.lanes))
        self.depth = depth if depth > 0 else max(2, 2 * largest) * self.lanes
        self.engine_calls = 0  # engine batch calls made (each runs ceil(windows / batch size) forward passes)
        self._cond = threading.Condition()
        self._ready: deque[Entry] = deque()
        self._in_flight: dict[str, Entry] = {}  # job id -> entry, from admission until settled
        self._passes_running = 0  # model lanes in a forward pass now
        self._finishing: queue.Queue[Batch | None] = queue.Queue()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._model_loop, name=f"pipeline-model-{lane}", daemon=True)
            for lane in range(self.lanes)
        ] + [threading.Thread(target=self._finish_loop, name="pipeline-finish", daemon=True)]
        for thread in self._threads:
            thread.start()

    # --- the main thread: admission ---------------------------------------------------------------------

    def in_flight(self) -> int:
        with self._cond:
            return len(self._in_flight)

    def wait_for_room(self, timeout: float) -> bool:
        """Block until fewer than ``depth`` jobs are in flight (True) or ``timeout`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._in_flight) < self.depth, timeout)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is in flight (True) or ``timeout`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._in_flight, timeout)

    def admit(self, job: Job, ctx: JobContext, cache_key: Any, stages: Stages) -> None:
        """Prepare ``job`` (started, input downloaded, cache missed) and queued jobs of its kind claimed along,
        then hand them all to the model thread together. Runs on the RQ main thread, inside the RQ job.

        The leader's own error propagates (``jobs.worker.runner`` settles it: one mapping); a companion's is
        settled alone. A shutdown or RQ timeout while companions are being prepared gives them back.
        """
        prefetch_related_objects([job], "tenant")  # the final write reads the tenant's webhook settings
        leader = self._prepare(job, ctx, cache_key, stages)
        room = self.depth - self.in_flight() - 1
        size = batching.batch_size_for(job, self.pool)
        companions = batching.claim_companions(job, self.worker_name, min(size - 1, room)) if size > 1 else []
        entries = [leader]
        if companions:
            logger.info("job %s takes %d queued job(s) along into the pipeline", job.pk, len(companions))
            entries += self._prepare_companions(companions, stages)
        with self._cond:
            for entry in entries:
                self._in_flight[str(entry.job.pk)] = entry
            heartbeat.pipelined_started([e.job.pk for e in entries], self.worker_name)
            self._ready.extend(entries)
            self._cond.notify_all()
        _tell("prepared", entries)

    def _prepare(self, job: Job, ctx: JobContext, cache_key: Any, stages: Stages) -> Entry:
        prepared = stages.prepare(ctx)
        elapsed = (timezone.now() - job.started_at).total_seconds() if job.started_at else 0.0
        return Entry(
            job=job, ctx=ctx, stages=stages, cache_key=cache_key, prepared=prepared,
            deadline=time.monotonic() + services.timeout_for(job.kind) - max(0.0, elapsed),
            batch_size=batching.batch_size_for(job, self.pool),
        )

    def _prepare_companions(self, companions: list[Job], stages: Stages) -> list[Entry]:
        heartbeat.companions_started([j.pk for j in companions], self.worker_name)
        prefetch_related_objects(companions, "tenant")
        entries: list[Entry] = []
        pending = list(companions)
        try:
            for job in companions:
                workdir = None
                try:
                    ctx = build_context(job, self.pool)
                    workdir = ctx.workdir
                    key = result_cache.key_for(job, ctx.input_path, self.pool)
                    if key is not None and result_cache.complete_from_cache(job, key):
                        shutil.rmtree(workdir, ignore_errors=True)
                    else:
                        entries.append(self._prepare(job, ctx, key, stages))
                except JobTimeoutException:
                    raise  # the leader's RQ timeout, not this companion's fault
                except Exception as exc:  # noqa: BLE001 - this companion alone
                    settle_error(job, exc)
                    if workdir is not None:
                        shutil.rmtree(workdir, ignore_errors=True)
                pending.remove(job)
        except BaseException:
            batching.give_back(pending + [e.job for e in entries], "BATCH_INTERRUPTED")
            for entry in entries:
                shutil.rmtree(entry.ctx.workdir, ignore_errors=True)
            raise
        finally:
            heartbeat.companions_finished([j.pk for j in companions])
        return entries

    # --- the model thread -------------------------------------------------------------------------------

    def _take_group(self) -> list[Entry]:
        """The oldest ready job and the ready jobs of its kind behind it, up to its batch size (lock held; the
        ready list is not empty)."""
        first = self._ready.popleft()
        group = [first]
        if first.batch_size > 1:
            for entry in list(self._ready):
                if len(group) >= first.batch_size:
                    break
                if entry.stages is first.stages and entry.batch_size > 1:
                    self._ready.remove(entry)
                    group.append(entry)
        return group

    def _model_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._ready) or self._stopping)
                if self._stopping:
                    return
                group = self._take_group()
                # Alone: no other lane busy and nothing else ready, so this pass may take every thread; a job
                # that turns up meanwhile starts on its lane's share (briefly more threads than cores).
                alone = not self._ready and self._passes_running == 0
                self._passes_running += 1
            try:
                self.pool.use_threads(self.pool.pass_threads(alone=alone))  # per thread in torch
                self._finishing.put(self._infer(group))
            except BaseException:  # noqa: BLE001 - the thread must survive; the finisher settles the jobs
                logger.exception("the pipeline's model stage failed")
                self._finishing.put(Batch(group, error=RuntimeError("model stage failed")))
            finally:
                with self._cond:
                    self._passes_running -= 1

    def _infer(self, group: list[Entry]) -> Batch:
        stages = group[0].stages
        batch = Batch(group, family=stages.family, kinds=[e.job.kind for e in group])
        now = time.monotonic()
        expired = [e for e in group if now > e.deadline]
        if expired:
            self._finishing.put(Batch(expired, timed_out=True, family=stages.family))
            group = [e for e in group if now <= e.deadline]
            batch.entries = group
        if not group:
            return batch
        delay = float(getattr(settings, "PIPELINE_TEST_MODEL_DELAY_SECONDS", 0) or 0)
        if delay > 0:
            time.sleep(delay)
        _tell("infer_start", group)
        started = time.perf_counter()
        try:
            outputs = stages.infer(self.pool, [e.prepared for e in group], group[0].batch_size)
            for entry, output in zip(group, outputs, strict=True):
                entry.inferred = output
        except Exception as exc:  # noqa: BLE001 - the whole call failed: the finisher settles every job
            batch.error = exc
        batch.infer_seconds = time.perf_counter() - started
        with self._cond:
            self.engine_calls += 1
        _tell("infer_end", group)
        return batch

    # --- the finishing thread ---------------------------------------------------------------------------

    def _finish_loop(self) -> None:
        try:
            while True:
                batch = self._finishing.get()
                if batch is None:
                    break
                try:
                    self._finish(batch)
                except Exception:  # noqa: BLE001 - e.g. the database is down: the reconciler recovers them
                    logger.exception("could not finish a batch of %d job(s)", len(batch.entries))
                    connection.close()
                finally:
                    self._settled(batch.entries)
        finally:
            connection.close()  # this thread's own connection, back to the pool

    def _finish(self, batch: Batch) -> None:
        if not batch.entries:
            return
        close_old_connections()  # a connection broken since the last batch is replaced, not reused
        successes: list[services.Success] = []
        # A job that is not succeeding is released BEFORE its state moves: a retry puts it back in the queue at
        # once, and this worker's main thread may take it again (same work dir, same id) right away.
        for entry in batch.entries:
            job = entry.job
            try:
                if batch.timed_out:
                    self._release(entry)
                    services.time_out(job, where={"worker_name": self.worker_name})
                elif batch.error is not None:
                    self._release(entry)
                    self._settle_engine_error(entry, batch)
                elif isinstance(entry.inferred, Exception):
                    self._release(entry)
                    settle_error(job, entry.inferred)
                else:
                    success = self._outcome(entry)
                    if success is not None:
                        successes.append(success)
            except Exception as exc:  # noqa: BLE001 - this job alone (encode, upload, ...)
                self._release(entry)
                settle_error(job, exc)
        if batch.infer_seconds:
            for kind in set(batch.kinds):
                metrics.observe_inference(kind, batch.family, batch.infer_seconds)
        services.succeed_many(successes, worker_name=self.worker_name)
        for entry in batch.entries:
            job = entry.job
            with log.context(job_id=str(job.pk), tenant_id=str(job.tenant_id)):
                outcome_logger.info("job %s ended: %s", job.pk, job.status, extra={"outcome": job.status})
            # the duration histogram for every job that ended here (a given-back one: when it ends for good)
            if job.is_final and job.started_at and job.finished_at:
                seconds = max(0.0, (job.finished_at - job.started_at).total_seconds())
                metrics.observe_job_duration(job.kind, job.status, seconds)
        _tell("finished", batch.entries)

    def _settle_engine_error(self, entry: Entry, batch: Batch) -> None:
        if is_cuda_oom(batch.error) and len(batch.entries) > 1:  # the batch was too big: each runs alone
            services.retry(entry.job, "RESOURCE_LIMIT", "batch ran out of GPU memory; running alone", delay=0,
                           count_attempt=False, batch_size_limit=1, where={"worker_name": self.worker_name})
        else:
            settle_error(entry.job, batch.error)

    def _outcome(self, entry: Entry) -> services.Success | None:
        """The job's finish stage, result cache and output upload; None when it timed out meanwhile."""
        job = entry.job
        outcome = entry.stages.finish(entry.ctx, entry.prepared, entry.inferred)
        if time.monotonic() > entry.deadline:
            self._release(entry)
            services.time_out(job, where={"worker_name": self.worker_name})
            return None
        result = outcome.result
        if entry.cache_key is not None:
            result = result_cache.remember(job, entry.cache_key, result)
        output_name = ""
        if outcome.output_path is not None:
            output_name = save_output(f"outputs/{job.tenant_id}/{job.id}/{outcome.output_path.name}",
                                      outcome.output_path)
        return services.Success(
            job=job, result=result, model_name=outcome.model_name, model_version=outcome.model_version,
            output_file=output_name, output_filename=outcome.output_filename,
            output_content_type=outcome.output_content_type, audio_seconds=outcome.audio_seconds,
        )

    def _release(self, entry: Entry) -> None:
        """Give up the job's work dir, heartbeat and in-flight slot (once). Only the entry itself is removed:
        the same job id may already be in flight again as a new attempt."""
        if entry.released:
            return
        entry.released = True
        shutil.rmtree(entry.ctx.workdir, ignore_errors=True)
        key = str(entry.job.pk)
        with self._cond:
            if self._in_flight.get(key) is entry:
                del self._in_flight[key]
                heartbeat.pipelined_finished([key])
            self._cond.notify_all()

    def _settled(self, entries: list[Entry]) -> None:
        for entry in entries:
            self._release(entry)

    # --- shutdown ---------------------------------------------------------------------------------------

    def give_back(self, reason: str = "WORKER_SHUTDOWN") -> int:
        """Put every job still in flight back in the queue, attempt not counted (a worker stopping is not the
        job's fault). A job inside the model call is given back too: when the call returns, the final write
        finds it no longer running here and discards the output. Returns how many were given back."""
        with self._cond:
            ids = list(self._in_flight)
            self._ready.clear()
        if not ids:
            return 0
        given = 0
        for row in Job.objects.filter(pk__in=ids, status=JobStatus.RUNNING, worker_name=self.worker_name[:200]):
            try:
                if services.retry(row, reason, "worker shut down", delay=0, count_attempt=False,
                                  where={"worker_name": self.worker_name[:200]}):
                    given += 1
            except Exception:  # noqa: BLE001 - the reconciler recovers a job we could not give back
                logger.exception("could not give job %s back", row.pk)
        heartbeat.pipelined_finished(ids)
        logger.warning("gave %d job(s) in the pipeline back to the queue", given)
        return given

    def stop(self, wait: float = 2.0) -> None:
        """Stop the threads (after a drain or a give-back: whatever they still hold is no longer ours)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._finishing.put(None)
        for thread in self._threads:
            thread.join(wait)


def kind_stages(job: Job) -> Stages | None:
    """The stages of ``job``'s handler when it declares them (the model kinds); None: it runs whole.

    Looked up through the kind's handler path at call time, like the runner does, so a handler replaced
    in a test (a plain function, no stages) runs whole on the main thread."""
    module, _, func = spec(job.kind).handler.rpartition(".")
    return stages_of(getattr(import_module(module), func))
