"""Standard Webhooks: secrets become ``whsec_<base64 key>``; rotation overlap and event-type filter fields.

Secrets issued before were ``whsec_<token_urlsafe(32)>`` and signed with the UTF-8 bytes of the *whole*
string as the HMAC key; that text is not valid base64, so Standard Webhooks verifiers refuse it. Each such
secret is re-encoded as ``whsec_`` + base64(old string): the key bytes stay exactly the same, so signatures
computed by receivers that still hold the old string (the deprecated ``AudioSeal-Signature`` header) keep
verifying, while the new string works in any Standard Webhooks library. Nobody is locked out by the deploy.
"""

import base64
import binascii

import accounts.models
from django.db import migrations, models


def is_standard(secret: str) -> bool:
    body = secret.removeprefix("whsec_")
    try:
        return secret.startswith("whsec_") and 24 <= len(base64.b64decode(body, validate=True)) <= 64
    except (binascii.Error, ValueError):
        return False


def reencode_legacy_secrets(apps, schema_editor):
    Tenant = apps.get_model("accounts", "Tenant")
    for tenant in Tenant.objects.only("pk", "webhook_secret").iterator():
        if not is_standard(tenant.webhook_secret):
            tenant.webhook_secret = "whsec_" + base64.b64encode(tenant.webhook_secret.encode()).decode()
            tenant.save(update_fields=["webhook_secret"])


def restore_legacy_secrets(apps, schema_editor):
    """Backwards: a re-encoded secret that decodes to a legacy ``whsec_…`` string gets that string back."""
    Tenant = apps.get_model("accounts", "Tenant")
    for tenant in Tenant.objects.only("pk", "webhook_secret").iterator():
        try:
            decoded = base64.b64decode(tenant.webhook_secret.removeprefix("whsec_"), validate=True).decode()
        except (binascii.Error, ValueError):
            continue
        if decoded.startswith("whsec_"):
            tenant.webhook_secret = decoded
            tenant.save(update_fields=["webhook_secret"])


class Migration(migrations.Migration):
    dependencies = [("accounts", "0004_tenant_webhook_url_checked")]

    operations = [
        migrations.AlterField(
            model_name="tenant", name="webhook_secret",
            field=models.CharField(
                default=accounts.models.new_webhook_secret, max_length=100,
                help_text="Signs job webhooks (Standard Webhooks, whsec_<base64 key>; see jobs/WEBHOOKS.md).",
            ),
        ),
        migrations.AddField(
            model_name="tenant", name="webhook_previous_secret",
            field=models.CharField(
                blank=True, default="", max_length=100,
                help_text="The secret before the last rotation: deliveries are signed with it too until it expires.",
            ),
        ),
        migrations.AddField(
            model_name="tenant", name="webhook_previous_secret_expires_at",
            field=models.DateTimeField(
                blank=True, null=True,
                help_text="End of the rotation's overlap window (then only the new secret signs).",
            ),
        ),
        migrations.AddField(
            model_name="tenant", name="webhook_event_types",
            field=models.JSONField(
                blank=True, default=list,
                help_text="Event types sent to the default callback URL (e.g. job.failed); empty = all of them.",
            ),
        ),
        migrations.RunPython(reencode_legacy_secrets, restore_legacy_secrets),
    ]
