"""``manage.py run_worker [queue ...]``: one worker process with its model pool loaded and warmed."""

from django.core.management.base import BaseCommand

from jobs.worker.rq_worker import build_worker, default_queues


class Command(BaseCommand):
    help = "Run an RQ worker (no fork per job) with the model pool for its queues loaded once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("queues", nargs="*", help="queues to serve (default: all)")
        parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
        parser.add_argument("--name", default=None)

    def handle(self, *args, **options) -> None:
        queues = options["queues"] or default_queues()
        worker = build_worker(queues, name=options["name"])
        self.stdout.write(f"worker {worker.name} on {', '.join(queues)}: {worker.pool.describe()}")
        worker.work(burst=options["burst"], logging_level="INFO")
