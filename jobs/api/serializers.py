"""Request and response shapes of the jobs API (also what the OpenAPI schema documents)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.models import Job, JobKind, JobStatus, WebhookDelivery
from media_ops.audio import OUTPUT_FORMATS


class JobCreateRequest(serializers.Serializer):
    """Fields every job-creating endpoint accepts."""

    callback_url = serializers.CharField(
        required=False, allow_blank=True, max_length=2000,
        help_text="POSTed a signed JSON event when the job ends (see the webhooks guide). "
        "Public http(s) only; default: the tenant's webhook URL.",
    )


class WatermarkEmbedRequest(JobCreateRequest):
    file = serializers.FileField(help_text="Audio: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4.")
    message = serializers.CharField(
        required=False, allow_blank=True, max_length=16,
        help_text="16-bit message as 4 hex digits (e.g. 1A2B). Random when omitted; returned in the result.",
    )
    output_format = serializers.ChoiceField(
        choices=OUTPUT_FORMATS, required=False,
        help_text="Output container; default: the input's format (FLAC when it has no encoder).",
    )


class WatermarkDetectRequest(JobCreateRequest):
    file = serializers.FileField(help_text="Audio: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4.")


class WatermarkReportRequest(JobCreateRequest):
    file = serializers.FileField(
        help_text="The watermarked audio (e.g. an embed job's output): WAV, FLAC, OGG, MP3 or M4A/AAC/MP4, "
        "at most WATERMARK_REPORT_MAX_SECONDS (60 s by default) long."
    )
    original = serializers.FileField(
        required=False,
        help_text="Optional: the audio before watermarking; adds the watermark's quality (SNR, segmental SNR).",
    )
    message = serializers.CharField(
        required=False, allow_blank=True, max_length=16,
        help_text="The 16-bit message the file should carry (4 hex digits). Default: the message detection "
        "decodes from the file as uploaded.",
    )


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


class EmotionAnalyzeRequest(JobCreateRequest):
    file = serializers.FileField(help_text="Speech audio: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4.")
    granularity = serializers.ChoiceField(choices=("utterance", "frame"), default="utterance")
    extract_embedding = serializers.BooleanField(
        default=False, help_text="Store the embedding as a downloadable .npy output."
    )


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
