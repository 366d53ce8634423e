"""Staff tools: plans, each tenant's plan and overrides, minute grants, the read-only ledger, Stripe sync.

Billing also extends accounts' tenant page (``TenantAdmin``): it replaces the registration with a subclass
that adds the plan and quota inline, the minute grants, this period's usage and the grant-minutes action.
Accounts sits below billing and cannot do this itself; this module imports ``accounts.admin`` first, so the
registration it replaces always exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html

from accounts.admin import TenantAdmin
from accounts.models import Tenant
from billing import selectors, services, stripe_sync
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


def subscription_changes(data: Mapping[str, Any], changed: Iterable[str]) -> dict[str, Any]:
    """``services.change_subscription`` arguments for the fields a staff member changed in a subscription form.

    The admin never saves a Subscription itself: the service is the one writer (row lock, past-due rule).
    """
    changed = set(changed)
    values: dict[str, Any] = {
        name: data[name]
        for name in ("plan", "status", "past_due_since", "stripe_customer_id", "stripe_subscription_id")
        if name in changed
    }
    if changed & {"current_period_start", "current_period_end"}:
        values["period"] = (data["current_period_start"], data["current_period_end"])
    overrides = {
        name: data[f"{name}_override"] for name in services.OVERRIDABLE_LIMITS if f"{name}_override" in changed
    }
    if overrides:
        values["overrides"] = overrides
    return values


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
        "max_concurrent_jobs", "retention_days", "request_log_days", "stripe_price_id", "is_public",
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
            "max_audio_seconds_override", "max_video_pixels_override", "max_video_fps_override",
            "max_video_pixel_rate_override", "max_concurrent_jobs_override", "rate_limits_override",
            "retention_days_override",
        ]}),
        ("Stripe", {"fields": [
            "stripe_customer_id", "stripe_subscription_id", "stripe_status", "stripe_state_at",
        ]}),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    def save_model(self, request, obj: Subscription, form, change) -> None:
        """Through ``services.change_subscription``. A new one (a tenant that had none) starts from the
        default subscription, then takes the form's values."""
        saved = services.change_subscription(
            obj if change else obj.tenant, **subscription_changes(form.cleaned_data, form.changed_data)
        )
        obj.pk = saved.pk
        obj.refresh_from_db()

    @admin.display(description="This period")
    def usage_now(self, obj: Subscription) -> str:
        if obj.pk is None:
            return "-"
        minutes = selectors.usage_summary(obj.tenant)["minutes"]
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
            obj.period_start, _ = selectors.period_bounds(selectors.subscription_for(obj.tenant))
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


# --- the tenant page (accounts' TenantAdmin, extended) ------------------------------------------------------


class SubscriptionInline(admin.StackedInline):
    """Plan, state and the staff overrides of the plan's limits (empty = the plan's value)."""

    model = Subscription
    can_delete = False
    extra = 0
    max_num = 1
    verbose_name = "plan and quota"
    verbose_name_plural = "plan and quota"
    fieldsets = [
        (
            None,
            {"fields": ["plan", "status", "past_due_since", ("current_period_start", "current_period_end")]},
        ),
        (
            "Quota overrides (empty: the plan's value)",
            {
                "fields": [
                    "included_minutes_override",
                    "overage_allowed_override",
                    "max_file_bytes_override",
                    "max_audio_seconds_override",
                    "max_video_pixels_override",
                    "max_video_fps_override",
                    "max_video_pixel_rate_override",
                    "max_concurrent_jobs_override",
                    "rate_limits_override",
                    "retention_days_override",
                ]
            },
        ),
        (
            "Stripe",
            {
                "classes": ["collapse"],
                "fields": [
                    "stripe_customer_id",
                    "stripe_subscription_id",
                    "stripe_status",
                    "stripe_state_at",
                ],
            },
        ),
    ]
    readonly_fields = ["stripe_status", "stripe_state_at"]


class QuotaGrantInline(admin.TabularInline):
    """Minutes granted by staff, newest first. Grants are made with the "Grant extra minutes" action, which
    files them under the tenant's current billing period."""

    model = QuotaGrant
    fk_name = "tenant"
    extra = 0
    fields = ["period_start", "minutes", "reason", "granted_by", "created_at"]
    readonly_fields = fields
    can_delete = False
    verbose_name_plural = "minute grants (add with the “Grant extra minutes” action)"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class GrantMinutesForm(forms.Form):
    minutes = forms.IntegerField(
        min_value=1, max_value=1_000_000, help_text="Extra audio minutes for this period."
    )
    reason = forms.CharField(
        max_length=300, required=False, help_text="Shown to staff in the grant's history."
    )


class BillingTenantAdmin(TenantAdmin):
    """Accounts' tenant page plus the plan, the subscription state, the quota and this period's usage."""

    list_display = [
        "name",
        "slug",
        "plan",
        "subscription_status",
        "usage_this_period",
        "is_active",
        "created_at",
    ]
    list_filter = [*TenantAdmin.list_filter, "subscription__plan", "subscription__status"]
    list_select_related = ["subscription__plan"]
    readonly_fields = [*TenantAdmin.readonly_fields, "usage_this_period"]
    fields = [*TenantAdmin.fields, "usage_this_period"]
    inlines = [SubscriptionInline, QuotaGrantInline, *TenantAdmin.inlines]
    actions = [*TenantAdmin.actions, "grant_minutes"]

    def save_formset(self, request, form, formset, change) -> None:
        """The plan-and-quota inline is written through ``services.change_subscription``, never saved here."""
        if formset.model is not Subscription:
            super().save_formset(request, form, formset, change)
            return
        # What formset.save() would have set; the admin's change message reads them.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline in formset.forms:
            if not inline.has_changed():
                continue
            existing = inline.instance.pk is not None
            saved = services.change_subscription(
                inline.instance if existing else form.instance,
                **subscription_changes(inline.cleaned_data, inline.changed_data),
            )
            if existing:
                formset.changed_objects.append((saved, inline.changed_data))
            else:
                formset.new_objects.append(saved)

    @admin.display(description="plan", ordering="subscription__plan__name")
    def plan(self, tenant: Tenant) -> str:
        sub = getattr(tenant, "subscription", None)
        return sub.plan.name if sub else "-"

    @admin.display(description="subscription", ordering="subscription__status")
    def subscription_status(self, tenant: Tenant) -> str:
        sub = getattr(tenant, "subscription", None)
        return sub.get_status_display() if sub else "-"

    @admin.display(description="usage this period")
    def usage_this_period(self, tenant: Tenant) -> str:
        if tenant.pk is None:
            return "-"
        summary = selectors.usage_summary(tenant)
        minutes = summary["minutes"]
        return format_html(
            "{} used · {} reserved · <strong>{}</strong> included (incl. {} granted) · {} active jobs",
            f"{minutes['used']:.1f}",
            f"{minutes['reserved']:.1f}",
            f"{minutes['included']:.1f}",
            f"{minutes['granted']:.1f}",
            summary["active_jobs"],
        )

    @admin.action(description="Grant extra minutes for this period…")
    def grant_minutes(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse | None:
        """An intermediate page asks how many minutes and why, then grants them through billing."""
        form = GrantMinutesForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for tenant in queryset:
                services.grant_minutes(
                    tenant,
                    form.cleaned_data["minutes"],
                    reason=form.cleaned_data["reason"],
                    granted_by=request.user,
                )
            messages.success(
                request, f"Granted {form.cleaned_data['minutes']} minutes to {queryset.count()} tenant(s)."
            )
            return None
        return render(
            request,
            "admin/accounts/tenant/grant_minutes.html",
            {
                **self.admin_site.each_context(request),
                "title": "Grant extra minutes",
                "tenants": queryset,
                "form": form,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )


if admin.site.is_registered(Tenant):
    admin.site.unregister(Tenant)
admin.site.register(Tenant, BillingTenantAdmin)
