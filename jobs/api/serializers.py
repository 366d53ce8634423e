"""Request and response shapes of the jobs API (also what the OpenAPI schema documents).

The schema is the contract clients are generated from (``audioseal_site/tests/test_generated_client.py``):
every limit a view enforces is stated here too (patterns, ranges, lengths), and a job is documented per kind
(``job_schema()``: a union discriminated by ``kind``, with the typed ``params`` and ``result`` of ``results``).
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from jobs.api import results
from jobs.models import Batch, DirectUpload, Job, JobKind, JobStatus, WebhookDelivery
from media_ops.audio import OUTPUT_FORMATS
from provenance import selectors as provenance_selectors

# What the API accepts as a message: 4 hex digits in either case, or nothing (a random one is chosen; the
# schema's second branch, from allow_blank, says so).
REQUEST_MESSAGE_PATTERN = r"^([0-9A-Fa-f]{4}|auto)$"
HEX4_MESSAGE_PATTERN = r"^[0-9A-Fa-f]{4}$"  # where no registry allocates (a report names the mark it expects)
CALLBACK_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://"
FILE_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]://"  # https only (jobs.remote)
MODEL_VERSION_MAX_LENGTH = 100
_DATETIME = serializers.DateTimeField()  # formats like every DRF datetime field (ISO 8601, "Z" for UTC)
MODEL_VERSION_HELP = (
    "Pin the model version to run (a job's `model.version`); unknown versions are refused with 422 "
    "UNKNOWN_MODEL_VERSION listing the available ones. Default: the version this deployment serves."
)


@extend_schema_field({
    "type": "string", "format": "uri", "maxLength": 2000, "pattern": CALLBACK_URL_PATTERN,
    "description": "POSTed a signed JSON event when the job ends (see the webhooks guide). An http(s) URL "
    "whose host resolves to public addresses only (else 400 INVALID_CALLBACK_URL); default: the tenant's "
    "webhook URL.",
})
class CallbackUrlField(serializers.CharField):
    """A callback URL as the form sends it ('' = none); the SSRF guard checks it in ``jobs.services``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(required=False, allow_blank=True, max_length=2000, **kwargs)


@extend_schema_field({
    "type": "string", "pattern": REQUEST_MESSAGE_PATTERN,
    "description": "16-bit message as 4 hex digits (e.g. 1A2B; anything else is 400 INVALID_MESSAGE), or "
    "`auto`: the next free message of your registry, registered with `label` and `metadata`. Random (and "
    "unregistered) when omitted or empty; returned in the result, upper case.",
})
class MessageField(serializers.CharField):
    """Checked by the view (400 ``INVALID_MESSAGE``), not here, so the error has its own code."""

    def __init__(self, **kwargs) -> None:
        super().__init__(required=False, allow_blank=True, trim_whitespace=False, **kwargs)


@extend_schema_field({
    "type": "string", "format": "uri", "maxLength": 2000, "pattern": FILE_URL_PATTERN,
    "description": "Fetch the input from this https:// URL instead of uploading it: its host must resolve to "
    "public addresses only (else 400 URL_NOT_ALLOWED); redirects are followed and re-checked (at most 3); the "
    "plan's file size limit applies (413 FILE_TOO_LARGE) and 30 s in all (else 422 URL_FETCH_FAILED).",
})
class FileUrlField(serializers.CharField):
    """A ``file_url`` as sent; ``jobs.remote`` checks and fetches it."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("required", False)
        super().__init__(max_length=2000, **kwargs)


class ModelVersionField(serializers.CharField):
    """``model_version``: checked against the versions served by ``jobs.model_versions.resolve``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(required=False, allow_blank=True, max_length=MODEL_VERSION_MAX_LENGTH,
                         help_text=MODEL_VERSION_HELP, **kwargs)


class JobCreateRequest(serializers.Serializer):
    """Fields every job-creating endpoint accepts."""

    callback_url = CallbackUrlField()
    model_version = ModelVersionField()


class RemoteSourceFields(serializers.Serializer):
    """The alternatives to uploading the file in the request (send exactly one of file, file_url, upload_id;
    else 400 VALIDATION_ERROR)."""

    file_url = FileUrlField(allow_blank=True)  # '' = not this source (a form sends its empty field)
    upload_id = serializers.UUIDField(
        required=False,
        help_text="Use a presigned direct upload (POST /api/v1/uploads, then PUT) as the input: 404 "
        "UPLOAD_NOT_FOUND, 409 UPLOAD_ALREADY_USED or UPLOAD_INCOMPLETE, 410 UPLOAD_EXPIRED.",
    )


# The options of each single-input kind, shared by its endpoint and by batches (jobs.api.batches).
class WatermarkEmbedOptions(serializers.Serializer):
    message = MessageField()
    label = serializers.CharField(
        required=False, allow_blank=True, max_length=200,
        help_text="Registers the message in your registry with this label (`auto` when no message is given).",
    )
    metadata = serializers.JSONField(
        required=False, help_text="JSON object stored with the registry entry (voice, end user, campaign, …).",
    )
    output_format = serializers.ChoiceField(
        choices=OUTPUT_FORMATS, required=False,
        help_text="Output container; default: the input's format (FLAC when it has no encoder).",
    )


class WatermarkDetectOptions(serializers.Serializer):
    """Watermark detection takes no options."""


@extend_schema_field({
    "type": "string", "pattern": HEX4_MESSAGE_PATTERN,
    "description": "The 16-bit message the file should carry, as 4 hex digits (e.g. 1A2B; anything else is 400 "
    "INVALID_MESSAGE). Default (omitted or empty): the message detection decodes from the file as uploaded; "
    "a file without a detectable watermark then fails with NO_WATERMARK.",
})
class ReportMessageField(MessageField):
    """``MessageField`` with a report's default: the detected message, not a random one."""


@extend_schema_serializer(component_name="WatermarkReport")  # + "Request" in the schema
class WatermarkReportRequest(JobCreateRequest):
    file = serializers.FileField(
        help_text="The watermarked audio (e.g. an embed job's output): WAV, FLAC, OGG, MP3 or M4A/AAC/MP4, "
        "at most WATERMARK_REPORT_MAX_SECONDS (60 s by default) long."
    )
    original = serializers.FileField(
        required=False,
        help_text="Optional: the audio before watermarking; adds the watermark's quality (SNR, segmental SNR).",
    )
    message = ReportMessageField()


class AttackSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Stable within a battery version, e.g. mp3_24k.")
    family = serializers.CharField(help_text="codec, resample, filter, noise, room, dynamics, pitch, speed, cut, "
                                   "level or mix.")
    description = serializers.CharField()
    params = serializers.DictField(help_text="The attack's settings (also in its description).")
    changes_length = serializers.BooleanField()


class ReportBillingSerializer(serializers.Serializer):
    attack_rate = serializers.FloatField(help_text="Each attack is billed as this fraction of a detection.")
    seconds_per_audio_second = serializers.FloatField(
        help_text="Billed seconds per second of the watermarked file: attacks × attack_rate."
    )


class AttackBatterySerializer(serializers.Serializer):
    version = serializers.CharField(help_text="Named in every report's result (`battery.version`).")
    attacks = AttackSerializer(many=True)
    max_duration_seconds = serializers.FloatField(help_text="The longest file a report accepts.")
    billing = ReportBillingSerializer()


class EmotionOptions(serializers.Serializer):
    granularity = serializers.ChoiceField(choices=("utterance", "frame"), default="utterance")
    extract_embedding = serializers.BooleanField(
        default=False, help_text="Store the embedding as a downloadable .npy output."
    )


SOURCE_HELP = " Send exactly one of `file`, `file_url` and `upload_id`."


@extend_schema_serializer(component_name="WatermarkEmbed")  # + "Request" in the schema
class WatermarkEmbedRequest(JobCreateRequest, RemoteSourceFields, WatermarkEmbedOptions):
    file = serializers.FileField(required=False, help_text="Audio: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4." + SOURCE_HELP)


@extend_schema_serializer(component_name="WatermarkDetect")  # + "Request" in the schema
class WatermarkDetectRequest(JobCreateRequest, RemoteSourceFields, WatermarkDetectOptions):
    file = serializers.FileField(required=False, help_text="Audio: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4." + SOURCE_HELP)


@extend_schema_serializer(component_name="EmotionAnalyze")  # + "Request" in the schema
class EmotionAnalyzeRequest(JobCreateRequest, RemoteSourceFields, EmotionOptions):
    file = serializers.FileField(
        required=False, help_text="Speech audio: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4." + SOURCE_HELP
    )


@extend_schema_serializer(component_name="BeatsyncAlign")  # + "Request" in the schema
class BeatsyncAlignRequest(JobCreateRequest):
    video = serializers.FileField(help_text="The dance video (MP4 or MOV) with its recorded audio.")
    music = serializers.FileField(help_text="The clean music track (MP3, M4A, WAV, FLAC).")
    trim_silence = serializers.BooleanField(default=False)


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable upper-case code, e.g. FILE_TOO_LARGE.")
    message = serializers.CharField(help_text="For people; may change.")
    details = serializers.DictField(help_text="Machine-readable facts of the error (fields, limits…).")
    request_id = serializers.CharField(
        required=False,
        help_text="The response's X-Request-ID: quote it to support; the dashboard's request log finds it.",
    )


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    """The one error shape of every API failure (``core.errors.error_body``)."""

    error = ErrorBodySerializer()


class JobErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ModelInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()


class JobSerializer(serializers.ModelSerializer):
    """A job as the API returns it. ``params`` and ``result`` are returned as stored; their shape per kind is
    documented by the ``*Job`` serializers below (``JOB_BY_KIND``, ``job_schema``)."""

    input = serializers.SerializerMethodField()
    output_url = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()
    callback_url = serializers.SerializerMethodField()
    kind = serializers.ChoiceField(choices=JobKind.choices)
    status = serializers.ChoiceField(choices=JobStatus.choices)
    progress = serializers.IntegerField(min_value=0, max_value=100, help_text="Percent done.")

    class Meta:
        model = Job
        fields = [
            "id", "kind", "status", "progress", "progress_message", "created_at", "started_at",
            "finished_at", "input", "params", "result", "output_url", "error", "model", "callback_url",
        ]
        read_only_fields = fields

    def to_representation(self, job: Job) -> dict:
        """What DRF's generic walk over the fields (``generic_representation``) returns, written out.

        Every job answer (a submission's 202, reads, listings) serialises a job, and DRF builds and deep-copies
        the 15 fields for each serializer instance first: about 0.3 ms of CPU per job, measured in-process
        (``bench.submit_profile``), a tenth of what a submission itself costs. The values are formatted by
        the same DRF fields (datetimes by ``DateTimeField``); ``test_job_json_is_drf_s_generic_json`` checks
        that both give the same JSON for jobs in every state and kind.
        """
        moment = _DATETIME.to_representation
        return {
            "id": str(job.id),
            "kind": str(job.kind),
            "status": str(job.status),
            "progress": int(job.progress),
            "progress_message": str(job.progress_message),
            "created_at": moment(job.created_at) if job.created_at else None,
            "started_at": moment(job.started_at) if job.started_at else None,
            "finished_at": moment(job.finished_at) if job.finished_at else None,
            "input": self.get_input(job),
            "params": job.params,
            "result": self._result(job),
            "output_url": self.get_output_url(job),
            "error": self.get_error(job),
            "model": self.get_model(job),
            "callback_url": self.get_callback_url(job),
        }

    def generic_representation(self, job: Job) -> dict:
        """DRF's own ``ModelSerializer`` representation (the reference ``to_representation`` must equal)."""
        data = super().to_representation(job)
        data["result"] = self._result(job)
        return data

    @staticmethod
    def _result(job: Job) -> Any:
        if job.kind == JobKind.WATERMARK_DETECT and job.result:
            # Each region's message with the caller's own registry entry (never another tenant's).
            return provenance_selectors.attribute_detection(job.tenant_id, job.result)
        return job.result

    @extend_schema_field(results.InputFile)
    def get_input(self, job: Job) -> dict:
        keys = ("filename", "format", "size_bytes", "duration_seconds", "sample_rate", "channels")
        data = {key: job.input.get(key) for key in keys}
        for role, meta in (job.extra_inputs or {}).items():
            data[role] = {key: meta.get(key) for key in keys}
        return data

    @extend_schema_field(serializers.URLField(
        allow_null=True, help_text="Where to download the output file; null until the job has one."
    ))
    def get_output_url(self, job: Job) -> str | None:
        if not job.output_file:
            return None
        path = reverse("api:job-output", kwargs={"pk": job.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    @extend_schema_field(JobErrorSerializer(allow_null=True, help_text="Why a failed job failed."))
    def get_error(self, job: Job) -> dict | None:
        if not job.error_code:
            return None
        return {"code": job.error_code, "message": job.error_message}

    @extend_schema_field(ModelInfoSerializer(allow_null=True, help_text="The model that ran; null until one has."))
    def get_model(self, job: Job) -> dict | None:
        if not job.model_name:
            return None
        return {"name": job.model_name, "version": job.model_version}

    @extend_schema_field(serializers.URLField(
        allow_null=True, help_text="The job's own callback URL; null when it has none (the tenant's webhook "
        "URL applies then)."
    ))
    def get_callback_url(self, job: Job) -> str | None:
        return job.callback_url or None


RESULT_HELP = "Set when the job has succeeded; null before and on failure."


# One documented job shape per kind: JobSerializer with its kind, params, result and input typed.
@extend_schema_serializer(component_name="WatermarkEmbedJob")
class WatermarkEmbedJobSerializer(JobSerializer):
    """A `watermark_embed` job: its output is the watermarked audio."""

    kind = serializers.ChoiceField(choices=[JobKind.WATERMARK_EMBED])
    params = results.WatermarkEmbedParams()
    result = results.WatermarkEmbedResult(allow_null=True, help_text=RESULT_HELP)
    input = results.InputFile()


@extend_schema_serializer(component_name="WatermarkDetectJob")
class WatermarkDetectJobSerializer(JobSerializer):
    """A `watermark_detect` job: no output file; the result says where the watermark is."""

    kind = serializers.ChoiceField(choices=[JobKind.WATERMARK_DETECT])
    params = results.WatermarkDetectParams()
    result = results.WatermarkDetectResult(allow_null=True, help_text=RESULT_HELP)
    input = results.InputFile()


@extend_schema_serializer(component_name="EmotionJob")
class EmotionJobSerializer(JobSerializer):
    """An `emotion` job: its output, with `extract_embedding`, is the embedding as `.npy`."""

    kind = serializers.ChoiceField(choices=[JobKind.EMOTION])
    params = results.EmotionParams()
    result = results.EmotionResult(allow_null=True, help_text=RESULT_HELP)
    input = results.InputFile()


@extend_schema_serializer(component_name="BeatsyncJob")
class BeatsyncJobSerializer(JobSerializer):
    """A `beatsync` job: its output is the synced MP4; `input.music` is the music track."""

    kind = serializers.ChoiceField(choices=[JobKind.BEATSYNC])
    params = results.BeatsyncParams()
    result = results.BeatsyncResult(allow_null=True, help_text=RESULT_HELP)
    input = results.BeatsyncInput()


@extend_schema_serializer(component_name="WatermarkReportJob")
class WatermarkReportJobSerializer(JobSerializer):
    """A `watermark_report` job: no output file; the result lists every attack of the battery."""

    kind = serializers.ChoiceField(choices=[JobKind.WATERMARK_REPORT])
    params = results.WatermarkReportParams()
    result = results.WatermarkReportResult(allow_null=True, help_text=RESULT_HELP)
    input = results.WatermarkReportInput()


JOB_BY_KIND: dict[str, type[JobSerializer]] = {
    JobKind.WATERMARK_EMBED: WatermarkEmbedJobSerializer,
    JobKind.WATERMARK_DETECT: WatermarkDetectJobSerializer,
    JobKind.EMOTION: EmotionJobSerializer,
    JobKind.BEATSYNC: BeatsyncJobSerializer,
    JobKind.WATERMARK_REPORT: WatermarkReportJobSerializer,
}


def job_schema(**kwargs) -> PolymorphicProxySerializer:
    """The schema's ``Job``: one of the per-kind shapes, chosen by ``kind`` (``many=True`` for lists)."""
    return PolymorphicProxySerializer(
        component_name="Job",
        serializers={str(kind): serializer for kind, serializer in JOB_BY_KIND.items()},
        resource_type_field_name="kind",
        **kwargs,
    )


class WebhookDeliverySerializer(serializers.ModelSerializer):
    """A delivery: ``event_id`` is the ``webhook-id`` header (shared by resends of the event)."""

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "event_id", "event", "job", "resent_from", "url", "status", "attempts", "last_status_code",
            "last_error", "last_response_body", "next_attempt_at", "created_at", "last_attempt_at",
            "delivered_at", "attempt_log",
        ]
        read_only_fields = fields


# --- batches -------------------------------------------------------------------------------------------------


@extend_schema_field({
    "type": "string", "format": "uri", "maxLength": 2000, "pattern": CALLBACK_URL_PATTERN,
    "description": "Receives ONE signed `batch.completed` event when every item job is final (item jobs send "
    "none). An http(s) URL whose host resolves to public addresses only (else 400 INVALID_CALLBACK_URL); "
    "default: the tenant's webhook URL, if its event filter wants `batch.completed`.",
})
class BatchCallbackUrlField(CallbackUrlField):
    """A batch's callback URL: the same checks as a job's, one event for the whole batch."""


BATCH_KINDS = [JobKind.WATERMARK_EMBED, JobKind.WATERMARK_DETECT, JobKind.EMOTION]  # single-input kinds


@extend_schema_field({
    "type": "string",
    "description": "A JSON array with one object per item (in item order) of options overriding the shared ones, "
    'e.g. `[{"message": "1A2B"}, {}]` (else 400 VALIDATION_ERROR).',
})
class ItemParamsField(serializers.JSONField):
    """``item_params``: JSON text in a form field; its shape is checked by the view (``jobs.api.batches``)."""


@extend_schema_serializer(component_name="BatchCreate")  # + "Request" in the schema
class BatchCreateRequest(serializers.Serializer):
    """``POST /api/v1/batches`` (multipart). Items are every ``file`` part, then every ``file_url``, then every
    ``upload_id``, in order; the kind's options (e.g. ``message``) apply to all, ``item_params`` overrides them
    per item."""

    kind = serializers.ChoiceField(choices=BATCH_KINDS, help_text="What to do with every item (single-input kinds).")
    file = serializers.ListField(child=serializers.FileField(), required=False, help_text="One part per file.")
    file_url = serializers.ListField(child=FileUrlField(required=True), required=False,
                                     help_text="One part per URL, fetched like a job's `file_url`.")
    upload_id = serializers.ListField(child=serializers.UUIDField(), required=False,
                                      help_text="One part per presigned direct upload.")
    item_params = ItemParamsField(required=False)
    callback_url = BatchCallbackUrlField()
    model_version = ModelVersionField()
    message = MessageField(help_text="watermark_embed: as for one job; random per item when omitted.")
    output_format = serializers.ChoiceField(choices=OUTPUT_FORMATS, required=False,
                                            help_text="watermark_embed: as for one job.")
    granularity = serializers.ChoiceField(choices=("utterance", "frame"), required=False,
                                          help_text="emotion: as for one job.")
    extract_embedding = serializers.BooleanField(required=False, help_text="emotion: as for one job.")


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
    job = job_schema(allow_null=True, help_text="The item's job (typed by `kind`); null when it was refused.")
    error = BatchItemErrorSerializer(allow_null=True, help_text="Why the item was refused; null when accepted.")


class BatchSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()
    items = serializers.SerializerMethodField()
    kind = serializers.ChoiceField(choices=BATCH_KINDS)
    callback_url = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = ["id", "kind", "status", "created_at", "completed_at", "params", "callback_url", "counts", "items"]
        read_only_fields = fields

    @extend_schema_field(serializers.URLField(
        allow_null=True, help_text="The batch's own callback URL; null when it has none (the tenant's webhook "
        "URL applies then)."
    ))
    def get_callback_url(self, batch: Batch) -> str | None:
        return batch.callback_url or None

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


@extend_schema_serializer(component_name="UploadCreate")  # + "Request" in the schema
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
