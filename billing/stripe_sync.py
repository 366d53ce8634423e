"""Stripe through the official ``stripe`` library: customers, Checkout, Billing Portal, meter events.

Usage reaches Stripe only from the ledger: ``sync_meter_events`` (a periodic RQ job on the ``maintenance``
queue, see ``billing.periodic``) sends each ``UsageEvent`` as one Billing Meter Event whose ``identifier`` is
the usage event's id. Stripe refuses a second event with the same identifier, so a retry after a timeout, a
crash between sending and recording, or two sync jobs racing can never bill twice. Included minutes are
modelled in Stripe, not here: the plan's metered price has a free first tier of the plan's included minutes.

A failed send stays ``pending`` with ``attempts``, ``last_error`` and ``next_attempt_at`` (exponential
backoff: ``STRIPE_SYNC_BACKOFF_SECONDS`` doubled per attempt, capped at ``STRIPE_SYNC_BACKOFF_MAX_SECONDS``);
after ``STRIPE_SYNC_MAX_ATTEMPTS`` it becomes ``failed`` and waits for staff ("Retry Stripe sync" in the
admin). Events of tenants without a Stripe customer (free tenants) become ``skipped``.

Without ``STRIPE_API_KEY`` nothing is sent: the ledger records everything and the sync logs that it is off.
``STRIPE_API_BASE`` points the library elsewhere (a local fake in tests, stripe-mock in development).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import MeterSync, Plan, Subscription, SyncState
from core.errors import ServiceError

logger = logging.getLogger(__name__)


def enabled() -> bool:
    return bool(settings.STRIPE_API_KEY)


def client() -> stripe.StripeClient:
    """A client for this call (settings may differ between calls, e.g. in tests)."""
    base = settings.STRIPE_API_BASE
    return stripe.StripeClient(
        settings.STRIPE_API_KEY,
        base_addresses={"api": base} if base else None,
        max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
    )


def require_enabled() -> None:
    """Raise ``BILLING_UNAVAILABLE`` (503) when no ``STRIPE_API_KEY`` is configured."""
    if not enabled():
        raise ServiceError(
            "BILLING_UNAVAILABLE",
            "Online payments are not configured on this installation (no STRIPE_API_KEY).",
        )


def _provider_error(exc: stripe.StripeError) -> ServiceError:
    logger.warning("Stripe call failed: %s", exc)
    return ServiceError(
        "PAYMENT_PROVIDER_ERROR",
        "The payment provider could not be reached or refused the request; try again shortly.",
        {"provider_message": getattr(exc, "user_message", None) or ""},
    )


# --- customers, Checkout, Billing Portal --------------------------------------------------------------------
# Stripe calls only: which tenant may check out, and recording the customer on the subscription, are
# ``billing.services``' (checkout_url, portal_url, stripe_customer), which calls these. This module does not
# import billing.services, so the two are not a circle.


def create_customer(tenant) -> str:
    """Create the tenant's Stripe customer; returns its id. The idempotency key is per tenant, so a retry or a
    second concurrent call gets the same customer back instead of a duplicate."""
    require_enabled()
    owner = tenant.memberships.filter(role="owner").select_related("user").order_by("created_at").first()
    params: dict[str, Any] = {
        "name": tenant.name,
        "metadata": {"tenant_id": str(tenant.pk), "tenant_slug": tenant.slug},
    }
    if owner and owner.user.email:
        params["email"] = owner.user.email
    try:
        options = {"idempotency_key": f"audioseal-customer-{tenant.pk}"}
        customer = client().v1.customers.create(params, options)
    except stripe.StripeError as exc:
        raise _provider_error(exc) from exc
    return customer.id


def create_checkout_session(tenant, plan: Plan, *, customer: str, success_url: str, cancel_url: str) -> str:
    """A Checkout Session (mode subscription) of ``customer`` for ``plan``; returns the page's URL."""
    require_enabled()
    line_items: list[dict[str, Any]] = []
    if plan.stripe_price_id:
        line_items.append({"price": plan.stripe_price_id, "quantity": 1})
    if plan.stripe_metered_price_id:
        line_items.append({"price": plan.stripe_metered_price_id})
    try:
        session = client().v1.checkout.sessions.create(
            {
                "mode": "subscription",
                "customer": customer,
                "line_items": line_items,
                "client_reference_id": str(tenant.pk),
                "subscription_data": {"metadata": {"tenant_id": str(tenant.pk), "plan": plan.code}},
                "success_url": success_url,
                "cancel_url": cancel_url,
            }
        )
    except stripe.StripeError as exc:
        raise _provider_error(exc) from exc
    return session.url


def create_portal_session(*, customer: str, return_url: str) -> str:
    """A Billing Portal session of ``customer``; returns the page's URL."""
    require_enabled()
    try:
        session = client().v1.billing_portal.sessions.create({"customer": customer, "return_url": return_url})
    except stripe.StripeError as exc:
        raise _provider_error(exc) from exc
    return session.url


# --- meter events from the ledger ---------------------------------------------------------------------------


def backoff(attempts: int) -> timedelta:
    """Delay before attempt ``attempts + 1``: base × 2^(attempts − 1), capped."""
    seconds = settings.STRIPE_SYNC_BACKOFF_SECONDS * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(seconds, settings.STRIPE_SYNC_BACKOFF_MAX_SECONDS))


def _is_duplicate_identifier(exc: stripe.StripeError) -> bool:
    """Stripe already holds an event with this identifier: an earlier attempt got through."""
    if not isinstance(exc, stripe.InvalidRequestError):
        return False
    text = f"{getattr(exc, 'code', '') or ''} {exc.user_message or ''}".lower()
    return "identifier" in text and ("already" in text or "duplicate" in text or "exists" in text)


def _meter_params(row: MeterSync, customer: str) -> dict[str, Any]:
    event = row.event
    return {
        "event_name": settings.STRIPE_METER_EVENT_NAME,
        "identifier": str(event.pk),
        "timestamp": int(event.created_at.timestamp()),
        "payload": {"stripe_customer_id": customer, "value": str(event.quantity), "kind": event.kind},
    }


def _next_due(now: datetime) -> MeterSync | None:
    return (
        MeterSync.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("event", "event__tenant")
        .filter(state=SyncState.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "event__created_at")
        .first()
    )


def sync_meter_events(batch_size: int | None = None) -> dict[str, int | bool]:
    """Send due usage events to Stripe as meter events. The periodic RQ job; safe to run concurrently.

    Each event is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` in its own transaction, so parallel runs
    share the work and a crash loses nothing (the row stays pending). Stops early when Stripe is
    unreachable; the rest stay due for the next run.
    """
    if not enabled():
        pending = MeterSync.objects.filter(state=SyncState.PENDING).count()
        logger.info("Stripe sync is off (no STRIPE_API_KEY): %d usage events recorded, not sent", pending)
        return {"enabled": False, "pending": pending}
    stripe_client = client()
    report: Counter[str] = Counter()
    for _ in range(batch_size or settings.STRIPE_SYNC_BATCH_SIZE):
        outcome = _sync_one(stripe_client)
        if outcome is None:
            break
        report[outcome] += 1
        if outcome == "unreachable":
            break
    result: dict[str, int | bool] = {"enabled": True, **report}
    if report:
        logger.info("Stripe meter sync: %s", dict(report))
    return result


def _sync_one(stripe_client: stripe.StripeClient) -> str | None:
    now = timezone.now()
    with transaction.atomic():
        row = _next_due(now)
        if row is None:
            return None
        sub = Subscription.objects.filter(tenant_id=row.event.tenant_id).first()
        customer = sub.stripe_customer_id if sub else ""
        if not customer:
            _record(row, state=SyncState.SKIPPED, last_error="The tenant has no Stripe customer.", now=now)
            return "skipped"
        try:
            stripe_client.v1.billing.meter_events.create(_meter_params(row, customer))
        except stripe.StripeError as exc:
            if _is_duplicate_identifier(exc):
                _record(row, state=SyncState.SENT, sent_at=now, now=now, attempts=row.attempts + 1)
                return "sent"
            attempts = row.attempts + 1
            gave_up = attempts >= settings.STRIPE_SYNC_MAX_ATTEMPTS
            message = f"{type(exc).__name__}: {exc.user_message or exc}"[:2000]
            logger.warning("meter event %s not sent (attempt %d): %s", row.event_id, attempts, message)
            _record(
                row,
                state=SyncState.FAILED if gave_up else SyncState.PENDING,
                attempts=attempts,
                last_error=message,
                next_attempt_at=None if gave_up else now + backoff(attempts),
                now=now,
            )
            if isinstance(exc, stripe.APIConnectionError):
                return "unreachable"
            return "failed" if gave_up else "retry_scheduled"
        _record(row, state=SyncState.SENT, sent_at=now, now=now, attempts=row.attempts + 1, last_error="")
        return "sent"


def _record(row: MeterSync, *, now: datetime, **values: Any) -> None:
    values.setdefault("attempts", row.attempts)
    MeterSync.objects.filter(pk=row.pk).update(last_attempt_at=now, **values)


def retry_sync(event_ids) -> int:
    """Staff action: make failed/skipped/pending events due now (fresh backoff) and run a sync soon."""
    count = MeterSync.objects.filter(event_id__in=list(event_ids)).exclude(state=SyncState.SENT).update(
        state=SyncState.PENDING, attempts=0, next_attempt_at=timezone.now()
    )
    if count:
        transaction.on_commit(enqueue_sync)
    return count


def enqueue_sync() -> None:
    """Run ``sync_meter_events`` on the maintenance queue now (besides its periodic schedule)."""
    import django_rq

    try:
        django_rq.get_queue(settings.PERIODIC_QUEUE).enqueue("billing.stripe_sync.sync_meter_events")
    except Exception:  # noqa: BLE001 - the periodic run picks the events up anyway
        logger.warning("could not enqueue a Stripe sync now", exc_info=True)
