"""Staff views of jobs: find them, open their files, retry failed ones and cancel running ones.

Status changes go through ``jobs.services`` like the API's: cancel is ``services.cancel``; retrying a failed
job is a fresh ``services.submit`` of its stored inputs (a new job with a new quota reservation), because a
failed job's reservation was released and the state machine has no way back from ``failed``.
"""

from __future__ import annotations

import os
from datetime import timedelta

from django.contrib import admin, messages
from django.core.files import File
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from core.errors import ServiceError
from jobs import services
from jobs.models import ACTIVE_STATUSES, Batch, DirectUpload, Job, JobStatus, WebhookDelivery
from jobs.webhooks import outbox, selectors

INPUT_FIELDS = ["input_file", "input", "extra_inputs", "audio_seconds"]
RESULT_FIELDS = ["result", "error_code", "error_message", "model_name", "model_version", "output_file",
                 "output_filename", "output_content_type"]
TIMING_FIELDS = ["created_at", "enqueued_at", "started_at", "heartbeat_at", "finished_at", "queue_wait",
                 "run_time", "retry_at", "files_expired_at"]


class CreatedWithinFilter(admin.SimpleListFilter):
    title = "created"
    parameter_name = "created_within"
    ranges = {"1h": ("Last hour", timedelta(hours=1)), "24h": ("Last 24 hours", timedelta(days=1)),
               "7d": ("Last 7 days", timedelta(days=7)), "30d": ("Last 30 days", timedelta(days=30))}

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in self.ranges.items()]

    def queryset(self, request, queryset):
        if self.value() in self.ranges:
            return queryset.filter(created_at__gte=timezone.now() - self.ranges[self.value()][1])
        return queryset


def resubmit(job: Job, user) -> Job:
    """A new job with the same kind, params and stored inputs, through the normal submission path."""
    from jobs.kinds import spec

    inputs = spec(job.kind).inputs
    opened: dict[str, File] = {}
    try:
        for i, item in enumerate(inputs):
            role = item.name
            if i > 0 and not item.required and role not in (job.extra_inputs or {}):
                continue  # an optional input the job was submitted without
            meta = {"file": job.input_file, **job.input} if i == 0 else job.extra_inputs.get(role, {})
            if not meta.get("file") or not default_storage.exists(meta["file"]):
                raise ServiceError("FILE_NOT_FOUND", f"The {role} input is no longer stored.")
            name = meta.get("filename") or os.path.basename(meta["file"])
            opened[role] = File(default_storage.open(meta["file"], "rb"), name=name)
        return services.submit(
            services.Submission(
                tenant=job.tenant, kind=job.kind, files=opened, params=dict(job.params), user=user
            )
        )
    finally:
        for handle in opened.values():
            handle.close()


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["short_id", "tenant", "kind", "status", "progress", "filename", "audio", "created_at",
                    "finished_at", "error_code"]
    list_filter = ["status", "kind", CreatedWithinFilter, ("tenant", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["=id", "input__filename", "output_filename", "tenant__name", "tenant__slug",
                     "error_code"]
    date_hierarchy = "created_at"
    actions = ["retry_failed", "cancel_active"]
    readonly_fields = [f.name for f in Job._meta.fields] + ["files", "queue_wait", "run_time"]
    fieldsets = [
        (None, {"fields": ["id", "tenant", "kind", "status", "progress", "progress_message", "params",
                           "api_key", "created_by", "attempts", "worker_name", "rq_job_id"]}),
        ("Files", {"fields": ["files", *INPUT_FIELDS]}),
        ("Result", {"fields": RESULT_FIELDS}),
        ("Timings", {"fields": TIMING_FIELDS}),
        ("Delivery", {"classes": ["collapse"], "fields": ["idempotency_key", "callback_url"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        # Fields other issues add to Job still show up, in a section of their own.
        listed = {name for _, opts in self.fieldsets for name in opts["fields"]}
        rest = [f.name for f in Job._meta.fields if f.name not in listed]
        if not rest:
            return self.fieldsets
        return [*self.fieldsets, ("Other", {"classes": ["collapse"], "fields": rest})]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="id", ordering="id")
    def short_id(self, job: Job) -> str:
        return str(job.pk)[:8]

    @admin.display(description="file", ordering="input__filename")
    def filename(self, job: Job) -> str:
        return (job.input or {}).get("filename", "")

    @admin.display(description="audio", ordering="audio_seconds")
    def audio(self, job: Job) -> str:
        return f"{job.audio_seconds:.1f} s"

    @admin.display(description="queued for")
    def queue_wait(self, job: Job) -> str:
        return _seconds(job.started_at - job.created_at) if job.started_at else "-"

    @admin.display(description="ran for")
    def run_time(self, job: Job) -> str:
        return _seconds(job.finished_at - job.started_at) if job.started_at and job.finished_at else "-"

    @admin.display(description="download")
    def files(self, job: Job) -> str:
        if job.files_expired_at:
            return "deleted by retention"
        links = []
        if job.input_file:
            links.append((reverse("admin:jobs_job_file", args=[job.pk, "input"]), "input"))
        for role in job.extra_inputs or {}:
            links.append((reverse("admin:jobs_job_file", args=[job.pk, role]), role))
        if job.output_file:
            links.append((reverse("admin:jobs_job_file", args=[job.pk, "output"]), "output"))
        return format_html_join(" · ", '<a href="{}">{}</a>', links) if links else "-"

    def get_urls(self):
        view = self.admin_site.admin_view(self.file_view)
        return [path("<uuid:pk>/file/<str:role>/", view, name="jobs_job_file"), *super().get_urls()]

    def file_view(self, request: HttpRequest, pk, role: str):
        """Stream a job's input or output to staff (any tenant), like the API does for the tenant."""
        from jobs.api.views import input_response, output_response

        job = Job.objects.filter(pk=pk).first()
        if job is None or job.files_expired_at:
            raise Http404
        try:
            if role == "output" and job.output_file:
                return output_response(job)
            if role == "input" and job.input_file:
                return input_response({**job.input, "file": job.input_file})
            if role in (job.extra_inputs or {}):
                return input_response(job.extra_inputs[role])
        except ServiceError as exc:
            raise Http404(exc.message) from exc
        raise Http404

    @admin.action(description="Retry selected failed jobs (as new jobs)")
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        created, refused = [], []
        for job in queryset.select_related("tenant"):
            if job.status != JobStatus.FAILED:
                refused.append(f"{str(job.pk)[:8]}: {job.status}, not failed")
                continue
            try:
                created.append(resubmit(job, request.user))
            except ServiceError as exc:
                refused.append(f"{str(job.pk)[:8]}: {exc.code} {exc.message}")
        if created:
            links = ((reverse("admin:jobs_job_change", args=[j.pk]), str(j.pk)[:8]) for j in created)
            listed = format_html_join(", ", '<a href="{}">{}</a>', links)
            messages.success(request, format_html("Resubmitted {} job(s): {}", len(created), listed))
        if refused:
            messages.warning(request, "Not retried: " + "; ".join(refused))

    @admin.action(description="Cancel selected queued or running jobs")
    def cancel_active(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        done, skipped = 0, 0
        for job in queryset:
            if job.status not in ACTIVE_STATUSES:
                skipped += 1
                continue
            try:
                services.cancel(job)
                done += 1
            except ServiceError:
                skipped += 1  # it finished meanwhile
        note = f" {skipped} were not active." if skipped else ""
        messages.success(request, f"Canceled {done} job(s).{note}")


def _seconds(delta) -> str:
    return f"{delta.total_seconds():.1f} s"


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Customer webhook deliveries (jobs.webhooks): read-only, each attempt as a table row, and a resend action
    that sends the event again (a new delivery with the same ``webhook-id``, as the customer's own resend)."""

    list_display = ["id", "tenant", "job", "batch", "event", "status", "attempts", "last_status_code", "created_at"]
    list_filter = ["status", "event", "created_at"]
    search_fields = ["id", "event_id", "job__id", "url", "tenant__name"]
    actions = ["resend_deliveries"]
    fields = [
        "id", "event_id", "tenant", "job", "batch", "resent_from", "event", "url", "status", "attempts",
        "next_attempt_at",
        "last_attempt_at", "last_status_code", "last_error", "last_response_body", "created_at", "delivered_at",
        "attempts_table", "body",
    ]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Attempt log")
    def attempts_table(self, delivery: WebhookDelivery) -> str:
        """The attempt log as a table (newest first) instead of its raw JSON."""
        rows = selectors.attempts_of(delivery)
        if not rows:
            return "No attempt yet."
        body = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{row['at']:%Y-%m-%d %H:%M:%S} UTC" if row["at"] else "—",
                    row["status_code"] if row["status_code"] is not None else "—",
                    "ok" if row["ok"] else "failed",
                    f"{row['ms']} ms" if row["ms"] is not None else "—",
                    row["error"] or "",
                    row["response"] or "",
                )
                for row in rows
            ),
        )
        return format_html(
            '<table class="attempt-log"><thead><tr><th>When</th><th>HTTP status</th><th>Result</th><th>Time</th>'
            "<th>Error</th><th>Answer (excerpt)</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    @admin.action(description="Resend selected deliveries (same webhook-id)")
    def resend_deliveries(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        sent, refused = 0, []
        for delivery in queryset:
            try:
                outbox.resend(delivery)
                sent += 1
            except ServiceError as exc:
                refused.append(f"{delivery.pk}: {exc.message}")
        if sent:
            messages.success(request, f"Resent {sent} delivery(ies); each is a new delivery with the same webhook-id.")
        if refused:
            messages.error(request, "Not resent: " + "; ".join(refused))

@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    """Batches (jobs.batches): read-only; their item jobs are in the jobs list (filter by batch)."""

    list_display = ["id", "tenant", "kind", "item_count", "open_items", "created_at", "completed_at"]
    list_filter = ["kind", "created_at"]
    search_fields = ["id", "tenant__name"]
    readonly_fields = [f.name for f in Batch._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DirectUpload)
class DirectUploadAdmin(admin.ModelAdmin):
    """Presigned direct uploads (jobs.direct_uploads): read-only; unused ones are removed by retention."""

    list_display = ["id", "tenant", "filename", "created_at", "expires_at", "consumed_at", "job"]
    list_filter = ["created_at"]
    search_fields = ["id", "tenant__name", "filename"]
    readonly_fields = [f.name for f in DirectUpload._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
