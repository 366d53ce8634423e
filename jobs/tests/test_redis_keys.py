"""Redis does not grow with the jobs run: after N and after 2N jobs of each cheap kind through the real worker,
the same keys are left, all of them bounded ones (queues and registries, metrics, worker presence, rate-limit
windows, the request-log buffer), none named after a job.

The database is the truth about a job; RQ's record of a finished run is deleted at once (``result_ttl=0``,
``jobs.services.RQ_RESULT_TTL``) and batched companions' RQ jobs are deleted when a leader claims them. An RQ
job hash kept for an hour per job (the former ``result_ttl=3600``) makes this test fail, and so would a
companion's hash left behind without an expiry.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import soundfile

from jobs.models import Job
from media_ops import audio
from testing.uploads import FIXTURES, upload

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINTS = {  # the cheap kinds with the demo models (beat-sync renders a video, the report runs 31 detections)
    "watermark_embed": "/api/v1/watermark/embed",
    "watermark_detect": "/api/v1/watermark/detect",
    "emotion": "/api/v1/emotion/analyze",
}
# Keys a deployment keeps whatever it runs: one per queue, registry, metric, worker, API key (the rate-limit
# window) or buffer, and the reconciler's lock.
BOUNDED = re.compile(
    r"^(rq:(queues|clean_groups|queue:\w+|workers(:\w+)?|worker:\w+|(wip|finished|failed|deferred|scheduled|canceled):\w+)"
    r"|request-log:pending|audioseal:((metrics|ratelimit|worker):[\w:-]+|workers|reconcile:lock))$"
)


@pytest.fixture
def unlimited(tenant):
    from billing import services as billing

    billing.change_subscription(tenant, overrides={
        "max_concurrent_jobs": 1000, "included_minutes": 10**6,
        "rate_limits": {family: 10**6 for family in ("watermark", "emotion", "media", "read", "default")},
    })


@pytest.fixture
def batching(settings):
    """Batches of up to 4 in both model families: leaders run through RQ, companions are claimed from the
    database and their RQ jobs deleted (``jobs.worker.batching``)."""
    from jobs.worker.pool import reset_pool

    settings.BATCH_SIZE_WATERMARK = 4
    settings.BATCH_SIZE_EMOTION = 4
    reset_pool()
    yield
    reset_pool()


def _clip(seed: int) -> bytes:
    """A distinct 0.5 s speech clip (distinct bytes: no result-cache hit stands in for a run)."""
    samples, rate = audio.decode(FIXTURES / "speech_16k_mono.wav")
    rng = np.random.default_rng(seed)
    n = rate // 2
    start = int(rng.integers(0, samples.shape[-1] - n))
    clip = samples[:, start : start + n] * rng.uniform(0.5, 1.0)
    buffer = io.BytesIO()
    soundfile.write(buffer, clip.T.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _run_jobs(api_client, run_worker, count: int, seed: int) -> list[str]:
    ids = []
    for i in range(count):
        for kind, path in ENDPOINTS.items():
            data = {"message": "1A2B"} if kind == "watermark_embed" else {}
            response = api_client.post(
                path, {"file": upload(f"{kind}-{seed}-{i}.wav", content=_clip(seed * 1000 + i)), **data},
                format="multipart",
            )
            assert response.status_code == 202, response.json()
            ids.append(response.json()["id"])
    run_worker()
    statuses = dict(Job.objects.filter(pk__in=ids).values_list("id", "status"))
    assert set(statuses.values()) == {"succeeded"}, statuses
    return ids


def _keys(redis) -> dict[str, int]:
    """Every key (SCAN, never KEYS) with its TTL (-1: none)."""
    return {key.decode(): redis.ttl(key) for key in redis.scan_iter(count=1000)}


def test_redis_keys_do_not_grow_with_the_jobs_run(api_client, unlimited, batching, run_worker, redis_clean):
    n = 4
    first = _run_jobs(api_client, run_worker, n, seed=1)
    after_n = _keys(redis_clean)
    second = _run_jobs(api_client, run_worker, n, seed=2)
    after_2n = _keys(redis_clean)

    assert len(first) == len(second) == n * len(ENDPOINTS)
    # Each run_worker() is a new RQ worker with a new name: compare key names with worker names masked.
    def shape(keys: dict[str, int]) -> set[str]:
        return {re.sub(r"^rq:worker:.*", "rq:worker:<name>", key) for key in keys}

    assert shape(after_2n) == shape(after_n), sorted(shape(after_2n) ^ shape(after_n))
    job_ids = set(first) | set(second)
    rq_ids = set(Job.objects.filter(pk__in=job_ids).values_list("rq_job_id", flat=True))
    named_after_a_job = [k for k in after_2n if any(i in k for i in job_ids | rq_ids)]
    assert not named_after_a_job, named_after_a_job
    unbounded = [k for k in after_2n if not BOUNDED.match(k)]
    assert not unbounded, (unbounded, sorted(after_2n.items()))


def test_a_heartbeat_after_rqs_cleanup_does_not_bring_the_execution_key_back(redis_clean):
    """RQ refreshes a run's execution key with an HSET, which recreates the key if RQ deleted it a moment
    before: the heartbeat thread refreshing the run that the main thread is closing left an orphan
    ``rq:execution:*`` key (1 in 2,000 jobs in a benchmark). After ``cleanup_execution`` the worker's refresh
    must be a no-op; the control shows the race is real (RQ's own refresh brings the key back)."""
    import django_rq

    from jobs.worker.rq_worker import PoolWorker

    queue = django_rq.get_queue("maintenance")
    connection = queue.connection
    worker = PoolWorker([queue], connection=connection, name="w-heartbeat-race")
    worker.register_birth()
    try:
        rq_job = queue.enqueue("math.sqrt", 4)
        execution = worker.prepare_execution(rq_job)
        worker.running = (rq_job, execution)
        assert connection.exists(execution.key)

        with connection.pipeline() as pipe:  # what RQ does when the run ends
            worker.cleanup_execution(rq_job, pipe, execution)
            pipe.execute()
        assert not connection.exists(execution.key)

        worker.beat_running_execution()  # the heartbeat thread's next tick
        assert not connection.exists(execution.key)

        worker.maintain_heartbeats(rq_job, execution)  # control: RQ's refresh of a cleaned-up run
        assert connection.exists(execution.key)
    finally:
        connection.delete(execution.key)
        worker.register_death()
