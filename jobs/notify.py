"""Job-update notifications over Redis pub/sub, so ``?wait=N`` blocks instead of polling the database.

The worker publishes on ``job:<id>`` after every committed status change. A waiting request subscribes
first, then reads the row once (so an update that landed before the subscription is not missed), releases
its database connection, and waits on the subscription until a final status arrives or time runs out.

Two ways to wait:

* ``wait_for_final`` (sync, WSGI): a subscription per waiting request, blocking its thread.
* ``watching`` (asyncio, ASGI): every waiting request of an event loop shares one ``PSUBSCRIBE`` connection
  (``_Listener``), open while anyone waits; a wait is a future in a dict, so it costs no thread, no database
  connection and no Redis connection of its own. Every web process then receives every job's status changes
  (a few per job) while it has a waiter, and ignores those nobody waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable

import redis

from core.redis import async_client
from core.redis import client as redis_client

logger = logging.getLogger(__name__)

FINAL = ("succeeded", "failed", "canceled")
CHANNEL_PREFIX = "audioseal:job:"


def client() -> redis.Redis:
    """The long-poll profile: a read timeout longer than any ``?wait``."""
    return redis_client("pubsub")


def channel(job_id) -> str:
    return f"{CHANNEL_PREFIX}{job_id}"


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
            if _status(message["data"]) in FINAL:
                return
    except redis.RedisError:
        return
    finally:
        try:
            pubsub.close()
        except redis.RedisError:
            pass
        close_old_connections()


def _status(data) -> str | None:
    try:
        return json.loads(data).get("status")
    except (ValueError, AttributeError):
        return None


class _Listener:
    """One ``PSUBSCRIBE audioseal:job:*`` connection for an event loop, shared by all its waits.

    The connection opens with the first wait and closes with the last. A wait registers a future under its
    job's channel; a final status on that channel resolves it. If the connection fails, every wait is
    resolved at once (it re-reads the job and answers what it has, as the sync path does) and the next wait
    opens a new connection.
    """

    def __init__(self) -> None:
        self.waiters: dict[str, set[asyncio.Future]] = {}
        self.task: asyncio.Task | None = None
        self.ready: asyncio.Future | None = None

    async def add(self, name: str) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        if self.task is None:
            self.ready = loop.create_future()
            # A context of its own: the task outlives the request that happened to start it.
            self.task = loop.create_task(self._run(self.ready), context=contextvars.Context())
        future = loop.create_future()
        self.waiters.setdefault(name, set()).add(future)
        try:
            await asyncio.shield(self.ready)  # subscribed from here on
        except BaseException:
            self.remove(name, future)
            raise
        return future

    def remove(self, name: str, future: asyncio.Future) -> None:
        futures = self.waiters.get(name)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self.waiters[name]
        if not self.waiters and self.task is not None:
            self.task.cancel()
            self.task = self.ready = None

    async def _run(self, ready: asyncio.Future) -> None:
        pubsub = async_client("pubsub").pubsub()
        try:
            await pubsub.psubscribe(f"{CHANNEL_PREFIX}*")
            while True:
                # Not forever: returning every few seconds lets the client ping an idle connection.
                message = await pubsub.get_message(timeout=5.0)
                if message is None:
                    continue
                if message["type"] == "psubscribe":
                    if not ready.done():
                        ready.set_result(None)
                elif message["type"] == "pmessage":
                    name = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
                    futures = self.waiters.get(name)
                    if futures and _status(message["data"]) in FINAL:
                        for future in futures:
                            if not future.done():
                                future.set_result(None)
        except asyncio.CancelledError:
            raise
        except (redis.RedisError, OSError) as exc:
            logger.warning("job notifications: Redis subscription lost (%s); waits answer now", exc)
            if not ready.done():
                ready.set_exception(exc)
            for futures in self.waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_result(None)
            if self.task is asyncio.current_task():
                self.task = self.ready = None
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                await pubsub.aclose()


_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Listener] = weakref.WeakKeyDictionary()


class Watch:
    """A subscription to one job's notifications (see ``watching``)."""

    def __init__(self, future: asyncio.Future) -> None:
        self._future = future

    async def final(self, timeout: float) -> bool:
        """Wait until a final status is published (True) or ``timeout`` seconds pass (False)."""
        if timeout <= 0:
            return self._future.done()
        try:
            await asyncio.wait_for(asyncio.shield(self._future), timeout)
            return True
        except TimeoutError:
            return False


@contextlib.asynccontextmanager
async def watching(job_id) -> AsyncIterator[Watch]:
    """Subscribed to ``job_id``'s notifications for the block (asyncio; no thread, no connection of its own).

    Read the row inside the block, after subscribing, so an update that landed before is not missed.
    Raises ``redis.RedisError``/``OSError`` on entry when Redis is unreachable.
    """
    loop = asyncio.get_running_loop()
    listener = _listeners.get(loop)
    if listener is None:
        listener = _listeners[loop] = _Listener()
    name = channel(job_id)
    future = await listener.add(name)
    try:
        yield Watch(future)
    finally:
        listener.remove(name, future)
