"""Worker presence: each worker process publishes who it is, what it serves and what it has loaded.

A worker's ``WorkerHeartbeat`` thread stores a small JSON document (queues, state, ``pool.describe()``) in
Redis every ``WORKER_HEARTBEAT_SECONDS``, under a key that expires after ``WORKER_PRESENCE_TTL_SECONDS``. A
worker killed with -9 stops refreshing its key and disappears within the TTL; one that stops cleanly deletes
its key at once. The thread keeps beating while a long job runs in the main thread (RQ's own worker
heartbeat does not, for an in-process ``SimpleWorker``), so "alive" means the process is up, not idle.
``/readyz`` and ``/metrics`` (the site package) read ``live_workers``.

This is presence of the *process*; ``jobs.worker.heartbeat`` keeps the *job* alive in the database.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings

from core.redis import client as redis_client

logger = logging.getLogger(__name__)

WORKERS_INDEX = "audioseal:workers"
WORKER_KEY = "audioseal:worker:{name}"



def publish_heartbeat(connection: redis.Redis, name: str, document: dict[str, Any], ttl: int) -> None:
    """Store one worker's heartbeat document; it expires unless refreshed within ``ttl`` seconds."""
    with connection.pipeline() as pipe:
        pipe.set(WORKER_KEY.format(name=name), json.dumps(document), ex=max(1, int(ttl)))
        pipe.sadd(WORKERS_INDEX, name)
        pipe.execute()


def remove_heartbeat(connection: redis.Redis, name: str) -> None:
    """Forget a worker at once (clean shutdown)."""
    with connection.pipeline() as pipe:
        pipe.delete(WORKER_KEY.format(name=name))
        pipe.srem(WORKERS_INDEX, name)
        pipe.execute()


def live_workers(connection: redis.Redis | None = None) -> list[dict[str, Any]]:
    """The heartbeat documents of the workers alive now; names whose key expired are pruned."""
    connection = connection or redis_client()
    names = sorted(n.decode() if isinstance(n, bytes) else n for n in connection.smembers(WORKERS_INDEX))
    if not names:
        return []
    docs = connection.mget([WORKER_KEY.format(name=n) for n in names])
    dead = [n for n, doc in zip(names, docs, strict=True) if doc is None]
    if dead:
        connection.srem(WORKERS_INDEX, *dead)
    return [{**json.loads(doc), "name": n} for n, doc in zip(names, docs, strict=True) if doc is not None]


class WorkerHeartbeat:
    """A daemon thread that publishes ``describe()`` for a worker until stopped.

    ``describe`` is called on every beat so the document shows models loaded after start and the worker's
    current state. Redis errors are logged and retried on the next beat: a Redis restart must not kill it.
    """

    def __init__(
        self,
        connection: redis.Redis,
        name: str,
        describe: Callable[[], dict[str, Any]],
        interval: float | None = None,
        ttl: int | None = None,
    ) -> None:
        self.connection = connection
        self.name = name
        self.describe = describe
        self.interval = float(interval if interval is not None else settings.WORKER_HEARTBEAT_SECONDS)
        self.ttl = int(ttl if ttl is not None else settings.WORKER_PRESENCE_TTL_SECONDS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)
        self._failing = False

    def beat(self) -> None:
        document = {**self.describe(), "name": self.name, "seen_at": time.time()}
        try:
            publish_heartbeat(self.connection, self.name, document, self.ttl)
        except redis.RedisError as exc:
            if not self._failing:
                logger.warning("worker heartbeat failed (will retry): %s", exc)
            self._failing = True
        else:
            if self._failing:
                logger.info("worker heartbeat restored")
            self._failing = False

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the heartbeat thread must never die
                logger.exception("worker heartbeat error")

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            remove_heartbeat(self.connection, self.name)
        except redis.RedisError:
            pass  # the key expires on its own


def worker_document(worker: Any) -> dict[str, Any]:
    """What a PoolWorker publishes: where it runs, its queues, its state and its model pool."""
    pool = getattr(worker, "pool", None)
    return {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "queues": list(worker.queue_names()),
        "state": str(getattr(worker, "_state", "") or ""),
        "pool": pool.describe() if pool is not None else {},
    }
