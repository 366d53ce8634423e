"""Periodic jobs for every app: one registry (``settings.PERIODIC_TASKS``), one scheduler process.

``manage.py run_scheduler`` runs RQ's own ``CronScheduler`` (rq >= 2.5): it enqueues each registered task
on its queue (``maintenance`` by default, served by any ``run_worker`` that includes it) every ``interval``
seconds or on a ``cron`` expression. The scheduler only enqueues; the work runs in a worker, so a slow task
never delays the clock. Run one scheduler per installation; the tasks are written to be safe if two run.

Register a task by adding an entry to ``PERIODIC_TASKS`` in settings::

    {"name": "stripe-meter-sync", "func": "billing.stripe_sync.sync_meter_events", "interval": 60}
    {"name": "retention", "func": "jobs.upkeep.retention.purge", "cron": "15 3 * * *", "timeout": 3600}

Keys: ``func`` (dotted path, required), ``interval`` (seconds) or ``cron``, ``queue`` (default
``PERIODIC_QUEUE``), ``timeout`` (job timeout, default 600 s), ``name``. An interval task that has waited on
the queue longer than its interval is dropped (the next one replaces it), so a stopped worker does not
come back to a pile of identical jobs.
"""

from __future__ import annotations

from typing import Any

import django_rq
from django.conf import settings
from django.utils.module_loading import import_string
from rq.cron import CronScheduler


def tasks() -> list[dict[str, Any]]:
    return list(getattr(settings, "PERIODIC_TASKS", []))


def build_scheduler(name: str = "") -> CronScheduler:
    """A CronScheduler with every task of ``PERIODIC_TASKS`` registered (not started)."""
    scheduler = CronScheduler(connection=django_rq.get_connection(settings.PERIODIC_QUEUE), name=name)
    for task in tasks():
        interval = task.get("interval")
        scheduler.register(
            import_string(task["func"]),
            queue_name=task.get("queue", settings.PERIODIC_QUEUE),
            interval=interval,
            cron=task.get("cron"),
            job_timeout=task.get("timeout", 600),
            ttl=max(int(interval), 60) if interval else None,
            name=task.get("name", ""),
        )
    return scheduler


def enqueue_all() -> int:
    """Enqueue every periodic task once, now (``run_scheduler --once``: ops and tests). Inside a database
    transaction django-rq enqueues when it commits."""
    for task in tasks():
        queue = django_rq.get_queue(task.get("queue", settings.PERIODIC_QUEUE))
        queue.enqueue(task["func"], job_timeout=task.get("timeout", 600))
    return len(tasks())
