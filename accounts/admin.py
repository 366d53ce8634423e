"""Staff views of tenants, members and API keys.

The tenant page is where support works: the plan, the subscription state and the quota overrides (billing's
``Subscription``, inline), this period's usage, minute grants, members and keys, and the suspend / reactivate
/ grant-minutes actions. Keys are revoked, never shown: only their prefix and hash exist.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import format_html

from accounts import services
from accounts.models import ApiKey, Membership, Tenant
from billing import services as billing
from billing.models import QuotaGrant, Subscription

admin.site.site_header = "AudioSeal Studio staff"
admin.site.site_title = "AudioSeal Studio staff"
admin.site.index_title = "Staff administration"
admin.site.site_url = "/"


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at", "expires_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


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


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "plan",
        "subscription_status",
        "usage_this_period",
        "is_active",
        "created_at",
    ]
    list_filter = ["is_active", "subscription__plan", "subscription__status"]
    list_select_related = ["subscription__plan"]
    search_fields = ["name", "slug", "id", "memberships__user__email"]
    readonly_fields = ["id", "created_at", "usage_this_period"]
    fields = ["name", "slug", "is_active", "id", "created_at", "usage_this_period"]
    inlines = [SubscriptionInline, QuotaGrantInline, MembershipInline, ApiKeyInline]
    actions = ["suspend", "reactivate", "grant_minutes"]

    def get_fields(self, request, obj=None):
        # Fields other issues add to Tenant (e.g. webhook settings) are shown after ours.
        # Secrets (e.g. the webhook signing secret) stay out of the page: staff rotate them, never read them.
        extra = [
            f.name for f in Tenant._meta.fields
            if f.name not in self.fields and f.editable and "secret" not in f.name
        ]
        return [*self.fields, *extra]

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
        summary = billing.usage_summary(tenant)
        minutes = summary["minutes"]
        return format_html(
            "{} used · {} reserved · <strong>{}</strong> included (incl. {} granted) · {} active jobs",
            f"{minutes['used']:.1f}",
            f"{minutes['reserved']:.1f}",
            f"{minutes['included']:.1f}",
            f"{minutes['granted']:.1f}",
            summary["active_jobs"],
        )

    @admin.action(description="Suspend (read-only: no new jobs)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        count = queryset.update(is_active=False)
        messages.success(
            request, f"Suspended {count} tenant(s): their jobs can be read, new ones are refused."
        )

    @admin.action(description="Reactivate")
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        count = queryset.update(is_active=True)
        messages.success(request, f"Reactivated {count} tenant(s).")

    @admin.action(description="Grant extra minutes for this period…")
    def grant_minutes(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse | None:
        """An intermediate page asks how many minutes and why, then grants them through billing."""
        form = GrantMinutesForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for tenant in queryset:
                billing.grant_minutes(
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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "tenant",
        "prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "expires_at",
    ]
    list_filter = ["revoked_at", "created_at"]
    list_select_related = ["tenant", "created_by"]
    search_fields = ["name", "prefix", "tenant__name"]
    # The secret is never stored; its hash is useless to a person and stays out of every page.
    exclude = ["secret_hash"]
    readonly_fields = ["prefix", "tenant", "created_at", "last_used_at", "revoked_at", "created_by"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return (
            False  # keys are issued by the dashboard or `manage.py create_tenant`, which show the secret once
        )

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for key in queryset:
            if not key.is_revoked:
                services.revoke_api_key(key)
                count += 1
        messages.success(request, f"Revoked {count} key(s).")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "tenant__name"]
    autocomplete_fields = ["user", "tenant"]
