"""The RQ queues of this process, built once: one Redis connection pool per queue, not one per enqueue.

``django_rq.get_queue`` builds a new Redis client (a new connection, and RQ's server-version probe) on every
call; a submission that enqueues through it pays a TCP handshake and an extra round trip each time. Queues
are cached per name and per connection settings, so a changed ``RQ_QUEUES`` entry (tests) gets a new one.
"""

from __future__ import annotations

import json
from functools import lru_cache

import django_rq
from django.conf import settings
from rq import Queue


@lru_cache(maxsize=32)
def _queue(name: str, config: str) -> Queue:
    return django_rq.get_queue(name)


def get_queue(name: str) -> Queue:
    """The RQ queue ``name`` (``settings.RQ_QUEUES``), shared by every caller in this process."""
    return _queue(name, json.dumps(settings.RQ_QUEUES.get(name, {}), sort_keys=True, default=str))
