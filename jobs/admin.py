from django.contrib import admin

from jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "tenant", "kind", "status", "progress", "created_at", "finished_at", "error_code"]
    list_filter = ["status", "kind", "created_at"]
    search_fields = ["id", "input__filename", "tenant__name"]
    readonly_fields = [f.name for f in Job._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
