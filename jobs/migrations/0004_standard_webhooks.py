"""Standard Webhooks deliveries: an event id (webhook-id) shared by resends, the receiver's answer, test events.

Existing rows get ``event_id = id``: the id their retries were already sent with (``AudioSeal-Delivery``), so
a receiver deduplicating on it sees the same id after the upgrade.
"""

import django.db.models.deletion
import uuid
from django.db import migrations, models


def event_id_is_the_old_delivery_id(apps, schema_editor):
    WebhookDelivery = apps.get_model("jobs", "WebhookDelivery")
    WebhookDelivery.objects.update(event_id=models.F("id"))


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0003_result_cache'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='webhookdelivery',
            options={'ordering': ['-created_at', '-id'], 'verbose_name_plural': 'webhook deliveries'},
        ),
        migrations.AddField(
            model_name='webhookdelivery',
            name='event_id',
            field=models.UUIDField(db_index=True, default=uuid.uuid4, editable=False, help_text='Sent as webhook-id; shared by the resends of one event (receivers deduplicate on it).'),
        ),
        migrations.AddField(
            model_name='webhookdelivery',
            name='last_response_body',
            field=models.CharField(blank=True, default='', help_text="The start of the receiver's last answer.", max_length=500),
        ),
        migrations.AddField(
            model_name='webhookdelivery',
            name='resent_from',
            field=models.ForeignKey(blank=True, help_text='The delivery this one resends (same event id and body).', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='resends', to='jobs.webhookdelivery'),
        ),
        migrations.AlterField(
            model_name='webhookdelivery',
            name='event',
            field=models.CharField(help_text='The event type, e.g. job.succeeded', max_length=40),
        ),
        migrations.AlterField(
            model_name='webhookdelivery',
            name='job',
            field=models.ForeignKey(blank=True, help_text='The job the event is about (none for a webhook.test event).', null=True, on_delete=django.db.models.deletion.CASCADE, related_name='webhook_deliveries', to='jobs.job'),
        ),
        migrations.AddIndex(
            model_name='webhookdelivery',
            index=models.Index(fields=['tenant', '-created_at'], name='webhook_tenant_created'),
        ),
        migrations.RunPython(event_id_is_the_old_delivery_id, migrations.RunPython.noop),
    ]
