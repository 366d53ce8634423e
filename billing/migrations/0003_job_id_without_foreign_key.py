"""Reservation.job and UsageEvent.job become plain ``job_id`` UUID columns: billing no longer knows jobs.Job.

The data and the column name (``job_id``, already a uuid) stay as they are; the database only loses the two
foreign-key constraints. The indexes stay too: the reservation's unique constraint (one reservation per job),
the usage event's index on ``job_id`` and its ``(job_id, metric)`` unique constraint.

How: the database part alters the old fields in place (FK -> UUIDField with ``db_column="job_id"``), which
drops only the FK constraints; the state part replaces the ``job`` fields by ``job_id`` fields. No row is
written (``billing_usageevent`` refuses UPDATE/DELETE, see 0002), only DDL.
"""

from django.db import migrations, models

RESERVATION_JOB_HELP = "The job holding the seconds (jobs.Job id)."
USAGE_JOB_HELP = "The job the usage came from (jobs.Job id)."


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_seed_plans_and_ledger_guard")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AlterField(
                    model_name="reservation",
                    name="job",
                    field=models.UUIDField(unique=True, db_column="job_id", help_text=RESERVATION_JOB_HELP),
                ),
                migrations.AlterField(
                    model_name="usageevent",
                    name="job",
                    field=models.UUIDField(db_index=True, db_column="job_id", help_text=USAGE_JOB_HELP),
                ),
            ],
            state_operations=[
                migrations.RemoveConstraint(model_name="usageevent", name="one_usage_event_per_job_metric"),
                migrations.RemoveField(model_name="reservation", name="job"),
                migrations.RemoveField(model_name="usageevent", name="job"),
                migrations.AddField(
                    model_name="reservation",
                    name="job_id",
                    field=models.UUIDField(unique=True, help_text=RESERVATION_JOB_HELP),
                ),
                migrations.AddField(
                    model_name="usageevent",
                    name="job_id",
                    field=models.UUIDField(db_index=True, help_text=USAGE_JOB_HELP),
                ),
                migrations.AddConstraint(
                    model_name="usageevent",
                    constraint=models.UniqueConstraint(
                        fields=("job_id", "metric"), name="one_usage_event_per_job_metric"
                    ),
                ),
            ],
        ),
    ]
