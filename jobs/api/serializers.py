"""Request and response shapes of the jobs API (also what the OpenAPI schema documents)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.models import Batch, DirectUpload, Job, JobKind, JobStatus, WebhookDelivery
from media_ops.audio import OUTPUT_FORMATS

MODEL_VERSION_HELP = (
    "Pin the model version to run (a job's `model.version`); unknown versions are refused with 422 "
    "UNKNOWN_MODEL_VERSION listing the available ones. Default: the version this deployment serves."
)


class JobCreateRequest(serializers.Serializer):
    """Fields every job-creating endpoint accepts."""

    callback_url = serializers.CharField(
        required=False, allow_blank=True, max_length=2000,
        help_text="POSTed a signed JSON event when the job ends (see the webhooks guide). "
        "Public http(s) only; default: the tenant's webhook URL.",
    )
    model_version = serializers.CharField(required=False, allow_blank=True, max_length=100,
                                          help_text=MODEL_VERSION_HELP)


class RemoteSourceFields(serializers.Serializer):
    """The alternatives to uploading the file in the request (send exactly one of file, file_url, upload_id)."""

    file_url = serializers.CharField(
        required=False, allow_blank=True, max_length=2000,
        help_text="Fetch the input from this public https:// URL instead of uploading it (redirects followed "
        "and re-checked, at most 3; the plan's file size limit; 30 s in all).",
    )
    upload_id = serializers.UUIDField(
        required=False, help_text="Use a presigned direct upload (POST /api/v1/uploads, then PUT) as the input."
    )


class WatermarkEmbedParams(serializers.Serializer):
    message = serializers.CharField(
        required=False, allow_blank=True, max_length=16,
        help_text="16-bit message as 4 hex digits (e.g. 1A2B). Random when omitted; returned in the result.",
    )
    output_format = serializers.ChoiceField(
        choices=OUTPUT_FORMATS, required=False,
        help_text="Output container; default: the input's format (FLAC when it has no encoder).",
    )


class EmotionParams(serializers.Serializer):
    granularity = serializers.ChoiceField(choices=("utterance", "frame"), default="utterance")
    extract_embedding = serializers.BooleanField(
        default=False, help_text="Store the embedding as a downloadable .npy output."
    )


class NoParams(serializers.Serializer):
    """Watermark detection takes no options."""


class WatermarkEmbedRequest(JobCreateRequest, RemoteSourceFields, WatermarkEmbedParams):
    file = serializers.FileField(required=False, help_text="Audio: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4.")


class WatermarkDetectRequest(JobCreateRequest, RemoteSourceFields):
    file = serializers.FileField(required=False, help_text="Audio: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4.")


class EmotionAnalyzeRequest(JobCreateRequest, RemoteSourceFields, EmotionParams):
    file = serializers.FileField(required=False, help_text="Speech audio: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4.")


class BeatsyncAlignRequest(JobCreateRequest):
    video = serializers.FileField(help_text="The dance video (MP4 or MOV) with its recorded audio.")
    music = serializers.FileField(help_text="The clean music track (MP3, M4A, WAV, FLAC).")
    trim_silence = serializers.BooleanField(default=False)


class JobErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ModelInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()


class JobSerializer(serializers.ModelSerializer):
    input = serializers.SerializerMethodField()
    output_url = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()
    kind = serializers.ChoiceField(choices=JobKind.choices)
    status = serializers.ChoiceField(choices=JobStatus.choices)

    class Meta:
        model = Job
        fields = [
            "id", "kind", "status", "progress", "progress_message", "created_at", "started_at",
            "finished_at", "input", "params", "result", "output_url", "error", "model", "callback_url",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DictField())
    def get_input(self, job: Job) -> dict:
        keys = ("filename", "format", "size_bytes", "duration_seconds", "sample_rate", "channels")
        data = {key: job.input.get(key) for key in keys}
        for role, meta in (job.extra_inputs or {}).items():
            data[role] = {key: meta.get(key) for key in keys}
        return data

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_output_url(self, job: Job) -> str | None:
        if not job.output_file:
            return None
        path = reverse("api:job-output", kwargs={"pk": job.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, job: Job) -> dict | None:
        if not job.error_code:
            return None
        return {"code": job.error_code, "message": job.error_message}

    @extend_schema_field(ModelInfoSerializer(allow_null=True))
    def get_model(self, job: Job) -> dict | None:
        if not job.model_name:
            return None
        return {"name": job.model_name, "version": job.model_version}


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "event", "url", "status", "attempts", "last_status_code", "last_error", "next_attempt_at",
            "created_at", "last_attempt_at", "delivered_at", "attempt_log",
        ]
        read_only_fields = fields


# --- batches -------------------------------------------------------------------------------------------------


class BatchCreateRequest(serializers.Serializer):
    """``POST /api/v1/batches`` (multipart). Items are every ``file`` part, then every ``file_url``, then every
    ``upload_id``, in order; the kind's options (e.g. ``message``) apply to all, ``item_params`` overrides them
    per item."""

    kind = serializers.ChoiceField(
        choices=[JobKind.WATERMARK_EMBED, JobKind.WATERMARK_DETECT, JobKind.EMOTION],
        help_text="What to do with every item (single-input kinds).",
    )
    file = serializers.ListField(child=serializers.FileField(), required=False, help_text="One part per file.")
    file_url = serializers.ListField(child=serializers.CharField(max_length=2000), required=False)
    upload_id = serializers.ListField(child=serializers.UUIDField(), required=False)
    item_params = serializers.JSONField(
        required=False,
        help_text="A JSON array with one object per item (in item order) of options overriding the shared ones.",
    )
    callback_url = serializers.CharField(
        required=False, allow_blank=True, max_length=2000,
        help_text="Receives ONE signed `batch.completed` event when every item job is final (item jobs send none).",
    )
    model_version = serializers.CharField(required=False, allow_blank=True, max_length=100,
                                          help_text=MODEL_VERSION_HELP)
    message = serializers.CharField(required=False, allow_blank=True, max_length=16,
                                    help_text="watermark_embed: as for one job; random per item when omitted.")
    output_format = serializers.ChoiceField(choices=OUTPUT_FORMATS, required=False)
    granularity = serializers.ChoiceField(choices=("utterance", "frame"), required=False)
    extract_embedding = serializers.BooleanField(required=False)


class BatchCountsSerializer(serializers.Serializer):
    items = serializers.IntegerField(help_text="Items in the request.")
    accepted = serializers.IntegerField(help_text="Items that became jobs.")
    refused = serializers.IntegerField(help_text="Items refused at submission (see `items[].error`).")
    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    canceled = serializers.IntegerField()


class BatchItemErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class BatchItemSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    input = serializers.CharField(help_text="The item's file name, URL or upload id.")
    job = JobSerializer(allow_null=True, help_text="The item's job; null when it was refused.")
    error = BatchItemErrorSerializer(allow_null=True, help_text="Why the item was refused; null when accepted.")


class BatchSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()
    items = serializers.SerializerMethodField()
    kind = serializers.ChoiceField(choices=JobKind.choices)

    class Meta:
        model = Batch
        fields = ["id", "kind", "status", "created_at", "completed_at", "params", "callback_url", "counts", "items"]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=("processing", "completed")))
    def get_status(self, batch: Batch) -> str:
        return "completed" if batch.completed_at else "processing"

    @extend_schema_field(BatchCountsSerializer())
    def get_counts(self, batch: Batch) -> dict:
        from jobs.batch_selectors import batch_counts

        return batch_counts(batch)

    @extend_schema_field(BatchItemSerializer(many=True))
    def get_items(self, batch: Batch) -> list:
        from jobs.batch_selectors import batch_items

        if not self.context.get("with_items", True):
            return []
        jobs_json = JobSerializer(context=self.context)
        return [
            {"index": item["index"], "input": item["input"],
             "job": jobs_json.to_representation(item["job"]) if item["job"] is not None else None,
             "error": item["error"]}
            for item in batch_items(batch)
        ]


# --- direct uploads --------------------------------------------------------------------------------------------


class UploadCreateRequest(serializers.Serializer):
    filename = serializers.CharField(max_length=255, required=False, allow_blank=True,
                                     help_text="The file's name (kept as the job's input filename).")
    size_bytes = serializers.IntegerField(
        required=False, min_value=1,
        help_text="The size you will PUT, checked against the plan's file limit now (the stored size is checked "
        "again when a job uses the upload).",
    )


class UploadSerializer(serializers.ModelSerializer):
    upload_url = serializers.SerializerMethodField(help_text="PUT the file's bytes here (presigned).")
    method = serializers.SerializerMethodField()
    headers = serializers.SerializerMethodField(help_text="Headers the PUT must carry.")

    class Meta:
        model = DirectUpload
        fields = ["id", "filename", "max_bytes", "expires_at", "upload_url", "method", "headers"]
        read_only_fields = fields

    def get_upload_url(self, upload: DirectUpload) -> str:
        return self.context["presigned"].url

    def get_method(self, upload: DirectUpload) -> str:
        return self.context["presigned"].method

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_headers(self, upload: DirectUpload) -> dict:
        return self.context["presigned"].headers
