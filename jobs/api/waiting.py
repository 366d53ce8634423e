"""``?wait=N`` on job reads and job creation: capped per API key and per tenant, and, under ASGI, served
without a thread.

Under ASGI (``audioseal_site.asgi``) a waiting request costs a future in the event loop, nothing more:

1. the DRF view runs as usual in the request's thread (``sync_to_async``): authentication, rate limit,
   permissions, the job read (or the upload and submission); if the job is not final it takes a *wait slot*
   and returns its response with the wait still to do (``PendingWait``) instead of blocking;
2. ``WaitableView``'s async front subscribes to the job's notifications (``jobs.notify.watching``: one shared
   Redis connection per process), re-reads the status once, closes the database connection, lets the
   request's thread go (``core.asgi.release_request_thread``) and awaits the notification or the deadline;
3. it re-reads and re-serialises the job (``sync_to_async`` again) into the same response, whose headers
   (``X-RateLimit-*``, ``Idempotent-Replayed``, ``X-Request-ID``) the middleware sets as for any response.

Under WSGI (``audioseal_site.wsgi``, the test client) the view blocks its thread on the subscription, as it
always did; ``audioseal_site.wsgi`` calls the plain DRF view (``front.sync_view``), not the async front.
Either way the JSON, the status codes and the headers are the same.

Wait slots: at most ``MAX_WAITS_PER_KEY`` held waits per API key (a dashboard session counts as its user) and
``MAX_WAITS_PER_TENANT`` per tenant (0 = no cap); one more is ``429 TOO_MANY_WAITS`` with ``Retry-After``.
A slot is a member of a Redis sorted set scored by its expiry (the wait's deadline plus
``WAIT_SLOT_GRACE_SECONDS``), so a process that dies holding slots frees them by that expiry at the latest.
Job creation takes its slot before submitting, so a refused wait never creates a job.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiKey
from accounts.scoping import tenant_for_request
from core.asgi import release_request_thread
from core.errors import ServiceError
from core.redis import async_client
from core.redis import client as redis_client
from jobs import notify
from jobs.models import FINAL_STATUSES, Job

logger = logging.getLogger(__name__)

# KEYS: the key's and the tenant's slot sets. ARGV: now (ms), this slot's expiry (ms), member, key cap,
# tenant cap (0 = none). Drops expired slots; refuses with {1 or 2, earliest expiry} when a set is full; else
# adds the slot to both sets (each set expires with its last slot) and returns {0, 0}.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local expires = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local cap = tonumber(ARGV[3 + i])
  if cap > 0 and redis.call('ZCARD', key) >= cap then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {i, tonumber(first[2])}
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, expires, ARGV[3])
  if redis.call('PTTL', key) < expires - now then
    redis.call('PEXPIRE', key, expires - now)
  end
end
return {0, 0}
"""
SCOPES = {1: ("api_key", "MAX_WAITS_PER_KEY"), 2: ("tenant", "MAX_WAITS_PER_TENANT")}


def _identity(request) -> str:
    """Whose waits count together: the API key, or (dashboard session) the user."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        return f"key:{auth.pk}"
    return f"user:{getattr(request.user, 'pk', None)}"


@dataclass
class Slot:
    """One held wait; release it exactly once (``release`` or ``arelease``)."""

    keys: tuple[str, str]
    member: str

    def release(self) -> None:
        try:
            pipe = redis_client().pipeline(transaction=False)
            for key in self.keys:
                pipe.zrem(key, self.member)
            pipe.execute()
        except redis.RedisError:  # it expires on its own
            logger.warning("wait slot not released (Redis unavailable); it expires by itself")

    async def arelease(self) -> None:
        try:
            pipe = async_client().pipeline(transaction=False)
            for key in self.keys:
                pipe.zrem(key, self.member)
            await pipe.execute()
        except (redis.RedisError, OSError):
            logger.warning("wait slot not released (Redis unavailable); it expires by itself")


def acquire(request, seconds: float) -> Slot | None:
    """A wait slot for ``seconds`` for the request's key and tenant; None when there is nothing to hold
    (no wait, or Redis unavailable: the wait then cannot subscribe either and answers at once).

    Raises ``ServiceError("TOO_MANY_WAITS")`` (429, ``Retry-After``) when a cap is reached.
    """
    if seconds <= 0:
        return None
    tenant = tenant_for_request(request)
    keys = (f"audioseal:waits:{_identity(request)}", f"audioseal:waits:tenant:{getattr(tenant, 'pk', None)}")
    caps = (int(settings.MAX_WAITS_PER_KEY), int(settings.MAX_WAITS_PER_TENANT))
    now_ms = int(time.time() * 1000)
    grace_ms = int(settings.WAIT_SLOT_GRACE_SECONDS * 1000)
    expires_ms = now_ms + int(seconds * 1000) + grace_ms
    member = uuid.uuid4().hex
    try:
        full, earliest = redis_client().eval(_ACQUIRE, 2, *keys, now_ms, expires_ms, member, *caps)
    except redis.RedisError:
        logger.warning("wait slots not counted (Redis unavailable)")
        return None
    if int(full):
        scope, setting = SCOPES[int(full)]
        limit = caps[int(full) - 1]
        # By then the oldest held wait has reached its deadline (its slot's expiry minus the grace).
        retry_after = max(1, math.ceil((int(earliest) - grace_ms - now_ms) / 1000))
        holder = "this API key" if scope == "api_key" else "your organisation"
        raise ServiceError(
            "TOO_MANY_WAITS",
            f"Too many requests waiting at once: {holder} already holds {limit} `wait` requests ({setting}). "
            f"Retry in {retry_after} s, or read the job without `wait`.",
            {"scope": scope, "limit": limit, "retry_after": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
    return Slot(keys, member)


@dataclass
class PendingWait:
    """The rest of a ``?wait`` that the async front serves (see the module docstring)."""

    response: Response
    job: Job
    deadline: float  # time.monotonic()
    slot: Slot | None
    serialize: Callable[[Job], Any]

    def is_final(self) -> bool:
        """Re-read the status (after subscribing); then give the database connection back."""
        try:
            return Job.objects.filter(pk=self.job.pk, status__in=FINAL_STATUSES).exists()
        finally:
            if not connection.in_atomic_block:
                connection.close()

    def finish(self) -> None:
        self.job.refresh_from_db()
        self.response.data = self.serialize(self.job)

    async def run(self) -> None:
        try:
            try:
                async with notify.watching(self.job.pk) as watch:
                    final = await sync_to_async(self.is_final)()
                    release_request_thread()  # no thread while we wait (the next step gets a new one)
                    if not final:
                        await watch.final(self.deadline - time.monotonic())
            except (redis.RedisError, OSError):
                pass  # no notifications: answer what the job is now, as the sync path does
            await sync_to_async(self.finish)()
        finally:
            if self.slot is not None:
                await self.slot.arelease()


def respond(
    request, job: Job, seconds: float, serialize: Callable[[Job], Any], *, status: int = 200,
    slot: Slot | None = None,
) -> Response:
    """``Response(serialize(job), status)`` once the job is final or ``seconds`` have passed.

    ``slot``: one the caller already holds for this wait (job creation takes it before submitting); else one
    is taken here if the job has to be waited for. Under the async front the wait is left to it.
    """
    if seconds <= 0 or job.status in FINAL_STATUSES:
        if slot is not None:
            slot.release()
        return Response(serialize(job), status=status)
    deadline = time.monotonic() + seconds
    slot = slot or acquire(request, seconds)
    if getattr(request, "defer_wait", False):
        response = Response(serialize(job), status=status)
        response.pending_wait = PendingWait(response, job, deadline, slot, serialize)
        return response
    try:
        job = wait_for(job, seconds)
    finally:
        if slot is not None:
            slot.release()
    return Response(serialize(job), status=status)


def wait_for(job: Job, seconds: float) -> Job:
    """Block this thread until the job is final or ``seconds`` pass (the WSGI path)."""
    if seconds <= 0 or job.status in FINAL_STATUSES:
        return job

    def is_final() -> bool:
        return Job.objects.filter(pk=job.pk, status__in=FINAL_STATUSES).exists()

    notify.wait_for_final(job.pk, seconds, is_final)
    job.refresh_from_db()
    return job


def _async_front(view: Callable) -> Callable:
    """Run the DRF ``view`` and, under ASGI, finish its pending wait without a thread."""

    @functools.wraps(view)  # keeps csrf_exempt, cls and initkwargs (the URL resolver and the schema read them)
    async def front(request, *args, **kwargs):
        if not isinstance(request, ASGIRequest):
            return await sync_to_async(view)(request, *args, **kwargs)
        request.defer_wait = True
        response = await sync_to_async(view)(request, *args, **kwargs)
        pending = getattr(response, "pending_wait", None)
        if pending is not None:
            del response.pending_wait
            await pending.run()
        return response

    # Under WSGI there is no event loop to give a wait to: ``audioseal_site.wsgi`` calls this plain view
    # instead of the front, which would only cost an event loop and a thread per request there.
    front.sync_view = view
    return front


class WaitableView(APIView):
    """An API view that takes ``?wait``: ``as_view()`` returns the async front (``_async_front``)."""

    @classmethod
    def as_view(cls, **initkwargs):
        return _async_front(super().as_view(**initkwargs))
