"""How long each plan keeps the API request log (``accounts.ApiRequest``; pruned by jobs.upkeep.retention).

Every plan gets 7 days (the field default, the Free plan's); the seeded Pro and Enterprise plans get their
seed values (30 and 90 days), as a fresh installation seeds them.
"""

from django.db import migrations, models

from billing.seed import SEED_PLANS


def seed_request_log_days(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for spec in SEED_PLANS:
        Plan.objects.filter(code=spec["code"]).update(request_log_days=spec["request_log_days"])


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0005_plan_video_limits"),
    ]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="request_log_days",
            field=models.PositiveIntegerField(
                default=7, help_text="How long the API request log (the dashboard's Request log page) is kept."
            ),
        ),
        migrations.RunPython(seed_request_log_days, migrations.RunPython.noop),
    ]
