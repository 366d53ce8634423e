"""Meter events through the real ``stripe`` library against a local HTTP server: the requests sent, the same
identifiers on a retried sync, failed syncs retried later without loss. Also Checkout and Billing Portal."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing import services, stripe_sync
from billing.models import MeterSync, Plan, Subscription, SyncState, UsageEvent
from core.errors import ServiceError
from testing.fake_stripe import METER_EVENTS

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer_tenant(tenant):
    Subscription.objects.filter(tenant=tenant).update(stripe_customer_id="cus_acme")
    return tenant


@pytest.fixture
def three_events(customer_tenant, succeeded_job) -> list[UsageEvent]:
    for seconds, kind in ((3.0, "watermark_embed"), (61.5, "emotion"), (0.4, "watermark_detect")):
        succeeded_job(customer_tenant, seconds, kind)
    return list(UsageEvent.objects.order_by("created_at"))


def _make_due() -> None:
    MeterSync.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def _ledger(events) -> list[tuple]:
    return [(e.pk, e.quantity, e.kind) for e in UsageEvent.objects.filter(pk__in=[e.pk for e in events])]


def test_each_usage_event_becomes_one_meter_event(fake_stripe, three_events, settings):
    result = stripe_sync.sync_meter_events()
    assert result == {"enabled": True, "sent": 3}

    sent = fake_stripe.meter_requests()
    assert [r.path for r in sent] == [METER_EVENTS] * 3
    assert [r.params["identifier"] for r in sent] == [str(e.pk) for e in three_events]
    for request, event in zip(sent, three_events, strict=True):
        assert request.params["event_name"] == settings.STRIPE_METER_EVENT_NAME
        assert request.params["payload[stripe_customer_id]"] == "cus_acme"
        assert request.params["payload[value]"] == str(event.quantity)
        assert request.params["payload[kind]"] == event.kind
        assert int(request.params["timestamp"]) == int(event.created_at.timestamp())
        assert request.headers["Authorization"] == "Bearer sk_test_fake"
    assert [e.quantity for e in three_events] == [3, 62, 1]
    assert set(MeterSync.objects.values_list("state", flat=True)) == {SyncState.SENT}

    # Nothing left to send: a second run sends nothing.
    assert stripe_sync.sync_meter_events() == {"enabled": True}
    assert len(fake_stripe.meter_requests()) == 3


def test_failed_sync_is_retried_later_with_the_same_identifiers(fake_stripe, three_events):
    ledger_before = _ledger(three_events)
    fake_stripe.fail_meter_events = 3  # Stripe answers 500 to each (the event may or may not have landed)
    assert stripe_sync.sync_meter_events() == {"enabled": True, "retry_scheduled": 3}
    first_ids = [r.params["identifier"] for r in fake_stripe.meter_requests()]
    for row in MeterSync.objects.all():
        assert row.state == SyncState.PENDING and row.attempts == 1
        assert "APIError" in row.last_error and row.next_attempt_at > timezone.now()

    # Backoff: running again right away sends nothing.
    assert stripe_sync.sync_meter_events() == {"enabled": True}
    assert len(fake_stripe.meter_requests()) == 3

    # Later: the same events again, with the same identifiers; nothing lost, nothing added.
    _make_due()
    assert stripe_sync.sync_meter_events() == {"enabled": True, "sent": 3}
    retry_ids = [r.params["identifier"] for r in fake_stripe.meter_requests()[3:]]
    assert retry_ids == first_ids == [str(e.pk) for e in three_events]
    assert set(MeterSync.objects.values_list("state", flat=True)) == {SyncState.SENT}
    assert _ledger(three_events) == ledger_before and UsageEvent.objects.count() == 3


def test_an_identifier_stripe_already_has_counts_as_sent(fake_stripe, three_events):
    """A crash after Stripe accepted an event but before we recorded it: the resend is refused as a
    duplicate identifier, which means it is billed once."""
    fake_stripe.accepted_identifiers.add(str(three_events[0].pk))
    assert stripe_sync.sync_meter_events() == {"enabled": True, "sent": 3}
    assert fake_stripe.meter_requests()[0].status == 400
    assert MeterSync.objects.get(event=three_events[0]).state == SyncState.SENT


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_unreachable_stripe_loses_nothing(fake_stripe, three_events, settings):
    real_base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = _closed_port_url()
    result = stripe_sync.sync_meter_events()
    assert result == {"enabled": True, "unreachable": 1}  # stops at the first connection error
    rows = {row.event_id: row for row in MeterSync.objects.all()}
    first = rows[three_events[0].pk]
    assert first.attempts == 1 and "APIConnectionError" in first.last_error
    assert all(rows[e.pk].state == SyncState.PENDING for e in three_events)

    settings.STRIPE_API_BASE = real_base
    _make_due()
    assert stripe_sync.sync_meter_events() == {"enabled": True, "sent": 3}
    assert sorted(r.params["identifier"] for r in fake_stripe.meter_requests()) == sorted(
        str(e.pk) for e in three_events
    )


def test_gives_up_after_max_attempts_and_staff_can_retry(fake_stripe, three_events, settings, staff_client):
    settings.STRIPE_SYNC_MAX_ATTEMPTS = 2
    fake_stripe.fail_meter_events = 6
    stripe_sync.sync_meter_events()
    _make_due()
    assert stripe_sync.sync_meter_events() == {"enabled": True, "failed": 3}
    assert set(MeterSync.objects.values_list("state", flat=True)) == {SyncState.FAILED}
    _make_due()
    assert stripe_sync.sync_meter_events() == {"enabled": True}  # failed rows wait for staff

    # Staff see the failures in the admin and retry them.
    changelist = reverse("admin:billing_usageevent_changelist")
    page = staff_client.get(changelist + "?sync=failed")
    assert page.status_code == 200 and "APIError" in page.content.decode()
    response = staff_client.post(changelist, {
        "action": "retry_sync", "_selected_action": [str(e.pk) for e in three_events],
    })
    assert response.status_code == 302
    assert set(MeterSync.objects.values_list("state", flat=True)) == {SyncState.PENDING}
    assert stripe_sync.sync_meter_events() == {"enabled": True, "sent": 3}


def test_tenant_without_stripe_customer_is_skipped(fake_stripe, tenant, succeeded_job):
    succeeded_job(tenant, 5.0)
    assert stripe_sync.sync_meter_events() == {"enabled": True, "skipped": 1}
    assert fake_stripe.requests == []
    assert MeterSync.objects.get().state == SyncState.SKIPPED


def test_without_api_key_the_ledger_records_and_sync_is_a_logged_no_op(settings, three_events, caplog):
    settings.STRIPE_API_KEY = ""
    caplog.set_level("INFO", logger="billing.stripe_sync")
    assert stripe_sync.sync_meter_events() == {"enabled": False, "pending": 3}
    assert "no STRIPE_API_KEY" in caplog.text
    assert UsageEvent.objects.count() == 3
    assert set(MeterSync.objects.values_list("state", flat=True)) == {SyncState.PENDING}


def test_checkout_and_portal(fake_stripe, tenant):
    Plan.objects.filter(code="pro").update(stripe_price_id="price_pro", stripe_metered_price_id="price_meter")
    url = services.checkout_url(tenant, "pro", success_url="https://app.test/ok", cancel_url="https://app.test/no")
    assert url.startswith("https://checkout.stripe.test/")
    customers = [r for r in fake_stripe.requests if r.path == "/v1/customers"]
    assert len(customers) == 1 and customers[0].params["metadata[tenant_id]"] == str(tenant.pk)
    assert customers[0].headers["Idempotency-Key"] == f"audioseal-customer-{tenant.pk}"
    session = next(r for r in fake_stripe.requests if r.path == "/v1/checkout/sessions")
    assert session.params["mode"] == "subscription"
    assert session.params["customer"] == Subscription.objects.get(tenant=tenant).stripe_customer_id
    assert session.params["line_items[0][price]"] == "price_pro"
    assert session.params["line_items[0][quantity]"] == "1"
    assert session.params["line_items[1][price]"] == "price_meter"
    assert session.params["subscription_data[metadata][tenant_id]"] == str(tenant.pk)

    portal = services.portal_url(tenant, return_url="https://app.test/billing")
    assert portal.startswith("https://billing.stripe.test/")
    assert len([r for r in fake_stripe.requests if r.path == "/v1/customers"]) == 1  # the customer is reused

    with pytest.raises(ServiceError) as refused:
        services.checkout_url(tenant, "free", success_url="https://a.test", cancel_url="https://a.test")
    assert refused.value.code == "PLAN_NOT_PURCHASABLE"


def test_checkout_without_stripe_is_a_clear_error(settings, tenant):
    settings.STRIPE_API_KEY = ""
    with pytest.raises(ServiceError) as refused:
        services.portal_url(tenant, return_url="https://app.test/billing")
    assert refused.value.code == "BILLING_UNAVAILABLE" and refused.value.http_status == 503
