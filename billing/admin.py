"""Staff tools: plans, each tenant's plan and overrides, minute grants, the read-only ledger, Stripe sync."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.html import format_html

from billing import services, stripe_sync
from billing.models import (
    MeterSync,
    PeriodUsage,
    Plan,
    QuotaGrant,
    Reservation,
    StripeEvent,
    Subscription,
    SyncState,
    UsageEvent,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name", "code", "included_minutes", "overage_allowed", "max_file_bytes", "max_audio_seconds",
        "max_concurrent_jobs", "retention_days", "stripe_price_id", "is_public",
    ]
    list_editable = ["is_public"]
    search_fields = ["name", "code", "stripe_price_id", "stripe_metered_price_id"]
    readonly_fields = ["created_at", "updated_at"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return obj is None or not obj.subscriptions.exists()


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "tenant", "plan", "status", "current_period_start", "current_period_end", "past_due_since",
        "stripe_customer_id",
    ]
    list_filter = ["plan", "status"]
    search_fields = ["tenant__name", "tenant__slug", "stripe_customer_id", "stripe_subscription_id"]
    autocomplete_fields = ["tenant"]
    readonly_fields = ["stripe_status", "stripe_state_at", "created_at", "updated_at", "usage_now"]
    fieldsets = [
        (None, {"fields": ["tenant", "plan", "status", "past_due_since", "usage_now"]}),
        ("Billing period", {"fields": ["current_period_start", "current_period_end"]}),
        ("Overrides of the plan (empty: the plan's value)", {"fields": [
            "included_minutes_override", "overage_allowed_override", "max_file_bytes_override",
            "max_audio_seconds_override", "max_concurrent_jobs_override", "rate_limits_override",
            "retention_days_override",
        ]}),
        ("Stripe", {"fields": [
            "stripe_customer_id", "stripe_subscription_id", "stripe_status", "stripe_state_at",
        ]}),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="This period")
    def usage_now(self, obj: Subscription) -> str:
        if obj.pk is None:
            return "-"
        minutes = services.usage_summary(obj.tenant)["minutes"]
        grant_url = reverse("admin:billing_quotagrant_add") + f"?tenant={obj.tenant_id}"
        return format_html(
            "{} used, {} reserved of {} included minutes ({} granted). <a href=\"{}\">Grant extra minutes</a>",
            f"{minutes['used']:.1f}", f"{minutes['reserved']:.1f}", f"{minutes['included']:.1f}",
            f"{minutes['granted']:.1f}", grant_url,
        )


@admin.register(QuotaGrant)
class QuotaGrantAdmin(admin.ModelAdmin):
    """Grant extra minutes for a billing period; leave the period empty for the tenant's current one."""

    list_display = ["tenant", "period_start", "minutes", "reason", "granted_by", "created_at"]
    list_filter = ["period_start"]
    search_fields = ["tenant__name", "reason"]
    autocomplete_fields = ["tenant"]
    readonly_fields = ["granted_by", "created_at"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "period_start" in form.base_fields:
            form.base_fields["period_start"].required = False
            form.base_fields["period_start"].help_text = "Empty: the tenant's current billing period."
        return form

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.granted_by = request.user
        if obj.period_start is None:
            obj.period_start, _ = services.period_bounds(services.subscription_for(obj.tenant))
        super().save_model(request, obj, form, change)


@admin.register(PeriodUsage)
class PeriodUsageAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "period_start", "period_end", "used_seconds", "reserved_seconds", "updated_at"]
    list_filter = ["period_start"]
    search_fields = ["tenant__name"]


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ["job_id", "tenant", "seconds", "state", "created_at", "closed_at"]
    list_filter = ["state"]
    search_fields = ["tenant__name", "=job_id"]


class SyncStateFilter(admin.SimpleListFilter):
    title = "Stripe sync"
    parameter_name = "sync"

    def lookups(self, request, model_admin):
        return SyncState.choices + [("retrying", "Pending after a failure")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "retrying":
            return queryset.filter(sync__state=SyncState.PENDING, sync__attempts__gt=0)
        if value:
            return queryset.filter(sync__state=value)
        return queryset


def _retry(modeladmin, request, event_ids) -> None:
    count = stripe_sync.retry_sync(event_ids)
    modeladmin.message_user(request, f"{count} usage events will be sent to Stripe again.", messages.SUCCESS)


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    """The ledger: read-only. No add, change or delete, here or anywhere (see the model)."""

    list_display = [
        "created_at", "tenant", "kind", "metric", "quantity", "period_start", "job_id", "sync_state",
        "sync_error",
    ]
    list_filter = [SyncStateFilter, "kind", "metric", "period_start", "created_at"]
    search_fields = ["id", "tenant__name", "tenant__slug", "=job_id"]
    list_select_related = ["tenant", "sync"]
    date_hierarchy = "created_at"
    actions = ["retry_sync"]

    @admin.display(description="Stripe")
    def sync_state(self, obj: UsageEvent) -> str:
        sync = getattr(obj, "sync", None)
        return f"{sync.state} ({sync.attempts} attempts)" if sync else "-"

    @admin.display(description="Last sync error")
    def sync_error(self, obj: UsageEvent) -> str:
        sync = getattr(obj, "sync", None)
        return (sync.last_error[:120] if sync else "") or ""

    @admin.action(description="Retry Stripe sync")
    def retry_sync(self, request, queryset: QuerySet) -> None:
        _retry(self, request, queryset.values_list("pk", flat=True))


@admin.register(MeterSync)
class MeterSyncAdmin(ReadOnlyAdmin):
    list_display = [
        "event", "state", "attempts", "next_attempt_at", "last_attempt_at", "sent_at", "last_error",
    ]
    list_filter = ["state"]
    search_fields = ["event__id", "event__tenant__name", "last_error"]
    list_select_related = ["event", "event__tenant"]
    actions = ["retry_sync"]

    @admin.action(description="Retry Stripe sync")
    def retry_sync(self, request, queryset: QuerySet) -> None:
        _retry(self, request, queryset.values_list("event_id", flat=True))


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "created", "received_at", "outcome", "tenant"]
    list_filter = ["type", "outcome"]
    search_fields = ["id", "tenant__name"]
