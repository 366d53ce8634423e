"""Staff views of tenants, members and API keys.

The tenant page is where support works: members and keys here, and the suspend / reactivate actions. Billing
extends this page with the plan, the subscription state, the quota overrides, this period's usage, minute
grants and the grant-minutes action (``billing.admin`` registers a subclass of ``TenantAdmin``): accounts sits
below billing and does not import it. Keys are revoked, never shown: only their prefix and hash exist.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import request_log, services
from accounts.models import ApiKey, ApiRequest, Membership, Tenant
from core.urlguard import UnsafeURL, check_url

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


class TenantAdminForm(forms.ModelForm):
    """The tenant page's form: a changed default webhook URL passes the SSRF guard customers get on the
    dashboard (``core.urlguard.check_url``, as ``jobs.webhooks.endpoints`` uses it); a refusal is a form error."""

    class Meta:
        model = Tenant
        fields = ["webhook_url"]  # the admin passes the page's fields (``get_fields``) itself

    def clean_webhook_url(self) -> str:
        url = (self.cleaned_data.get("webhook_url") or "").strip()
        if url and url != (self.initial.get("webhook_url") or ""):
            try:
                check_url(url)
            except UnsafeURL as exc:
                raise forms.ValidationError(str(exc), code="INVALID_CALLBACK_URL") from exc
        return url


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantAdminForm
    list_display = ["name", "slug", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug", "id", "memberships__user__email"]
    readonly_fields = ["id", "created_at"]
    fields = ["name", "slug", "is_active", "id", "created_at"]
    inlines = [MembershipInline, ApiKeyInline]
    actions = ["suspend", "reactivate"]

    def get_fields(self, request, obj=None):
        # Fields other issues add to Tenant (e.g. webhook settings) are shown after ours.
        # Secrets (e.g. the webhook signing secret) stay out of the page: staff rotate them, never read them.
        extra = [
            f.name for f in Tenant._meta.fields
            if f.name not in self.fields and f.editable and "secret" not in f.name
        ]
        return [*self.fields, *extra]

    def save_model(self, request: HttpRequest, obj: Tenant, form, change: bool) -> None:
        """Ticking "is active" on the page suspends or reactivates through ``accounts.services``, as the
        actions do; the other fields are saved as usual."""
        if not (change and "is_active" in form.changed_data):
            super().save_model(request, obj, form, change)
            return
        wanted = obj.is_active
        obj.is_active = form.initial["is_active"]  # save the other fields with the stored state
        super().save_model(request, obj, form, change)
        if wanted:
            services.reactivate_tenant(obj)
        else:
            services.suspend_tenant(obj)

    @admin.action(description="Suspend (read-only: no new jobs)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        tenants = list(queryset)
        for tenant in tenants:
            services.suspend_tenant(tenant)
        messages.success(
            request, f"Suspended {len(tenants)} tenant(s): their jobs can be read, new ones are refused."
        )

    @admin.action(description="Reactivate")
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        tenants = list(queryset)
        for tenant in tenants:
            services.reactivate_tenant(tenant)
        messages.success(request, f"Reactivated {len(tenants)} tenant(s).")


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
        "read_only",
    ]
    list_filter = ["revoked_at", "created_at", "read_only"]
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


@admin.register(ApiRequest)
class ApiRequestAdmin(admin.ModelAdmin):
    """The API request log of every tenant, for support: paste the ``request_id`` a customer quotes from an
    error body. Read-only; the page drains the Redis buffer first, like the customers' page."""

    list_display = ["created_at", "tenant", "method", "path", "status", "error_code", "key_prefix",
                    "duration_ms", "request_id"]
    list_filter = ["status", "method"]
    list_select_related = ["tenant"]
    search_fields = ["=request_id", "path", "error_code", "key_prefix", "tenant__name"]
    date_hierarchy = "created_at"

    def changelist_view(self, request: HttpRequest, extra_context=None):
        request_log.drain()
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
