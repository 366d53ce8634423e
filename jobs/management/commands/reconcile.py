"""``manage.py reconcile``: one reconciliation pass now (or ``--loop`` as a standalone periodic process).

Workers already run the reconciler every ``RECONCILE_INTERVAL_SECONDS`` (one at a time); this command is for
operators (after an incident: "bring every job to a true state now") and for deployments that prefer a
separate process or a cron entry.
"""

from __future__ import annotations

import json
import socket
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from jobs.upkeep import reconcile


class Command(BaseCommand):
    help = "Re-enqueue lost jobs, retry or fail jobs whose worker died or that timed out, close reservations."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--loop", action="store_true", help="run every --interval seconds until stopped")
        parser.add_argument("--interval", type=float, default=None, help="seconds between passes (--loop)")

    def handle(self, *args, **options) -> None:
        if not options["loop"]:
            self.stdout.write(json.dumps(reconcile.run_once().counts()))
            return
        interval = options["interval"] or settings.RECONCILE_INTERVAL_SECONDS
        owner = f"reconcile-command:{socket.gethostname()}"
        while True:
            report = reconcile.run_once_locked(owner=owner, ttl=interval)
            if report:
                self.stdout.write(json.dumps(report.counts()))
            time.sleep(interval)
