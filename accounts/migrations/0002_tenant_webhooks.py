"""Per-tenant webhook settings: a default callback URL and a signing secret (unique per existing tenant)."""

from django.db import migrations, models

import accounts.models


def fill_secrets(apps, schema_editor):
    Tenant = apps.get_model("accounts", "Tenant")
    for tenant in Tenant.objects.filter(webhook_secret=""):
        tenant.webhook_secret = accounts.models.new_webhook_secret()
        tenant.save(update_fields=["webhook_secret"])


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="webhook_url",
            field=models.CharField(
                blank=True, default="", max_length=2000,
                help_text="Default callback URL for job webhooks (a job's own callback_url wins). Set it through "
                "jobs.webhooks.set_default_callback_url, which refuses private addresses.",
            ),
        ),
        migrations.AddField(
            model_name="tenant",
            name="webhook_secret",
            field=models.CharField(default="", max_length=100),
            preserve_default=False,
        ),
        migrations.RunPython(fill_secrets, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="tenant",
            name="webhook_secret",
            field=models.CharField(
                default=accounts.models.new_webhook_secret, max_length=100,
                help_text="Signs job webhooks (see jobs/WEBHOOKS.md).",
            ),
        ),
    ]
