"""The usage ledger is append-only: no update or delete through the ORM, the admin, or raw SQL."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from billing.models import AppendOnlyError, UsageEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(tenant, succeeded_job):
    succeeded_job(tenant, seconds=3.0)
    return UsageEvent.objects.get()


def test_instance_cannot_be_updated(event):
    event.quantity = 1
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.save(update_fields=["quantity"])
    event.refresh_from_db()
    assert event.quantity == 3


def test_instance_cannot_be_deleted(event):
    with pytest.raises(AppendOnlyError):
        event.delete()
    assert UsageEvent.objects.filter(pk=event.pk).exists()


def test_queryset_cannot_update_or_delete(event):
    with pytest.raises(AppendOnlyError):
        UsageEvent.objects.filter(pk=event.pk).update(quantity=0)
    with pytest.raises(AppendOnlyError):
        UsageEvent.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        UsageEvent.objects.bulk_update([event], ["quantity"])
    with pytest.raises(AppendOnlyError):
        UsageEvent.objects.update_or_create(pk=event.pk, defaults={"quantity": 0})
    assert UsageEvent.objects.get(pk=event.pk).quantity == 3


def test_deleting_the_tenant_or_job_does_not_take_the_ledger_with_it(event):
    from django.db.models import ProtectedError

    from jobs.models import Job

    # The ledger keeps the job's id, not a foreign key (billing does not know jobs): the job row can go, the
    # usage event stays, still naming the job.
    Job.objects.filter(pk=event.job_id).delete()
    assert UsageEvent.objects.get(pk=event.pk).job_id == event.job_id
    with pytest.raises(ProtectedError):
        event.tenant.delete()
    assert UsageEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.parametrize("sql", [
    "UPDATE billing_usageevent SET quantity = 0 WHERE id = %s",
    "DELETE FROM billing_usageevent WHERE id = %s",
])
def test_database_refuses_update_and_delete_from_any_client(event, sql):
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [event.pk])
    assert UsageEvent.objects.get(pk=event.pk).quantity == 3


def test_admin_shows_the_ledger_read_only(staff_client, event):
    changelist = staff_client.get(reverse("admin:billing_usageevent_changelist"))
    assert changelist.status_code == 200 and str(event.pk) in changelist.content.decode()
    change_url = reverse("admin:billing_usageevent_change", args=[event.pk])
    change = staff_client.get(change_url)
    assert change.status_code == 200 and b'name="_save"' not in change.content
    assert staff_client.get(reverse("admin:billing_usageevent_add")).status_code == 403
    delete_url = reverse("admin:billing_usageevent_delete", args=[event.pk])
    assert staff_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert staff_client.post(change_url, {"quantity": 0}).status_code == 403
    assert UsageEvent.objects.get(pk=event.pk).quantity == 3
