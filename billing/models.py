"""Plans, subscriptions, quota reservations and the append-only usage ledger.

Money-relevant facts live in PostgreSQL, never only in Redis:

- ``Plan``: what a tenant may do (included minutes, overage, file/duration/video/concurrency/rate limits,
  retention)
  and which Stripe prices it maps to. Seeded (Free, Pro, Enterprise) by a data migration; staff edit them.
- ``Subscription``: one per tenant: its plan, its subscription state, its current billing period, its Stripe
  ids and staff overrides of the plan's limits.
- ``PeriodUsage``: one row per tenant and billing period holding the running counters (``reserved_seconds``,
  ``used_seconds``). Submissions lock this row (``SELECT … FOR NO KEY UPDATE``) so the quota check and the
  reservation are one atomic step however many requests arrive at once.
- ``Reservation``: the seconds one job holds while it is queued or running; settled into a ``UsageEvent``
  when it succeeds, released when it fails or is canceled. Its ``state`` makes settle/release idempotent.
- ``UsageEvent``: the ledger. Append-only: ``save()`` of an existing row, ``delete()`` and queryset
  ``update()``/``delete()`` raise, and a database trigger refuses UPDATE/DELETE from any other client too.
- ``MeterSync``: the mutable Stripe sync state of one usage event (kept out of the ledger row so the ledger
  can stay immutable).
- ``QuotaGrant``: extra minutes staff grant a tenant for one period (audited: who, why, when).
- ``StripeEvent``: every Stripe webhook event processed, by id, so a replayed event is applied once.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class AppendOnlyError(Exception):
    """Raised when code tries to change or remove a ledger row."""


class Plan(models.Model):
    code = models.SlugField(max_length=40, unique=True, help_text="Stable identifier, e.g. free, pro.")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True, default="")
    included_minutes = models.PositiveIntegerField(help_text="Audio minutes included per billing period.")
    overage_allowed = models.BooleanField(
        default=False,
        help_text="Past the included minutes: allowed and metered, or refused with QUOTA_EXCEEDED.",
    )
    max_file_bytes = models.BigIntegerField(help_text="Largest upload (capped by MAX_UPLOAD_BYTES).")
    max_audio_seconds = models.FloatField(
        help_text="Longest input audio (capped by the MAX_AUDIO_SECONDS setting)."
    )
    max_video_pixels = models.PositiveIntegerField(
        default=1920 * 1080,
        help_text="Largest beat-sync video frame, width × height in pixels (capped by MAX_VIDEO_PIXELS).",
    )
    max_video_fps = models.FloatField(
        default=60, help_text="Highest beat-sync video frame rate (capped by MAX_VIDEO_FPS)."
    )
    max_video_pixel_rate = models.BigIntegerField(
        default=1920 * 1080 * 60,
        help_text="Most beat-sync video pixels per second, width × height × fps (capped by MAX_VIDEO_PIXEL_RATE).",
    )
    max_concurrent_jobs = models.PositiveIntegerField(help_text="Queued + running jobs at once.")
    rate_limits = models.JSONField(
        default=dict,
        blank=True,
        help_text='Requests per minute per API key and endpoint family, e.g. {"watermark": 60, '
        '"emotion": 60, "media": 20, "read": 600, "default": 120}. A family not listed uses "default"; '
        'no "default": unlimited.',
    )
    retention_days = models.PositiveIntegerField(default=30, help_text="How long job files are kept.")
    request_log_days = models.PositiveIntegerField(
        default=7, help_text="How long the API request log (the dashboard's Request log page) is kept."
    )
    stripe_price_id = models.CharField(
        max_length=100, blank=True, default="", help_text="Recurring (licensed) Stripe price of the plan."
    )
    stripe_metered_price_id = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="Stripe price attached to the audio-seconds meter (its free first tier should equal the "
        "included minutes).",
    )
    is_public = models.BooleanField(default=True, help_text="Offered in the dashboard's plan picker.")
    sort_order = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sort_order", "code"]

    def __str__(self) -> str:
        return self.name


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    TRIALING = "trialing", "Trialing"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"


class Subscription(models.Model):
    tenant = models.OneToOneField("accounts.Tenant", on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    past_due_since = models.DateTimeField(null=True, blank=True)
    stripe_customer_id = models.CharField(max_length=100, blank=True, default="", db_index=True)
    stripe_subscription_id = models.CharField(max_length=100, blank=True, default="", db_index=True)
    stripe_status = models.CharField(max_length=32, blank=True, default="", help_text="Stripe's own status.")
    stripe_state_at = models.DateTimeField(
        null=True, blank=True, help_text="Creation time of the last Stripe event applied (older: ignored)."
    )

    # Staff overrides of the plan's limits for this tenant (empty: the plan's value).
    included_minutes_override = models.PositiveIntegerField(null=True, blank=True)
    overage_allowed_override = models.BooleanField(null=True, blank=True)
    max_file_bytes_override = models.BigIntegerField(null=True, blank=True)
    max_audio_seconds_override = models.FloatField(null=True, blank=True)
    max_video_pixels_override = models.PositiveIntegerField(null=True, blank=True)
    max_video_fps_override = models.FloatField(null=True, blank=True)
    max_video_pixel_rate_override = models.BigIntegerField(null=True, blank=True)
    max_concurrent_jobs_override = models.PositiveIntegerField(null=True, blank=True)
    rate_limits_override = models.JSONField(
        default=dict, blank=True, help_text="Merged over the plan's rate limits, e.g. {\"watermark\": 500}."
    )
    retention_days_override = models.PositiveIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant__name"]

    def __str__(self) -> str:
        return f"{self.tenant} on {self.plan} ({self.status})"


class PeriodUsage(models.Model):
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="period_usage")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    reserved_seconds = models.BigIntegerField(default=0, help_text="Held by queued and running jobs.")
    used_seconds = models.BigIntegerField(default=0, help_text="Settled into usage events.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period_start"]
        verbose_name_plural = "period usage"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "period_start"], name="unique_period_usage"),
            models.CheckConstraint(condition=models.Q(reserved_seconds__gte=0), name="reserved_not_negative"),
            models.CheckConstraint(condition=models.Q(used_seconds__gte=0), name="used_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} {self.period_start:%Y-%m-%d}"


class ReservationState(models.TextChoices):
    RESERVED = "reserved", "Reserved"
    SETTLED = "settled", "Settled"
    RELEASED = "released", "Released"


class Reservation(models.Model):
    # The job's id, not a foreign key: billing sits below jobs and does not know the Job model
    # (``billing.contracts.BillableJob`` is all it is told). One reservation per job.
    job_id = models.UUIDField(unique=True, help_text="The job holding the seconds (jobs.Job id).")
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="reservations")
    period = models.ForeignKey(PeriodUsage, on_delete=models.PROTECT, related_name="reservations")
    seconds = models.BigIntegerField()
    state = models.CharField(
        max_length=10, choices=ReservationState.choices, default=ReservationState.RESERVED
    )
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "state"], name="reservation_tenant_state")]

    def __str__(self) -> str:
        return f"{self.seconds}s for {self.job_id} ({self.state})"


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: they cannot be updated.")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: they cannot be deleted.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: they cannot be updated.")

    def update_or_create(self, *args, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: they cannot be updated.")


class UsageEvent(models.Model):
    """One billed quantity, written once when a job succeeds. Its id is the Stripe meter event identifier."""

    METRIC_AUDIO_SECONDS = "audio_seconds"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="usage_events")
    # The job's id, not a foreign key (see Reservation.job_id): the ledger outlives any job row.
    job_id = models.UUIDField(db_index=True, help_text="The job the usage came from (jobs.Job id).")
    metric = models.CharField(max_length=40, default=METRIC_AUDIO_SECONDS)
    kind = models.CharField(max_length=32, help_text="The job kind the usage came from.")
    quantity = models.BigIntegerField(help_text="Whole seconds of audio (each job rounded up).")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["job_id", "metric"], name="one_usage_event_per_job_metric"),
            models.CheckConstraint(condition=models.Q(quantity__gte=0), name="usage_quantity_not_negative"),
        ]
        indexes = [models.Index(fields=["tenant", "period_start"], name="usage_tenant_period")]

    def __str__(self) -> str:
        return f"{self.quantity} {self.metric} ({self.kind}) for {self.tenant}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AppendOnlyError("UsageEvent rows are append-only: they cannot be updated.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("UsageEvent rows are append-only: they cannot be deleted.")


class SyncState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (gave up; retry from the admin)"
    SKIPPED = "skipped", "Skipped (no Stripe customer)"


class MeterSync(models.Model):
    """Delivery of one usage event to Stripe as a Billing Meter Event."""

    event = models.OneToOneField(UsageEvent, on_delete=models.PROTECT, primary_key=True, related_name="sync")
    state = models.CharField(max_length=10, choices=SyncState.choices, default=SyncState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "Stripe meter sync"
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="metersync_due")]

    def __str__(self) -> str:
        return f"{self.event_id} {self.state}"


class QuotaGrant(models.Model):
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="quota_grants")
    period_start = models.DateTimeField(help_text="Start of the billing period the grant applies to.")
    minutes = models.PositiveIntegerField()
    reason = models.CharField(max_length=300, blank=True, default="")
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "period_start"], name="grant_tenant_period")]

    def __str__(self) -> str:
        return f"+{self.minutes} min for {self.tenant} ({self.period_start:%Y-%m-%d})"


class StripeEvent(models.Model):
    id = models.CharField(primary_key=True, max_length=100, help_text="Stripe's event id (evt_…).")
    type = models.CharField(max_length=100)
    created = models.DateTimeField(help_text="When Stripe created the event.")
    received_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=40, help_text="processed, ignored or unknown_customer.")
    tenant = models.ForeignKey(
        "accounts.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="stripe_events"
    )
    payload = models.JSONField()

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"
