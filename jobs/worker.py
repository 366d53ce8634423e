"""The RQ worker that runs jobs in-process next to a warm model pool.

RQ's default worker forks a child per job, which would reload the models every time and breaks CUDA
(CUDA state does not survive ``fork()``). ``PoolWorker`` is RQ's ``SimpleWorker`` (no fork) that loads the
pool for its queues before taking the first job.
"""

from __future__ import annotations

import logging

import django_rq
from django.conf import settings
from rq import SimpleWorker

from jobs.kinds import KINDS
from jobs.pool import get_pool

logger = logging.getLogger(__name__)


def families_for(queues: list[str]) -> list[str]:
    return sorted({s.model_family for s in KINDS.values() if s.queue in queues and s.model_family})


class PoolWorker(SimpleWorker):
    """SimpleWorker that warms the model pool for its queues at start."""

    def __init__(self, queues, *args, **kwargs) -> None:
        super().__init__(queues, *args, **kwargs)
        self.pool = get_pool()
        self.pool.preload(families_for([q.name for q in self.queues]))


def build_worker(queue_names: list[str], name: str | None = None) -> PoolWorker:
    queues = [django_rq.get_queue(q) for q in queue_names]
    return PoolWorker(queues, connection=queues[0].connection, name=name)


def default_queues() -> list[str]:
    return list(settings.RQ_QUEUES)
