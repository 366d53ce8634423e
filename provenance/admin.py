"""Staff view of the registries and the Content Credentials settings: read-only, because entries are the
tenant's statements (what its messages mean) and changing one would change past attributions."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from provenance.models import ProvenanceProfile, RegisteredMessage


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(RegisteredMessage)
class RegisteredMessageAdmin(ReadOnlyAdmin):
    list_display = ("message", "label", "tenant", "job_id", "created_at")
    list_filter = ("tenant",)
    search_fields = ("message", "label", "tenant__name")
    list_select_related = ("tenant",)


@admin.register(ProvenanceProfile)
class ProvenanceProfileAdmin(ReadOnlyAdmin):
    list_display = ("tenant", "manifests_enabled", "generator_name", "digital_source_type", "updated_at")
    list_filter = ("manifests_enabled",)
    list_select_related = ("tenant",)
