"""``manage.py expire_files``: run retention once (job files past their tenant's retention are deleted).

Workers already run it periodically (one at a time, ``RETENTION_INTERVAL_SECONDS``); this command is for a
cron job or an operator who wants it now.
"""

from django.core.management.base import BaseCommand

from jobs.upkeep.retention import expire_files


class Command(BaseCommand):
    help = "Delete the files of jobs past their tenant's retention; the rows stay (410 FILE_EXPIRED)."

    def handle(self, *args, **options) -> None:
        report = expire_files()
        self.stdout.write(
            f"expired {report.jobs_expired} job(s), deleted {report.files_deleted} file(s), "
            f"{len(report.errors)} error(s)"
        )
        for error in report.errors:
            self.stderr.write(error)
        if report.errors:
            raise SystemExit(1)
