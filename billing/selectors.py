"""Billing's reads: a tenant's plan limits, its standing, its billing period and its usage.

Selectors never change billing state (HackSoft's split: writes are in ``billing.services``), with one
exception said where it happens: ``subscription_for`` gives a tenant that predates billing its subscription
on first read. The API, the dashboard, retention and the upload checks read limits and usage here.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Expression, F, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import Tenant
from billing.models import (
    PeriodUsage,
    Plan,
    QuotaGrant,
    Reservation,
    ReservationState,
    Subscription,
    SubscriptionStatus,
    UsageEvent,
)
from billing.seed import ensure_seed_plans
from core.errors import ServiceError


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


def request_log_days(tenant: Tenant) -> int:
    """Days the tenant's API request log is kept: its plan's ``request_log_days`` (at least one day)."""
    return max(1, int(subscription_for(tenant).plan.request_log_days))


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


def open_reservations(tenant: Tenant) -> int:
    """Jobs of ``tenant`` holding a reservation now: its queued and running jobs, as billing knows them.

    Billing's own count (not the jobs table's): a reservation is made when a job is submitted and closed in
    the job's final transition, in the same transactions as the job's status changes.
    """
    return Reservation.objects.filter(tenant=tenant, state=ReservationState.RESERVED).count()


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


def daily_usage(
    tenant: Tenant, since: datetime, until: datetime, series: str | Expression = "kind"
) -> list[dict[str, Any]]:
    """Billed seconds and jobs per UTC day and per ``series`` from the usage ledger (``UsageEvent``), for
    ``since <= created_at < until``: rows ``{"day": date, "series": ..., "seconds": int, "jobs": int}``, in day
    order. ``series`` is a ledger column (``"kind"``) or an expression over the ledger's row (the jobs app
    passes the job's API key, a column billing does not have). Days without usage are absent: the caller lays
    the days out. Cached results billed at zero count as jobs with 0 seconds."""
    column = F(series) if isinstance(series, str) else series
    rows = (
        UsageEvent.objects.filter(tenant=tenant, created_at__gte=since, created_at__lt=until)
        .annotate(day=TruncDate("created_at", tzinfo=UTC), series=column)
        .values("day", "series")
        .annotate(seconds=Sum("quantity"), jobs=Count("id"))
        .order_by("day", "series")
    )
    return [
        {"day": row["day"], "series": row["series"], "seconds": int(row["seconds"] or 0), "jobs": row["jobs"]}
        for row in rows
    ]


def public_plans() -> list[Plan]:
    """Plans offered in the dashboard's plan picker."""
    default_plan()  # makes sure the seed plans exist
    return list(Plan.objects.filter(is_public=True).order_by("sort_order", "code"))
