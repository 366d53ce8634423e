from django.contrib import admin

from accounts import services
from accounts.models import ApiKey, Membership, Tenant


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["name", "prefix", "created_at", "last_used_at", "revoked_at", "expires_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug", "id"]
    inlines = [MembershipInline, ApiKeyInline]
    actions = ["suspend", "reactivate"]

    @admin.action(description="Suspend (read-only: no new jobs)")
    def suspend(self, request, queryset) -> None:
        queryset.update(is_active=False)

    @admin.action(description="Reactivate")
    def reactivate(self, request, queryset) -> None:
        queryset.update(is_active=True)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "prefix", "created_at", "last_used_at", "revoked_at", "expires_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "tenant__name"]
    # The hash is not the secret, but there is nothing useful a person can do with it either.
    exclude = ["secret_hash"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at", "created_by"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False  # keys are issued by the dashboard or `manage.py create_tenant`, which show the secret once

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset) -> None:
        for key in queryset:
            services.revoke_api_key(key)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "tenant__name"]
