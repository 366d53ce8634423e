"""Billing operations that the API, the worker, the admin and the dashboard all call.

The hooks the platform calls (``job`` is a ``billing.contracts.BillableJob``, built by jobs: billing does not
know the Job model):

- ``reserve(job)``: inside the job's creation transaction. Locks the tenant's ``PeriodUsage`` row, checks the
  subscription, the concurrency limit (the tenant's open reservations) and the minutes, and reserves the
  job's billable seconds. Raises ``ServiceError`` (402 ``QUOTA_EXCEEDED`` / ``SUBSCRIPTION_INACTIVE``, 429
  ``CONCURRENCY_LIMIT``, 403 ``TENANT_SUSPENDED``), which rolls the whole submission back.
- ``on_job_final(job)``: inside every final transition. ``settle`` (succeeded: one ``UsageEvent``) or
  ``release`` (failed, canceled: nothing billed); both are idempotent.
- ``on_tenant_created(tenant)``: gives the tenant its subscription on the default plan (on accounts'
  ``tenant_created`` signal).
- ``limits_for(tenant)``: the tenant's effective limits (plan, staff overrides, capped by the settings'
  ceilings) for upload checks, rate limits and retention.

The one writer of a subscription: ``change_subscription`` (plan, state, period, overrides, Stripe ids); plan
changes, the Stripe webhooks, the admin and the benchmark all go through it.

For the dashboard: ``usage_summary``, ``usage_history``, ``public_plans``, ``checkout_url``, ``portal_url``
(the Stripe calls themselves are ``billing.stripe_sync``'s, which does not import this module).
For staff and tests: ``change_plan``, ``grant_minutes``.
"""

from __future__ import annotations

import calendar
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Sum
from django.utils import timezone

from accounts.models import Tenant
from billing import stripe_sync
from billing.contracts import BillableJob
from billing.models import (
    MeterSync,
    PeriodUsage,
    Plan,
    QuotaGrant,
    Reservation,
    ReservationState,
    Subscription,
    SubscriptionStatus,
    SyncState,
    UsageEvent,
)
from billing.seed import ensure_seed_plans
from core.errors import ServiceError

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)

# --- plans and limits ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What a tenant may do right now. File size, duration and the video limits are already capped by the
    global ceilings."""

    plan_code: str
    included_minutes: int
    overage_allowed: bool
    max_file_bytes: int
    max_audio_seconds: float
    max_video_pixels: int
    max_video_fps: float
    max_video_pixel_rate: int
    max_concurrent_jobs: int
    retention_days: int
    rate_limits: dict[str, int] = field(default_factory=dict)

    def rate_limit(self, family: str) -> int | None:
        """Requests per minute for an endpoint family; None means unlimited."""
        value = self.rate_limits.get(family, self.rate_limits.get("default"))
        return None if value is None else int(value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_plan() -> Plan:
    """The plan new tenants start on (``BILLING_DEFAULT_PLAN``); re-seeds the plans if they are missing."""
    code = settings.BILLING_DEFAULT_PLAN
    plan = Plan.objects.filter(code=code).first()
    if plan is None:
        ensure_seed_plans(Plan)
        plan = Plan.objects.filter(code=code).first() or Plan.objects.order_by("sort_order", "code").first()
    return plan


def calendar_month(now: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar month containing ``now``: the first period of a subscription Stripe does not manage."""
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, _add_months(start, 1, 1)


def _add_months(moment: datetime, months: int, anchor_day: int) -> datetime:
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def subscription_for(tenant: Tenant, *, plan: Plan | None = None) -> Subscription:
    """The tenant's subscription, created on the default plan for tenants that predate billing."""
    sub = Subscription.objects.select_related("plan").filter(tenant=tenant).first()
    if sub is not None:
        return sub
    start, end = calendar_month(timezone.now())
    try:
        with transaction.atomic():
            return Subscription.objects.create(
                tenant=tenant, plan=plan or default_plan(), current_period_start=start, current_period_end=end
            )
    except IntegrityError:  # created concurrently
        return Subscription.objects.select_related("plan").get(tenant=tenant)


def effective_limits(sub: Subscription) -> Limits:
    """The plan's limits with the tenant's staff overrides, file size, duration and video capped by the settings."""
    plan = sub.plan

    def pick(override: Any, value: Any) -> Any:
        return value if override is None else override

    rate_limits = {**(plan.rate_limits or {}), **(sub.rate_limits_override or {})}
    return Limits(
        plan_code=plan.code,
        included_minutes=pick(sub.included_minutes_override, plan.included_minutes),
        overage_allowed=pick(sub.overage_allowed_override, plan.overage_allowed),
        max_file_bytes=min(pick(sub.max_file_bytes_override, plan.max_file_bytes), settings.MAX_UPLOAD_BYTES),
        max_audio_seconds=min(
            pick(sub.max_audio_seconds_override, plan.max_audio_seconds), settings.MAX_AUDIO_SECONDS
        ),
        max_video_pixels=min(pick(sub.max_video_pixels_override, plan.max_video_pixels), settings.MAX_VIDEO_PIXELS),
        max_video_fps=min(pick(sub.max_video_fps_override, plan.max_video_fps), settings.MAX_VIDEO_FPS),
        max_video_pixel_rate=min(
            pick(sub.max_video_pixel_rate_override, plan.max_video_pixel_rate), settings.MAX_VIDEO_PIXEL_RATE
        ),
        max_concurrent_jobs=pick(sub.max_concurrent_jobs_override, plan.max_concurrent_jobs),
        retention_days=pick(sub.retention_days_override, plan.retention_days),
        rate_limits={k: int(v) for k, v in rate_limits.items() if v is not None},
    )


def limits_for(tenant: Tenant | None) -> Limits:
    """Effective limits for ``tenant``; with no tenant, the global settings (the ceilings) alone."""
    if tenant is None:
        return Limits(
            plan_code="",
            included_minutes=0,
            overage_allowed=False,
            max_file_bytes=settings.MAX_UPLOAD_BYTES,
            max_audio_seconds=settings.MAX_AUDIO_SECONDS,
            max_video_pixels=settings.MAX_VIDEO_PIXELS,
            max_video_fps=settings.MAX_VIDEO_FPS,
            max_video_pixel_rate=settings.MAX_VIDEO_PIXEL_RATE,
            max_concurrent_jobs=0,
            retention_days=0,
        )
    return effective_limits(subscription_for(tenant))


@dataclass(frozen=True)
class Standing:
    """What billing decided about a tenant at one moment: its limits, whether it may submit at all, and the
    billing period now. Read once per request (``billing.ratelimit.standing_for_request``) and handed to
    ``reserve``, so a submission reads the subscription once, not three times."""

    tenant_id: Any
    limits: Limits
    refusal: ServiceError | None
    period_start: datetime
    period_end: datetime


def standing_for(tenant: Tenant, now: datetime | None = None) -> Standing:
    """The tenant's ``Standing`` now (one query: the subscription with its plan)."""
    now = now or timezone.now()
    sub = subscription_for(tenant)
    start, end = period_bounds(sub, now)
    return Standing(tenant.pk, effective_limits(sub), submission_refusal(tenant, sub, now), start, end)


def period_bounds(sub: Subscription, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The billing period containing ``now``.

    Stripe moves the stored period forward through webhooks; until it does (or for tenants without Stripe)
    the stored period is rolled forward month by month, anchored on its start day. Pure: nothing is written.
    """
    now = now or timezone.now()
    start, end = sub.current_period_start, sub.current_period_end
    anchor = start.day
    while now >= end:
        start, end = end, _add_months(end, 1, anchor)
    return start, end


def granted_seconds(tenant: Tenant, period_start: datetime) -> int:
    """Seconds staff granted the tenant for the period starting at ``period_start`` (on top of the plan)."""
    grants = QuotaGrant.objects.filter(tenant=tenant, period_start=period_start)
    minutes = grants.aggregate(m=Sum("minutes"))["m"]
    return int(minutes or 0) * 60


def billable_seconds(seconds: float | None) -> int:
    """Whole seconds billed for an input: rounded up per job (a 0.2 s clip is 1 s); 0 for no audio."""
    if not seconds or seconds <= 0:
        return 0
    return max(1, math.ceil(round(float(seconds), 3)))


# --- the one writer of subscription state -------------------------------------------------------------------


class _Unset:
    """Marks a ``change_subscription`` argument as not given (``None`` is a value: "no date", "the plan's")."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()

# The plan limits staff may override per tenant: ``<name>_override`` on Subscription; None = the plan's value.
OVERRIDABLE_LIMITS = (
    "included_minutes", "overage_allowed", "max_file_bytes", "max_audio_seconds", "max_video_pixels",
    "max_video_fps", "max_video_pixel_rate", "max_concurrent_jobs", "rate_limits", "retention_days",
)


@transaction.atomic
def change_subscription(
    target: Tenant | Subscription,
    *,
    plan: Plan | str = UNSET,
    status: str = UNSET,
    status_at: datetime | None = None,
    past_due_since: datetime | None = UNSET,
    period: tuple[datetime, datetime] = UNSET,
    overrides: Mapping[str, Any] = UNSET,
    stripe_customer_id: str = UNSET,
    stripe_subscription_id: str = UNSET,
    stripe_status: str = UNSET,
    stripe_state_at: datetime | None = UNSET,
) -> Subscription:
    """Change a tenant's subscription: the only code that writes an existing ``Subscription`` row.

    Plan changes, the Stripe webhook handlers, the Stripe customer, the admin and the benchmark all come here,
    so the rules of the row hold whoever writes: the row is locked while it changes (a webhook and a staff
    edit cannot interleave), only the given fields are written (arguments left out keep their value), and
    ``past_due_since`` follows ``status``: a move to past due keeps the first date (or takes ``status_at``,
    default now), any other status clears it, unless ``past_due_since`` is given explicitly.

    ``overrides`` maps names of ``OVERRIDABLE_LIMITS`` to a value, or to None for the plan's value.
    Returns the saved subscription (its plan loaded).
    """
    if isinstance(target, Subscription):
        pk = target.pk
    else:
        pk = subscription_for(target).pk
    sub = Subscription.objects.select_for_update(of=("self",)).select_related("plan").get(pk=pk)
    changed: list[str] = []

    def put(field_name: str, value: Any) -> None:
        setattr(sub, field_name, value)
        changed.append(field_name)

    if plan is not UNSET:
        put("plan", Plan.objects.get(code=plan) if isinstance(plan, str) else plan)
    if status is not UNSET:
        put("status", status)
        if past_due_since is UNSET:
            if status == SubscriptionStatus.PAST_DUE:
                past_due_since = sub.past_due_since or status_at or timezone.now()
            else:
                past_due_since = None
    if past_due_since is not UNSET:
        put("past_due_since", past_due_since)
    if period is not UNSET:
        put("current_period_start", period[0])
        put("current_period_end", period[1])
    if overrides is not UNSET:
        unknown = set(overrides) - set(OVERRIDABLE_LIMITS)
        if unknown:
            raise ValueError(f"not an overridable limit: {', '.join(sorted(unknown))}")
        for name, value in overrides.items():
            put(f"{name}_override", (value or {}) if name == "rate_limits" else value)
    for name, value in (
        ("stripe_customer_id", stripe_customer_id),
        ("stripe_subscription_id", stripe_subscription_id),
        ("stripe_status", stripe_status),
        ("stripe_state_at", stripe_state_at),
    ):
        if value is not UNSET:
            put(name, value)
    if changed:
        sub.save(update_fields=[*dict.fromkeys(changed), "updated_at"])
    return sub


def change_plan(tenant: Tenant, plan: Plan | str, *, status: str = SubscriptionStatus.ACTIVE) -> Subscription:
    """Put a tenant on a plan (staff action, tests). Stripe-managed tenants change plan through Stripe."""
    return change_subscription(tenant, plan=plan, status=status)


def grant_minutes(
    tenant: Tenant,
    minutes: int,
    *,
    reason: str = "",
    granted_by: AbstractBaseUser | None = None,
    period_start: datetime | None = None,
) -> QuotaGrant:
    """Give a tenant extra minutes for one billing period (the current one unless given)."""
    if period_start is None:
        period_start, _ = period_bounds(subscription_for(tenant))
    return QuotaGrant.objects.create(
        tenant=tenant, period_start=period_start, minutes=minutes, reason=reason, granted_by=granted_by
    )


# --- hooks called by accounts and jobs ----------------------------------------------------------------------


def on_tenant_created(tenant: Tenant) -> None:
    """Give a new tenant its subscription on the default plan (``BILLING_DEFAULT_PLAN``).

    Called on ``accounts.signals.tenant_created`` (``billing.receivers``): accounts cannot call billing.
    """
    subscription_for(tenant)


def submission_refusal(tenant: Tenant, sub: Subscription, now: datetime | None = None) -> ServiceError | None:
    """Why this tenant may not submit work now (suspended, canceled, past due beyond grace), or None."""
    now = now or timezone.now()
    if not tenant.is_active:
        return ServiceError("TENANT_SUSPENDED", "This account is suspended: jobs can be read but not created.")
    if sub.status == SubscriptionStatus.CANCELED:
        return ServiceError(
            "SUBSCRIPTION_INACTIVE",
            "The subscription is canceled: jobs can be read but not created. Subscribe again to continue.",
            {"subscription_status": sub.status},
        )
    if sub.status == SubscriptionStatus.PAST_DUE:
        grace = timedelta(days=settings.BILLING_PAST_DUE_GRACE_DAYS)
        since = sub.past_due_since or now
        if now >= since + grace:
            return ServiceError(
                "SUBSCRIPTION_INACTIVE",
                f"Payment has been past due since {since:%Y-%m-%d} and the {grace.days}-day grace period has "
                "ended: jobs can be read but not created until the invoice is paid.",
                {"subscription_status": sub.status, "past_due_since": since.isoformat()},
            )
    return None


def _locked_usage(tenant_id: Any, start: datetime, end: datetime) -> PeriodUsage:
    """The period's usage row, created if needed, locked until the transaction ends.

    FOR NO KEY UPDATE (not FOR UPDATE) so inserting rows that reference it (reservations) is not blocked.
    """
    queryset = PeriodUsage.objects.select_for_update(no_key=True)
    try:
        return queryset.get(tenant_id=tenant_id, period_start=start)
    except PeriodUsage.DoesNotExist:
        pass
    try:
        with transaction.atomic():
            PeriodUsage.objects.create(tenant_id=tenant_id, period_start=start, period_end=end)
    except IntegrityError:  # another submission created it first; the lock below waits for it
        pass
    return queryset.get(tenant_id=tenant_id, period_start=start)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def open_reservations(tenant: Tenant) -> int:
    """Jobs of ``tenant`` holding a reservation now: its queued and running jobs, as billing knows them.

    Billing's own count (not the jobs table's): a reservation is made when a job is submitted and closed in
    the job's final transition, in the same transactions as the job's status changes.
    """
    return Reservation.objects.filter(tenant=tenant, state=ReservationState.RESERVED).count()


# Counting the tenant's open reservations, summing its grants, taking the seconds and recording the
# reservation, in ONE statement that runs after the period row's lock was taken (so its snapshot sees every
# reservation committed before: concurrent submissions of a tenant check one after another).
_RESERVE_SQL = """
WITH active AS (
        SELECT count(*) AS n FROM billing_reservation WHERE tenant_id = %(tenant)s AND state = %(reserved)s),
    granted AS (
        SELECT coalesce(sum(minutes), 0) * 60 AS seconds FROM billing_quotagrant
        WHERE tenant_id = %(tenant)s AND period_start = %(period_start)s),
    verdict AS (
        SELECT active.n AS active, granted.seconds AS granted,
               active.n < %(max_concurrent)s AS concurrency_ok,
               (%(overage)s OR %(committed)s + %(seconds)s <= %(included)s + granted.seconds) AS quota_ok
        FROM active, granted),
    bump AS (
        UPDATE billing_periodusage SET reserved_seconds = reserved_seconds + %(seconds)s
        WHERE id = %(usage)s AND (SELECT concurrency_ok AND quota_ok FROM verdict) RETURNING id),
    made AS (
        INSERT INTO billing_reservation (job_id, tenant_id, period_id, seconds, state, created_at)
        SELECT %(job)s, %(tenant)s, bump.id, %(seconds)s, %(reserved)s, %(now)s FROM bump RETURNING id)
SELECT verdict.active, verdict.granted, verdict.concurrency_ok, (SELECT id FROM made) FROM verdict
"""


@transaction.atomic(savepoint=False)  # inside the submission's transaction: no savepoint round trips
def reserve(job: BillableJob, standing: Standing | None = None) -> Reservation:
    """Reserve the job's billable seconds against its tenant's quota, or refuse the submission.

    Must run inside the transaction that inserts the job: the row lock taken here is held until that commits,
    so concurrent submissions of one tenant check and reserve one after another and the limits hold exactly.
    ``standing`` is what the request already read (``standing_for``); without it the tenant is read fresh.
    Two statements in the common case: lock the period row, then check and reserve (``_RESERVE_SQL``).
    """
    now = timezone.now()
    if standing is None:
        standing = standing_for(Tenant.objects.get(pk=job.tenant_id), now)
    if standing.refusal is not None:
        raise standing.refusal
    limits, start, end = standing.limits, standing.period_start, standing.period_end
    usage = _locked_usage(job.tenant_id, start, end)
    seconds = billable_seconds(job.audio_seconds)
    with connection.cursor() as cursor:
        cursor.execute(_RESERVE_SQL, {
            "tenant": job.tenant_id, "reserved": ReservationState.RESERVED, "period_start": start,
            "max_concurrent": limits.max_concurrent_jobs, "overage": limits.overage_allowed,
            "committed": usage.used_seconds + usage.reserved_seconds, "seconds": seconds,
            "included": limits.included_minutes * 60, "usage": usage.pk, "job": job.job_id, "now": now,
        })
        active, granted, concurrency_ok, reservation_id = cursor.fetchone()
    if reservation_id is not None:
        return Reservation(pk=reservation_id, job_id=job.job_id, tenant_id=job.tenant_id, period=usage,
                           seconds=seconds, state=ReservationState.RESERVED, created_at=now)
    if not concurrency_ok:
        raise ServiceError(
            "CONCURRENCY_LIMIT",
            f"The plan allows {limits.max_concurrent_jobs} queued or running jobs at once and {active} are "
            "queued or running; wait for one to finish.",
            {"limit": limits.max_concurrent_jobs, "current": active, "plan": limits.plan_code},
            headers={"Retry-After": str(settings.BILLING_CONCURRENCY_RETRY_AFTER)},
        )
    allowance = limits.included_minutes * 60 + int(granted)
    committed = usage.used_seconds + usage.reserved_seconds
    raise ServiceError(
        "QUOTA_EXCEEDED",
        f"This job needs {_minutes(seconds)} audio minutes but only "
        f"{_minutes(max(0, allowance - committed))} of the {_minutes(allowance)} included this period "
        f"are left ({_minutes(usage.used_seconds)} used, {_minutes(usage.reserved_seconds)} reserved by "
        f"running jobs). The quota renews on {end:%Y-%m-%d}; upgrade the plan for more.",
        {
            "limit_seconds": allowance,
            "used_seconds": usage.used_seconds,
            "reserved_seconds": usage.reserved_seconds,
            "requested_seconds": seconds,
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
            "plan": limits.plan_code,
        },
    )


def on_job_final(job: BillableJob) -> None:
    """Settle (succeeded) or release (failed, canceled) the job's reservation, inside the final transition."""
    if job.succeeded:
        settle(job)
    else:
        release(job)


@transaction.atomic
def settle(job: BillableJob) -> UsageEvent | None:
    """Turn the job's reservation into one ``UsageEvent`` for the seconds it actually consumed.

    Idempotent: a settled or released reservation, or a job that already has its event, changes nothing.
    A succeeded job without a reservation (created before billing existed) is still billed, once.
    """
    reservation = Reservation.objects.select_for_update().filter(job_id=job.job_id).first()
    if reservation is not None and reservation.state != ReservationState.RESERVED:
        return None
    if reservation is None:
        if UsageEvent.objects.filter(job_id=job.job_id, metric=UsageEvent.METRIC_AUDIO_SECONDS).exists():
            return None
        tenant = Tenant.objects.get(pk=job.tenant_id)
        usage = _locked_usage(tenant.pk, *period_bounds(subscription_for(tenant)))
    else:
        usage = PeriodUsage.objects.select_for_update(no_key=True).get(pk=reservation.period_id)
    quantity = billable_seconds(job.audio_seconds)
    try:
        with transaction.atomic():
            event = UsageEvent.objects.create(
                tenant_id=job.tenant_id,
                job_id=job.job_id,
                metric=UsageEvent.METRIC_AUDIO_SECONDS,
                kind=job.kind,
                quantity=quantity,
                period_start=usage.period_start,
                period_end=usage.period_end,
            )
    except IntegrityError:  # the job's event exists: settled already
        return None
    MeterSync.objects.create(event=event, state=SyncState.PENDING, next_attempt_at=timezone.now())
    held = reservation.seconds if reservation else 0
    PeriodUsage.objects.filter(pk=usage.pk).update(
        reserved_seconds=F("reserved_seconds") - held, used_seconds=F("used_seconds") + quantity
    )
    if reservation is not None:
        Reservation.objects.filter(pk=reservation.pk).update(
            state=ReservationState.SETTLED, closed_at=timezone.now()
        )
    return event


@transaction.atomic
def release(job: BillableJob) -> bool:
    """Free the job's reservation without billing it. Idempotent; False when there was nothing to release."""
    reservation = Reservation.objects.select_for_update().filter(
        job_id=job.job_id, state=ReservationState.RESERVED
    ).first()
    if reservation is None:
        return False
    PeriodUsage.objects.filter(pk=reservation.period_id).update(
        reserved_seconds=F("reserved_seconds") - reservation.seconds
    )
    Reservation.objects.filter(pk=reservation.pk).update(
        state=ReservationState.RELEASED, closed_at=timezone.now()
    )
    return True


# --- reading usage ------------------------------------------------------------------------------------------


def usage_summary(tenant: Tenant, now: datetime | None = None) -> dict[str, Any]:
    """The current period for ``GET /api/v1/usage`` and the dashboard: minutes used / reserved / included,
    usage per job kind, the subscription and the effective limits."""
    sub = subscription_for(tenant)
    start, end = period_bounds(sub, now)
    limits = effective_limits(sub)
    usage = PeriodUsage.objects.filter(tenant=tenant, period_start=start).first()
    used = usage.used_seconds if usage else 0
    reserved = usage.reserved_seconds if usage else 0
    granted = granted_seconds(tenant, start)
    included = limits.included_minutes * 60 + granted
    by_kind = (
        UsageEvent.objects.filter(tenant=tenant, period_start=start)
        .values("kind")
        .annotate(seconds=Sum("quantity"), jobs=Count("id"))
        .order_by("kind")
    )
    refusal = submission_refusal(tenant, sub)
    return {
        "period": {"start": start, "end": end},
        "plan": {"code": sub.plan.code, "name": sub.plan.name},
        "subscription": {
            "status": sub.status,
            "past_due_since": sub.past_due_since,
            "can_submit": refusal is None,
            "stripe_managed": bool(sub.stripe_subscription_id),
        },
        "minutes": {
            "included": included / 60,
            "granted": granted / 60,
            "used": used / 60,
            "reserved": reserved / 60,
            "remaining": max(0, included - used - reserved) / 60,
            "overage": max(0, used - included) / 60,
        },
        "seconds": {"included": included, "used": used, "reserved": reserved},
        "by_kind": [
            {
                "kind": row["kind"], "seconds": row["seconds"], "minutes": row["seconds"] / 60,
                "jobs": row["jobs"],
            }
            for row in by_kind
        ],
        "active_jobs": open_reservations(tenant),
        "limits": limits.as_dict(),
    }


def usage_history(tenant: Tenant, periods: int = 12) -> list[dict[str, Any]]:
    """Used and reserved minutes for the tenant's last ``periods`` billing periods, newest first (charts)."""
    rows = PeriodUsage.objects.filter(tenant=tenant).order_by("-period_start")[:periods]
    return [
        {
            "period_start": row.period_start,
            "period_end": row.period_end,
            "used_minutes": row.used_seconds / 60,
            "reserved_minutes": row.reserved_seconds / 60,
        }
        for row in rows
    ]


def public_plans() -> list[Plan]:
    """Plans offered in the dashboard's plan picker."""
    default_plan()  # makes sure the seed plans exist
    return list(Plan.objects.filter(is_public=True).order_by("sort_order", "code"))


# --- Stripe entry points for the dashboard ------------------------------------------------------------------


def stripe_customer(tenant: Tenant) -> str:
    """The tenant's Stripe customer id, creating the customer once and recording it on the subscription.

    The row is locked while we check and record, so two first checkouts at once record one customer (and
    Stripe's idempotency key makes them get the same one anyway).
    """
    stripe_sync.require_enabled()
    sub = subscription_for(tenant)
    if sub.stripe_customer_id:
        return sub.stripe_customer_id
    customer = stripe_sync.create_customer(tenant)
    with transaction.atomic():
        sub = Subscription.objects.select_for_update(of=("self",)).get(pk=sub.pk)
        if not sub.stripe_customer_id:
            sub = change_subscription(sub, stripe_customer_id=customer)
    return sub.stripe_customer_id


def checkout_url(tenant: Tenant, plan: Plan | str, *, success_url: str, cancel_url: str) -> str:
    """A Stripe Checkout page where the tenant subscribes to ``plan``.

    Raises ServiceError BILLING_UNAVAILABLE without ``STRIPE_API_KEY``, PLAN_NOT_PURCHASABLE for a plan
    without a Stripe price, ALREADY_SUBSCRIBED for a tenant with a live Stripe subscription (Checkout cannot
    modify one: such tenants change plan in the Billing Portal).
    """
    if isinstance(plan, str):
        plan = Plan.objects.get(code=plan)
    stripe_sync.require_enabled()
    if not (plan.stripe_price_id or plan.stripe_metered_price_id):
        raise ServiceError(
            "PLAN_NOT_PURCHASABLE", f"The {plan.name} plan has no Stripe price.", {"plan": plan.code}
        )
    sub = subscription_for(tenant)
    if sub.stripe_subscription_id and sub.status != SubscriptionStatus.CANCELED:
        raise ServiceError(
            "ALREADY_SUBSCRIBED",
            "This account already has a subscription: change plan in the billing portal.",
            {"plan": sub.plan.code, "status": sub.status},
        )
    return stripe_sync.create_checkout_session(
        tenant, plan, customer=stripe_customer(tenant), success_url=success_url, cancel_url=cancel_url
    )


def portal_url(tenant: Tenant, *, return_url: str) -> str:
    """A Stripe Billing Portal page (payment methods, invoices, plan changes, cancellation)."""
    stripe_sync.require_enabled()
    return stripe_sync.create_portal_session(customer=stripe_customer(tenant), return_url=return_url)
