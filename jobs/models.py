"""The Job: one unit of AI work for a tenant, from upload to a final state.

Status changes only through ``jobs.services`` (the state machine). Files are referenced by their storage
names (local disk or S3 through Django's storage API); ``input`` and ``result`` are JSON documents returned
as they are by the API.
"""

from __future__ import annotations

import uuid

from django.db import models


class JobKind(models.TextChoices):
    WATERMARK_EMBED = "watermark_embed", "Watermark embed"
    WATERMARK_DETECT = "watermark_detect", "Watermark detect"
    EMOTION = "emotion", "Emotion analysis"
    BEATSYNC = "beatsync", "Beat-sync"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="jobs")
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    kind = models.CharField(max_length=32, choices=JobKind.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    progress_message = models.CharField(max_length=200, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)

    input_file = models.CharField(max_length=500, blank=True, default="")
    input = models.JSONField(default=dict, blank=True, help_text="filename, format, size, duration, rate…")
    extra_inputs = models.JSONField(
        default=dict, blank=True, help_text="Further input files by role, e.g. the music of a beat-sync job."
    )
    output_file = models.CharField(max_length=500, blank=True, default="")
    output_filename = models.CharField(max_length=255, blank=True, default="")
    output_content_type = models.CharField(max_length=100, blank=True, default="")

    result = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    model_name = models.CharField(max_length=200, blank=True, default="")
    model_version = models.CharField(max_length=100, blank=True, default="")
    audio_seconds = models.FloatField(default=0, help_text="Billable input duration in seconds.")

    attempts = models.PositiveSmallIntegerField(default=0)
    worker_name = models.CharField(max_length=200, blank=True, default="")
    rq_job_id = models.CharField(max_length=100, blank=True, default="")
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    callback_url = models.URLField(max_length=2000, blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    files_expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="job_tenant_created"),
            models.Index(fields=["tenant", "status"], name="job_tenant_status"),
            models.Index(fields=["status", "kind"], name="job_status_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES
