"""Worker-level dynamic batching: the job a worker dequeued takes queued jobs of the same kind along.

How it works without touching RQ's bookkeeping: the dequeued job (the *leader*) claims up to ``B - 1`` other
queued jobs of its kind straight from the database in one statement (``services.start_batch``: ``FOR
UPDATE SKIP LOCKED``, so concurrent leaders take different jobs). Their RQ jobs are removed from the queue
and deleted (if one was already popped by another worker, ``start`` refuses it there: it is no longer
queued, so it is skipped).
The batch is decoded per job, run through the engine's batch call (``media_ops.watermark.embed_batch`` /
``detect_batch``, ``EmotionModel.analyze_batch``: results equal one-at-a-time within float tolerance), and
each companion is finished on its own (cache, output, ``succeed``); the leader's outcome goes back to
``jobs.worker.runner`` like a handler's.

* ``B`` is ``ModelPool.batch_size(family)``: ``BATCH_SIZE_<FAMILY>``, else 1 on CPU (measured: batching long
  clips is slower there) and ``BATCH_SIZE_CUDA`` on a GPU. With ``B == 1`` nothing here runs.
* The leader takes what is queued when it starts (one ``FOR UPDATE SKIP LOCKED`` claim); it never waits.
* A job that hit a CUDA out-of-memory error (``batch_size_limit == 1``) is never batched, and never leads.
* Failures stay per job: a companion whose input is missing or undecodable fails alone; if the engine call
  itself fails (e.g. out of memory), the companions are given back to the queue unbatched
  (``batch_size_limit=1``, attempt not counted) and the leader's error takes its normal path.
* Companions are registered with ``jobs.worker.heartbeat`` while the batch runs: the worker's one heartbeat
  thread writes their ``heartbeat_at`` together with the leader's, in one UPDATE.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from typing import Any

from redis import RedisError
from rq.job import Job as RQJob

from jobs import services
from jobs.kinds import spec
from jobs.models import Job, JobKind, JobStatus
from jobs.queues import get_queue
from jobs.worker import cache as result_cache
from jobs.worker import handlers, heartbeat
from jobs.worker.execution import build_context, record_outcome, settle_error
from jobs.worker.handlers import JobContext, Outcome

logger = logging.getLogger(__name__)

BATCH_HANDLERS: dict[str, str] = {
    JobKind.WATERMARK_EMBED: "watermark_embed_batch",
    JobKind.WATERMARK_DETECT: "watermark_detect_batch",
    JobKind.EMOTION: "emotion_analyze_batch",
}


def batch_size_for(job: Job, pool: Any) -> int:
    kind_spec = spec(job.kind)
    if job.kind not in BATCH_HANDLERS or not kind_spec.model_family or job.batch_size_limit == 1:
        return 1
    return max(1, int(pool.batch_size(kind_spec.model_family)))


def claim_companions(leader: Job, worker_name: str, limit: int) -> list[Job]:
    """Move up to ``limit`` queued jobs of the leader's kind to running here, oldest first: whatever is ready
    now (no waiting: the model should not idle for jobs that are not there). Their RQ jobs are removed from
    the queue and deleted in one round trip, so no other worker dequeues them only to skip them, and no RQ
    job hash is left behind in Redis."""
    claimed = services.start_batch(leader.kind, worker_name, limit, exclude=[leader.pk])
    if claimed:
        queue = get_queue(spec(leader.kind).queue)
        try:
            with queue.connection.pipeline(transaction=False) as pipe:
                for job in claimed:
                    pipe.lrem(queue.key, 0, job.rq_job_id)
                    pipe.delete(RQJob.key_for(job.rq_job_id))
                pipe.execute()
        except RedisError:  # the state machine already makes a stale RQ job a no-op; it expires on its own
            logger.warning("could not remove the RQ jobs of %d batched job(s)", len(claimed), exc_info=True)
    return claimed


def give_back(jobs: list[Job], reason: str) -> None:
    """Requeue companions that did not finish, unbatched, without counting the attempt against them."""
    for job in jobs:
        try:
            job.refresh_from_db()
            if job.status == JobStatus.RUNNING:
                services.retry(job, reason, "batch interrupted; running alone", delay=0, count_attempt=False,
                               batch_size_limit=1)
        except Exception:  # noqa: BLE001 - the reconciler recovers a companion we could not give back
            logger.exception("could not give batched job %s back", job.pk)


def run_with_companions(leader: Job, ctx: JobContext, worker_name: str) -> Outcome | None:
    """Run ``leader`` in a batch with queued jobs of its kind; None when there is nothing to batch with.

    Returns the leader's outcome (``jobs.worker.runner`` stores and records it as a handler's) or raises the leader's
    error; every companion is final, or back in the queue, before this returns or raises.
    """
    size = batch_size_for(leader, ctx.pool)
    if size <= 1:
        return None
    companions = claim_companions(leader, worker_name, size - 1)
    if not companions:
        return None
    logger.info("job %s runs in a batch with %d queued job(s)", leader.pk, len(companions))
    heartbeat.companions_started([j.pk for j in companions], worker_name)
    pending = list(companions)
    workdirs: list[Any] = []
    try:
        members: list[tuple[Job, JobContext, Any]] = [(leader, ctx, None)]
        for job in companions:
            try:
                job_ctx = build_context(job, ctx.pool)
                workdirs.append(job_ctx.workdir)
                key = result_cache.key_for(job, job_ctx.input_path, ctx.pool)
                if key is not None and result_cache.complete_from_cache(job, key):
                    pending.remove(job)
                    continue
                members.append((job, job_ctx, key))
            except Exception as exc:  # noqa: BLE001 - this companion alone
                settle_error(job, exc)
                pending.remove(job)
        batch_fn: Callable[..., list[Any]] = getattr(handlers, BATCH_HANDLERS[leader.kind])
        results = batch_fn([c for _, c, _ in members], size)  # an engine error propagates (handled below)
        for (job, _job_ctx, key), result in zip(members[1:], results[1:], strict=True):
            try:
                if isinstance(result, Exception):
                    raise result
                record_outcome(job, result, key)
            except Exception as exc:  # noqa: BLE001 - this companion alone
                settle_error(job, exc)
            pending.remove(job)
        leader_result = results[0]
        if isinstance(leader_result, Exception):
            raise leader_result
        return leader_result
    except BaseException:
        give_back(pending, "BATCH_INTERRUPTED")  # engine error, timeout, shutdown: the leader's path decides
        raise
    finally:
        heartbeat.companions_finished([j.pk for j in companions])
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)
