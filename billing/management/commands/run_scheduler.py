"""``manage.py run_scheduler``: enqueue the periodic tasks of ``settings.PERIODIC_TASKS`` on schedule."""

from django.core.management.base import BaseCommand

from billing import periodic


class Command(BaseCommand):
    help = "Run the periodic-task scheduler (RQ CronScheduler); maintenance-queue workers run the tasks."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="enqueue every periodic task now and exit")
        parser.add_argument("--name", default="")

    def handle(self, *args, **options) -> None:
        if options["once"]:
            count = periodic.enqueue_all()
            self.stdout.write(f"enqueued {count} periodic tasks")
            return
        scheduler = periodic.build_scheduler(name=options["name"])
        names = ", ".join(job.name for job in scheduler.get_jobs()) or "nothing"
        self.stdout.write(f"scheduler {scheduler.name}: {names}")
        scheduler.start()
