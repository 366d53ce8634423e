"""Stripe webhook events: verified on the raw body, applied once, in order.

``handle(payload, signature)`` returns ``(http_status, body)``; the view only passes the request through.

Documented responses of ``POST /billing/stripe/webhook``:

- ``200 {"received": true, "status": "processed"}``: the event changed (or confirmed) a subscription.
- ``200 … "status": "ignored" | "unknown_customer" | "stale"``: a valid event with nothing to apply (an
  event type we do not handle, a customer we do not know, or an event older than the last one applied).
- ``200 … "status": "duplicate"``: this event id was processed before; nothing is done again. (2xx so
  Stripe stops redelivering it.)
- ``400 INVALID_SIGNATURE``: missing or wrong ``Stripe-Signature``, or a timestamp more than
  ``STRIPE_WEBHOOK_TOLERANCE_SECONDS`` in the past (a replay of an old delivery) or in the future (Stripe's
  library only checks the past; we check both); nothing is recorded.
- ``400 INVALID_PAYLOAD``: signed but not a Stripe event object (JSON that is not an object, or lacks a
  string ``id``/``type``, an integer ``created`` or an object ``data.object``); nothing is recorded.
- ``503 SERVICE_UNAVAILABLE``: no ``STRIPE_WEBHOOK_SECRET`` configured.
- ``500``: applying the event failed; nothing was recorded, so Stripe's redelivery applies it later.

Ordering: Stripe does not guarantee delivery order, so each subscription remembers the creation time of
the last event applied (``stripe_state_at``) and older events are recorded but not applied.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction

from billing import services
from billing.models import Plan, StripeEvent, Subscription, SubscriptionStatus
from core.errors import error_body

logger = logging.getLogger(__name__)

STATUS_MAP = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.TRIALING,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.PAST_DUE,
    "paused": SubscriptionStatus.PAST_DUE,
    "canceled": SubscriptionStatus.CANCELED,
    "incomplete_expired": SubscriptionStatus.CANCELED,
    # "incomplete": the first payment has not gone through yet; nothing changes until it does.
}


def handle(payload: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
    """Verify and apply one webhook delivery."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        return 503, error_body(
            "SERVICE_UNAVAILABLE", "Stripe webhooks are not configured (STRIPE_WEBHOOK_SECRET)."
        )
    tolerance = settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
    try:
        # Signature, and a timestamp not older than the tolerance (Stripe's check looks only into the past).
        stripe.WebhookSignature.verify_header(payload, signature, secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        logger.warning("Stripe webhook refused: %s", exc.user_message)
        return 400, error_body(
            "INVALID_SIGNATURE", f"Stripe signature verification failed: {exc.user_message}"
        )
    except ValueError:  # not UTF-8
        return 400, error_body("INVALID_PAYLOAD", "The body is not a JSON Stripe event.")
    ahead = _seconds_ahead(signature)
    if tolerance and ahead > tolerance:
        logger.warning("Stripe webhook refused: signature timestamp %.0f s in the future", ahead)
        return 400, error_body(
            "INVALID_SIGNATURE",
            f"Stripe signature verification failed: the timestamp is {ahead:.0f} s in the future "
            f"(tolerance {tolerance} s).",
        )
    data = _event_or_none(payload)
    if data is None:
        return 400, error_body("INVALID_PAYLOAD", "The body is not a Stripe event.")
    return 200, {"received": True, "status": process_event(data)}


def _seconds_ahead(signature: str) -> float:
    """How far the (already verified) ``t=`` timestamp of a ``Stripe-Signature`` header is ahead of our clock;
    the first ``t=`` counts, as in Stripe's own parser."""
    for item in signature.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            return int(value) - time.time()
    return 0.0  # pragma: no cover - verify_header refused a header without a timestamp


def _event_or_none(payload: bytes) -> dict[str, Any] | None:
    """The decoded event when the body has an event's shape (string ``id`` and ``type``, integer ``created``
    in range, ``data.object`` an object), else None: what the handlers rely on is checked here, once."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("object", "event") != "event":
        return None
    created = data.get("created")
    if not (isinstance(data.get("id"), str) and data["id"] and isinstance(data.get("type"), str)):
        return None
    if not isinstance(created, int) or isinstance(created, bool):
        return None
    try:
        datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    if not isinstance(data.get("data"), dict) or not isinstance(data["data"].get("object"), dict):
        return None
    return data


def process_event(event: dict[str, Any]) -> str:
    """Record the event id and apply it, in one transaction; a known id is a duplicate and does nothing."""
    created = datetime.fromtimestamp(int(event["created"]), UTC)
    with transaction.atomic():
        try:
            with transaction.atomic():
                StripeEvent.objects.create(
                    id=event["id"], type=event["type"], created=created, outcome="received", payload=event
                )
        except IntegrityError:
            return "duplicate"
        handler = HANDLERS.get(event["type"])
        if handler is None:
            outcome, tenant_id = "ignored", None
        else:
            outcome, tenant_id = handler(event["data"]["object"], created)
        StripeEvent.objects.filter(pk=event["id"]).update(outcome=outcome, tenant_id=tenant_id)
    logger.info("Stripe event %s %s: %s", event["id"], event["type"], outcome)
    return outcome


# --- handlers: (event.data.object, event created) -> (outcome, tenant id) -----------------------------------


def _locked_subscription(customer: str | None, metadata: dict[str, Any] | None) -> Subscription | None:
    """The subscription row of the event's customer (or of ``metadata.tenant_id``), locked."""
    queryset = Subscription.objects.select_for_update(of=("self",)).select_related("plan")
    if customer:
        sub = queryset.filter(stripe_customer_id=customer).first()
        if sub is not None:
            return sub
    try:
        tenant_id = uuid.UUID(str((metadata or {}).get("tenant_id")))
    except ValueError:
        return None
    return queryset.filter(tenant_id=tenant_id).first()


def _customer_to_record(sub: Subscription, customer: str | None) -> dict[str, Any]:
    """A subscription found by ``metadata.tenant_id`` learns its Stripe customer when the event is applied."""
    return {"stripe_customer_id": customer} if customer and not sub.stripe_customer_id else {}


def _is_stale(sub: Subscription, created: datetime) -> bool:
    return sub.stripe_state_at is not None and created < sub.stripe_state_at


def _plan_for(obj: dict[str, Any]) -> Plan | None:
    prices = [
        (item.get("price") or {}).get("id")
        for item in ((obj.get("items") or {}).get("data") or [])
    ]
    prices = [p for p in prices if p]
    if prices:
        plan = (
            Plan.objects.filter(stripe_price_id__in=prices).first()
            or Plan.objects.filter(stripe_metered_price_id__in=prices).first()
        )
        if plan:
            return plan
    code = (obj.get("metadata") or {}).get("plan")
    return Plan.objects.filter(code=code).first() if code else None


def _period(obj: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """The current period: on the subscription items (API 2025-03-31 and later) or on the subscription."""
    items = (obj.get("items") or {}).get("data") or []
    source = items[0] if items and items[0].get("current_period_start") else obj
    start, end = source.get("current_period_start"), source.get("current_period_end")
    if not start or not end:
        return None
    return datetime.fromtimestamp(int(start), UTC), datetime.fromtimestamp(int(end), UTC)


def on_subscription(obj: dict[str, Any], created: datetime, *, deleted: bool = False) -> tuple[str, Any]:
    sub = _locked_subscription(obj.get("customer"), obj.get("metadata"))
    if sub is None:
        return "unknown_customer", None
    if _is_stale(sub, created):
        return "stale", sub.tenant_id
    if sub.stripe_subscription_id and obj.get("id") != sub.stripe_subscription_id:
        # Another of the customer's subscriptions: only a live one replaces ours.
        if deleted or obj.get("status") not in ("active", "trialing", "past_due"):
            return "ignored", sub.tenant_id
    stripe_status = "canceled" if deleted else obj.get("status", "")
    status = STATUS_MAP.get(stripe_status)
    if status is None:
        return "ignored", sub.tenant_id
    changes: dict[str, Any] = {
        "status": status,
        "status_at": created,  # past due since the event, not since it arrived
        "stripe_status": stripe_status,
        "stripe_subscription_id": obj.get("id") or sub.stripe_subscription_id,
        "stripe_state_at": created,
        **_customer_to_record(sub, obj.get("customer")),
    }
    plan = _plan_for(obj)
    if plan is not None:
        changes["plan"] = plan
    period = _period(obj)
    if period is not None:
        changes["period"] = period
    services.change_subscription(sub, **changes)
    return "processed", sub.tenant_id


def _invoice_subscription_id(obj: dict[str, Any]) -> str:
    legacy = obj.get("subscription")
    if isinstance(legacy, str):
        return legacy
    details = ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    return details if isinstance(details, str) else ""


def _on_invoice(obj: dict[str, Any], created: datetime, *, paid: bool) -> tuple[str, Any]:
    sub = _locked_subscription(obj.get("customer"), obj.get("metadata"))
    if sub is None:
        return "unknown_customer", None
    invoice_sub = _invoice_subscription_id(obj)
    if invoice_sub and sub.stripe_subscription_id and invoice_sub != sub.stripe_subscription_id:
        return "ignored", sub.tenant_id
    if _is_stale(sub, created):
        return "stale", sub.tenant_id
    if sub.status == SubscriptionStatus.CANCELED:
        return "ignored", sub.tenant_id
    changes: dict[str, Any] = {"stripe_state_at": created, **_customer_to_record(sub, obj.get("customer"))}
    if paid:
        if sub.status == SubscriptionStatus.PAST_DUE:
            changes.update(status=SubscriptionStatus.ACTIVE, status_at=created, stripe_status="active")
    else:
        changes.update(status=SubscriptionStatus.PAST_DUE, status_at=created, stripe_status="past_due")
    services.change_subscription(sub, **changes)
    return "processed", sub.tenant_id


HANDLERS: dict[str, Callable[[dict[str, Any], datetime], tuple[str, Any]]] = {
    "customer.subscription.created": on_subscription,
    "customer.subscription.updated": on_subscription,
    "customer.subscription.paused": on_subscription,
    "customer.subscription.resumed": on_subscription,
    "customer.subscription.deleted": lambda obj, created: on_subscription(obj, created, deleted=True),
    "invoice.paid": lambda obj, created: _on_invoice(obj, created, paid=True),
    "invoice.payment_failed": lambda obj, created: _on_invoice(obj, created, paid=False),
}
