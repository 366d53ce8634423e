"""Job-update notifications over Redis pub/sub, so ``?wait=N`` blocks instead of polling the database.

The worker publishes on ``job:<id>`` after every committed status change. A waiting request subscribes
first, then reads the row once (so an update that landed before the subscription is not missed), releases
its database connection, and blocks on the subscription until a final status arrives or time runs out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import redis

from core.redis import client as redis_client


def client() -> redis.Redis:
    """The long-poll profile: a read timeout longer than any ``?wait``."""
    return redis_client("pubsub")


def channel(job_id) -> str:
    return f"audioseal:job:{job_id}"


def publish(job_id, status: str, progress: int) -> None:
    try:
        client().publish(channel(job_id), json.dumps({"status": status, "progress": progress}))
    except redis.RedisError:  # a lost notification only shortens a wait; the database is the truth
        pass


def publish_many(updates: list[tuple[object, str, int]]) -> None:
    """``publish`` for several jobs in one round trip (a batch that started together)."""
    try:
        with client().pipeline(transaction=False) as pipe:
            for job_id, status, progress in updates:
                pipe.publish(channel(job_id), json.dumps({"status": status, "progress": progress}))
            pipe.execute()
    except redis.RedisError:
        pass


def wait_for_final(job_id, timeout: float, is_final: Callable[[], bool]) -> None:
    """Block until ``is_final()`` holds after a notification, or ``timeout`` seconds pass."""
    from django.db import close_old_connections, connection

    if timeout <= 0:
        return
    pubsub = client().pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel(job_id))
        if is_final():
            return
        if not connection.in_atomic_block:
            connection.close()  # don't hold a database connection while we sleep on Redis
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=min(remaining, 5.0))
            if message is None:
                continue
            status = json.loads(message["data"]).get("status")
            if status in ("succeeded", "failed", "canceled"):
                return
    except redis.RedisError:
        return
    finally:
        try:
            pubsub.close()
        except redis.RedisError:
            pass
        close_old_connections()
