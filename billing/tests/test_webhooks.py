"""Stripe webhooks: a correctly signed event changes the subscription; a bad signature, a stale timestamp and
a replayed event id do nothing, with the documented status (see ``billing.webhooks``)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import stripe
from django.utils import timezone

from billing import selectors as billing_selectors
from billing.models import Plan, StripeEvent, Subscription, SubscriptionStatus
from testing.assertions import assert_error
from testing.uploads import tone_wav_bytes, upload

pytestmark = pytest.mark.django_db

URL = "/billing/stripe/webhook"
SECRET = "whsec_test_secret"
PERIOD_START = 1_790_000_000
PERIOD_END = PERIOD_START + 30 * 86400


@pytest.fixture(autouse=True)
def _webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET


@pytest.fixture
def customer(tenant) -> Subscription:
    sub = billing_selectors.subscription_for(tenant)
    Subscription.objects.filter(pk=sub.pk).update(stripe_customer_id="cus_acme")
    Plan.objects.filter(code="pro").update(
        stripe_price_id="price_pro", stripe_metered_price_id="price_pro_meter"
    )
    sub.refresh_from_db()
    return sub


_ids = iter(range(1, 10_000))


def event(type_: str, obj: dict, *, id_: str | None = None, created: int | None = None) -> dict:
    return {
        "id": id_ or f"evt_{next(_ids)}",
        "object": "event",
        "type": type_,
        "created": created or int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }


def subscription_obj(status: str = "active", **extra) -> dict:
    return {
        "id": "sub_1",
        "object": "subscription",
        "customer": "cus_acme",
        "status": status,
        "metadata": {},
        "items": {"object": "list", "data": [
            {"id": "si_1", "price": {"id": "price_pro"}, "current_period_start": PERIOD_START,
             "current_period_end": PERIOD_END},
            {"id": "si_2", "price": {"id": "price_pro_meter"}, "current_period_start": PERIOD_START,
             "current_period_end": PERIOD_END},
        ]},
        **extra,
    }


def invoice_obj() -> dict:
    return {"id": "in_1", "object": "invoice", "customer": "cus_acme",
            "parent": {"subscription_details": {"subscription": "sub_1"}}}


def deliver(client, evt: dict, *, secret: str = SECRET, timestamp: int | None = None,
            header: str | None = None):
    payload = json.dumps(evt)
    if header is None:
        header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
    return client.post(URL, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)


def test_signed_subscription_event_sets_state_plan_and_period(client, customer):
    response = deliver(client, event("customer.subscription.created", subscription_obj("trialing")))
    assert response.status_code == 200 and response.json() == {"received": True, "status": "processed"}
    sub = Subscription.objects.select_related("plan").get(pk=customer.pk)
    assert sub.status == SubscriptionStatus.TRIALING and sub.plan.code == "pro"
    assert sub.stripe_subscription_id == "sub_1"
    assert int(sub.current_period_start.timestamp()) == PERIOD_START
    assert int(sub.current_period_end.timestamp()) == PERIOD_END
    assert StripeEvent.objects.get().outcome == "processed"


def test_bad_signature_does_nothing(client, customer):
    evt = event("customer.subscription.deleted", subscription_obj("canceled"))
    body = assert_error(deliver(client, evt, secret="whsec_wrong"), 400, "INVALID_SIGNATURE")
    assert "signature" in body["error"]["message"].lower()
    assert_error(deliver(client, evt, header="garbage"), 400, "INVALID_SIGNATURE")
    unsigned = client.post(URL, data=json.dumps(evt), content_type="application/json")
    assert_error(unsigned, 400, "INVALID_SIGNATURE")
    assert Subscription.objects.get(pk=customer.pk).status == SubscriptionStatus.ACTIVE
    assert not StripeEvent.objects.exists()


def test_stale_timestamp_does_nothing(client, customer, settings):
    evt = event("customer.subscription.deleted", subscription_obj("canceled"))
    old = int(time.time()) - settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS - 60
    assert_error(deliver(client, evt, timestamp=old), 400, "INVALID_SIGNATURE")
    assert Subscription.objects.get(pk=customer.pk).status == SubscriptionStatus.ACTIVE
    assert not StripeEvent.objects.exists()


def test_timestamp_in_the_future_does_nothing(client, customer, settings):
    """Stripe's library only refuses old timestamps; one dated past the tolerance ahead is refused too (a
    delivery signed for later would otherwise stay replayable until then)."""
    evt = event("customer.subscription.deleted", subscription_obj("canceled"))
    ahead = int(time.time()) + settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS + 60
    body = assert_error(deliver(client, evt, timestamp=ahead), 400, "INVALID_SIGNATURE")
    assert "future" in body["error"]["message"]
    far = int(time.time()) + 10 * 365 * 86400
    assert_error(deliver(client, evt, timestamp=far), 400, "INVALID_SIGNATURE")
    assert Subscription.objects.get(pk=customer.pk).status == SubscriptionStatus.ACTIVE
    assert not StripeEvent.objects.exists()
    # A clock a little ahead of ours is within the tolerance.
    skewed = int(time.time()) + settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS // 2
    assert deliver(client, evt, timestamp=skewed).json()["status"] == "processed"


NOT_EVENTS = {
    "list": [],
    "string": "evt_1",
    "number": 42,
    "null": None,
    "created_not_a_number": {"id": "evt_a", "type": "invoice.paid", "created": "yesterday",
                             "data": {"object": invoice_obj()}},
    "created_out_of_range": {"id": "evt_b", "type": "invoice.paid", "created": 10**20,
                             "data": {"object": invoice_obj()}},
    "created_bool": {"id": "evt_c", "type": "invoice.paid", "created": True, "data": {"object": invoice_obj()}},
    "no_object": {"id": "evt_d", "type": "invoice.paid", "created": 1_790_000_000, "data": {}},
    "data_not_a_dict": {"id": "evt_e", "type": "invoice.paid", "created": 1_790_000_000, "data": ["x"]},
    "object_not_a_dict": {"id": "evt_f", "type": "invoice.paid", "created": 1_790_000_000,
                          "data": {"object": "in_1"}},
    "id_not_a_string": {"id": 7, "type": "invoice.paid", "created": 1_790_000_000,
                        "data": {"object": invoice_obj()}},
    "type_not_a_string": {"id": "evt_g", "type": ["invoice.paid"], "created": 1_790_000_000,
                          "data": {"object": invoice_obj()}},
    "not_an_event_object": {"id": "cus_1", "object": "customer", "type": "invoice.paid",
                            "created": 1_790_000_000, "data": {"object": invoice_obj()}},
}


@pytest.mark.parametrize("case", sorted(NOT_EVENTS))
def test_signed_payload_that_is_not_an_event_is_400_json(client, customer, case):
    response = deliver(client, NOT_EVENTS[case])
    assert response["Content-Type"].startswith("application/json")
    assert_error(response, 400, "INVALID_PAYLOAD")
    assert not StripeEvent.objects.exists()
    assert Subscription.objects.get(pk=customer.pk).status == SubscriptionStatus.ACTIVE


def test_replayed_event_id_is_processed_once(client, customer):
    first = event("invoice.payment_failed", invoice_obj(), id_="evt_replayed")
    assert deliver(client, first).json()["status"] == "processed"
    sub = Subscription.objects.get(pk=customer.pk)
    assert sub.status == SubscriptionStatus.PAST_DUE
    # The same event id again, freshly signed, even with different content: nothing is applied.
    replay = event("customer.subscription.deleted", subscription_obj("canceled"), id_="evt_replayed")
    response = deliver(client, replay)
    assert response.status_code == 200 and response.json()["status"] == "duplicate"
    again = Subscription.objects.get(pk=customer.pk)
    assert again.status == SubscriptionStatus.PAST_DUE and again.past_due_since == sub.past_due_since
    assert StripeEvent.objects.count() == 1


def test_payment_failed_then_paid(client, customer):
    assert deliver(client, event("invoice.payment_failed", invoice_obj())).json()["status"] == "processed"
    sub = Subscription.objects.get(pk=customer.pk)
    assert sub.status == SubscriptionStatus.PAST_DUE and sub.past_due_since is not None
    assert deliver(client, event("invoice.paid", invoice_obj())).json()["status"] == "processed"
    sub.refresh_from_db()
    assert sub.status == SubscriptionStatus.ACTIVE and sub.past_due_since is None


def test_events_arriving_out_of_order_are_not_applied(client, customer):
    now = int(time.time())
    assert deliver(client, event("invoice.paid", invoice_obj(), created=now)).json()["status"] == "processed"
    late = event("invoice.payment_failed", invoice_obj(), created=now - 120)
    assert deliver(client, late).json()["status"] == "stale"
    assert Subscription.objects.get(pk=customer.pk).status == SubscriptionStatus.ACTIVE


def test_unknown_customer_and_unhandled_types_are_acknowledged(client, customer):
    stranger = subscription_obj(customer="cus_nobody")
    outcome = deliver(client, event("customer.subscription.updated", stranger)).json()["status"]
    assert outcome == "unknown_customer"
    assert deliver(client, event("charge.succeeded", {"id": "ch_1"})).json()["status"] == "ignored"
    assert Subscription.objects.get(pk=customer.pk).status == SubscriptionStatus.ACTIVE


def test_tenant_found_by_metadata_when_the_customer_is_new(client, tenant):
    obj = subscription_obj(customer="cus_new", metadata={"tenant_id": str(tenant.pk)})
    assert deliver(client, event("customer.subscription.created", obj)).json()["status"] == "processed"
    assert Subscription.objects.get(tenant=tenant).stripe_customer_id == "cus_new"


def test_not_configured_and_not_an_event(client, settings, customer):
    assert_error(client.post(URL, data="{}", content_type="application/json",
                             HTTP_STRIPE_SIGNATURE="t=1,v1=x"), 400, "INVALID_SIGNATURE")
    payload = "not json"
    header = stripe.WebhookSignature.generate_signature_header(payload, SECRET)
    response = client.post(URL, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
    assert_error(response, 400, "INVALID_PAYLOAD")
    settings.STRIPE_WEBHOOK_SECRET = ""
    assert_error(deliver(client, event("invoice.paid", invoice_obj())), 503, "SERVICE_UNAVAILABLE")
    assert client.get(URL).status_code == 405


@pytest.mark.django_db(transaction=True)
def test_canceled_or_long_past_due_tenant_reads_but_cannot_submit(client, customer, api_client, redis_clean):
    embed = "/api/v1/watermark/embed"
    wav = tone_wav_bytes(1.0)

    def submit():
        return api_client.post(embed, {"file": upload("a.wav", content=wav)}, format="multipart")

    assert submit().status_code == 202
    # Past due within the grace period: still allowed.
    assert deliver(client, event("invoice.payment_failed", invoice_obj())).status_code == 200
    assert submit().status_code == 202

    # Past due beyond the grace period: refused, reads still work.
    Subscription.objects.filter(pk=customer.pk).update(past_due_since=timezone.now() - timedelta(days=30))
    body = assert_error(submit(), 402, "SUBSCRIPTION_INACTIVE")
    assert "grace" in body["error"]["message"]
    assert api_client.get("/api/v1/jobs").status_code == 200

    # Canceled: refused, reads still work; usage says why.
    canceled = event("customer.subscription.deleted", subscription_obj("canceled"))
    assert deliver(client, canceled).status_code == 200
    assert Subscription.objects.get(pk=customer.pk).status == SubscriptionStatus.CANCELED
    assert_error(submit(), 402, "SUBSCRIPTION_INACTIVE")
    assert len(api_client.get("/api/v1/jobs").json()["results"]) == 2
    usage = api_client.get("/api/v1/usage").json()
    assert usage["subscription"]["status"] == "canceled" and usage["subscription"]["can_submit"] is False
