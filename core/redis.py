"""The one place that builds Redis clients: one connection pool per (URL, profile), shared by the process.

Profiles differ only in timeouts, chosen by what the caller can afford to wait for:

* ``default``: rate limits, metrics, locks, presence, notifications: 2 s to connect or answer, so a Redis
  outage makes a request fail fast (or be let through) instead of hanging a server thread.
* ``pubsub``: long-poll subscribers (``?wait=N``, at most 30 s): a read timeout longer than any wait.

``async_client(profile)`` is the same for asyncio code (the ASGI ``?wait`` path): one ``redis.asyncio`` client
per event loop, since its connections belong to the loop that opened them.

RQ's own connection (queues, workers) comes from ``django_rq`` and its ``RQ_QUEUES`` settings; this module
is for everything else.
"""

from __future__ import annotations

import asyncio
import weakref
from functools import lru_cache

import redis
import redis.asyncio
from django.conf import settings

PROFILES: dict[str, dict[str, float]] = {
    "default": {"socket_timeout": 2, "socket_connect_timeout": 2, "health_check_interval": 30},
    "pubsub": {"socket_timeout": 35, "socket_connect_timeout": 2, "health_check_interval": 30},
}


@lru_cache(maxsize=16)
def _client(url: str, profile: str) -> redis.Redis:
    return redis.Redis.from_url(url, **PROFILES[profile])


def client(profile: str = "default") -> redis.Redis:
    """A pooled client for ``settings.REDIS_URL`` with the timeouts of ``profile``."""
    return _client(settings.REDIS_URL, profile)


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], redis.asyncio.Redis]] = (
    weakref.WeakKeyDictionary()
)


def async_client(profile: str = "default") -> redis.asyncio.Redis:
    """A pooled ``redis.asyncio`` client for ``settings.REDIS_URL`` and the running event loop."""
    loop = asyncio.get_running_loop()
    clients = _async_clients.setdefault(loop, {})
    key = (settings.REDIS_URL, profile)
    if key not in clients:
        clients[key] = redis.asyncio.Redis.from_url(settings.REDIS_URL, **PROFILES[profile])
    return clients[key]
