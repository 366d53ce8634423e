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
    WATERMARK_REPORT = "watermark_report", "Watermark robustness report"


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
    request_fingerprint = models.CharField(
        max_length=64, blank=True, default="",
        help_text="SHA-256 of the creating request (params and file bytes), compared on an Idempotency-Key replay.",
    )
    callback_url = models.URLField(max_length=2000, blank=True, default="")
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="When the current RQ job was enqueued.")
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="A queued retry waits for its backoff: enqueued at this time."
    )
    batch_size_limit = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Set to 1 after a CUDA out-of-memory error: run this job unbatched."
    )
    batch = models.ForeignKey(
        "jobs.Batch", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs",
        help_text="The batch this job is an item of (POST /api/v1/batches), if any.",
    )
    batch_index = models.PositiveIntegerField(
        null=True, blank=True, help_text="The item's position in its batch request (0-based)."
    )

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
        constraints = [
            # Race-free idempotency: concurrent requests with one key cannot both insert a job.
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="job_tenant_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class WebhookDelivery(models.Model):
    """One webhook message (a job reaching a final state, a test event) and its attempts to one URL.

    The row is written in the same transaction as the final transition (an outbox), so an event is never
    lost to a crash; attempts are claimed with a lease (``next_attempt_at``) so two senders never POST the
    same attempt. ``attempt_log`` keeps each attempt's outcome for the dashboard, the admin and the API.

    ``event_id`` is the Standard Webhooks ``webhook-id``: the same on every retry *and* on every resend (a
    resend is a new row with the original's ``event_id`` and body, ``resent_from`` pointing at it), so a
    receiver that deduplicates on it processes the event once.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event_id = models.UUIDField(
        default=uuid.uuid4, editable=False, db_index=True,
        help_text="Sent as webhook-id; shared by the resends of one event (receivers deduplicate on it).",
    )
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="webhook_deliveries")
    job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_deliveries",
        help_text="The job the event is about (none for a batch's event or a webhook.test event).",
    )
    batch = models.ForeignKey(
        "jobs.Batch", null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_deliveries",
        help_text="The batch whose event this is (batch.completed); empty for a job's event.",
    )
    resent_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="resends",
        help_text="The delivery this one resends (same event id and body).",
    )
    event = models.CharField(max_length=40, help_text="The event type, e.g. job.succeeded")
    url = models.CharField(max_length=2000)
    body = models.TextField(help_text="The exact JSON body sent (and signed).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    last_response_body = models.CharField(
        max_length=500, blank=True, default="", help_text="The start of the receiver's last answer."
    )
    attempt_log = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_due"),
            models.Index(fields=["tenant", "-created_at"], name="webhook_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.event_id} ({self.status})"


class ResultCache(models.Model):
    """A finished job's result, reused when the same tenant submits the same input again (``jobs.worker.cache``).

    Keyed by (tenant, kind, content hash of the input file, hash of the result-relevant params, model
    version): a new model version or different params never reuse an old result. Per tenant on purpose: a
    shared cache would tell one customer, through ``cached: true``, that someone else analysed the same file.
    """

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=JobKind.choices)
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the input file's bytes.")
    params_hash = models.CharField(max_length=64, help_text="SHA-256 of the params that change the result.")
    model_version = models.CharField(max_length=255)
    model_name = models.CharField(max_length=200, blank=True, default="")
    result = models.JSONField()
    source_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    hits = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    last_hit_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "kind", "content_hash", "params_hash", "model_version"], name="result_cache_key"
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="result_cache_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.content_hash[:12]} ({self.model_version})"


class Batch(models.Model):
    """Many inputs submitted in one request (``POST /api/v1/batches``): one job per accepted item.

    Items refused at submission (a bad file, a URL that failed, the quota) are recorded in ``refused`` and get
    no job; they do not fail the batch. ``open_items`` counts the item jobs not final yet: every job's final
    transition decrements it in the same transaction, and the one that takes it to 0 sets ``completed_at``
    and writes the ``batch.completed`` webhook (``jobs.services``), so the event is written exactly once
    however many workers finish items at the same time.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="batches")
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="batches"
    )
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="batches"
    )
    kind = models.CharField(max_length=32, choices=JobKind.choices)
    params = models.JSONField(default=dict, blank=True, help_text="The params shared by every item.")
    item_count = models.PositiveIntegerField(default=0, help_text="Items in the request, accepted or not.")
    open_items = models.PositiveIntegerField(default=0, help_text="Item jobs not final yet.")
    refused = models.JSONField(
        default=list, blank=True, help_text="Items refused at submission: index, input, error code and message."
    )
    callback_url = models.URLField(max_length=2000, blank=True, default="")
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True, help_text="When the last item job became final.")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "batches"
        indexes = [models.Index(fields=["tenant", "-created_at"], name="batch_tenant_created")]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="batch_tenant_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"batch {self.id} ({self.kind}, {self.item_count} items)"

    @property
    def is_complete(self) -> bool:
        return self.completed_at is not None


class DirectUpload(models.Model):
    """A file a client PUTs straight to S3 through a presigned URL (``POST /api/v1/uploads``), then names by
    ``upload_id`` when creating a job. Consumed once (``consumed_at`` and ``job`` set in the job's creation
    transaction); unconsumed ones are deleted, object and row, by retention after ``expires_at``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="direct_uploads")
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="direct_uploads"
    )
    filename = models.CharField(max_length=255, blank=True, default="")
    storage_name = models.CharField(max_length=500, help_text="The object key the presigned PUT writes.")
    max_bytes = models.PositiveBigIntegerField(help_text="The plan's per-file limit when the upload was created.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="Unused after this: the PUT URL expired; retention deletes it.")
    consumed_at = models.DateTimeField(null=True, blank=True)
    job = models.OneToOneField(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="direct_upload",
        help_text="The job created from this upload.",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["consumed_at", "expires_at"], name="direct_upload_expiry")]

    def __str__(self) -> str:
        return f"upload {self.id} ({self.filename})"
