"""Request and response shapes of the jobs API (also what the OpenAPI schema documents).

The schema is the contract clients are generated from (``audioseal_site/tests/test_generated_client.py``):
every limit a view enforces is stated here too (patterns, ranges, lengths), and a job is documented per kind
(``job_schema()``: a union discriminated by ``kind``, with the typed ``params`` and ``result`` of ``results``).
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from jobs.api import results
from jobs.models import Job, JobKind, JobStatus, WebhookDelivery
from media_ops.audio import OUTPUT_FORMATS

# What the API accepts as a message: 4 hex digits in either case, or nothing (a random one is chosen; the
# schema's second branch, from allow_blank, says so).
REQUEST_MESSAGE_PATTERN = r"^[0-9A-Fa-f]{4}$"
CALLBACK_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://"


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
    "description": "16-bit message as 4 hex digits (e.g. 1A2B; anything else is 400 INVALID_MESSAGE). "
    "Random when omitted or empty; returned in the result, upper case.",
})
class MessageField(serializers.CharField):
    """Checked by the view (400 ``INVALID_MESSAGE``), not here, so the error has its own code."""

    def __init__(self, **kwargs) -> None:
        super().__init__(required=False, allow_blank=True, trim_whitespace=False, **kwargs)


class JobCreateRequest(serializers.Serializer):
    """Fields every job-creating endpoint accepts."""

    callback_url = CallbackUrlField()


@extend_schema_serializer(component_name="WatermarkEmbed")  # + "Request" in the schema
class WatermarkEmbedRequest(JobCreateRequest):
    file = serializers.FileField(help_text="Audio: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4.")
    message = MessageField()
    output_format = serializers.ChoiceField(
        choices=OUTPUT_FORMATS, required=False,
        help_text="Output container; default: the input's format (FLAC when it has no encoder).",
    )


@extend_schema_serializer(component_name="WatermarkDetect")  # + "Request" in the schema
class WatermarkDetectRequest(JobCreateRequest):
    file = serializers.FileField(help_text="Audio: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4.")


@extend_schema_field({
    "type": "string", "pattern": REQUEST_MESSAGE_PATTERN,
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


@extend_schema_serializer(component_name="EmotionAnalyze")  # + "Request" in the schema
class EmotionAnalyzeRequest(JobCreateRequest):
    file = serializers.FileField(help_text="Speech audio: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4.")
    granularity = serializers.ChoiceField(choices=("utterance", "frame"), default="utterance")
    extract_embedding = serializers.BooleanField(
        default=False, help_text="Store the embedding as a downloadable .npy output."
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
