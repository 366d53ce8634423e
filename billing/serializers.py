"""The shape of ``GET /api/v1/usage`` (what the OpenAPI schema documents)."""

from __future__ import annotations

from rest_framework import serializers


class PeriodSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class PlanRefSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class SubscriptionStateSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["active", "trialing", "past_due", "canceled"])
    past_due_since = serializers.DateTimeField(allow_null=True)
    can_submit = serializers.BooleanField(help_text="False: canceled, suspended or past due beyond grace.")
    stripe_managed = serializers.BooleanField()


class MinutesSerializer(serializers.Serializer):
    included = serializers.FloatField(help_text="Plan minutes plus minutes granted for this period.")
    granted = serializers.FloatField()
    used = serializers.FloatField(help_text="Billed: settled from succeeded jobs.")
    reserved = serializers.FloatField(help_text="Held by queued and running jobs.")
    remaining = serializers.FloatField()
    overage = serializers.FloatField(help_text="Used past the included minutes (metered plans).")


class SecondsSerializer(serializers.Serializer):
    included = serializers.IntegerField()
    used = serializers.IntegerField()
    reserved = serializers.IntegerField()


class KindUsageSerializer(serializers.Serializer):
    kind = serializers.CharField()
    seconds = serializers.IntegerField()
    minutes = serializers.FloatField()
    jobs = serializers.IntegerField()


class LimitsSerializer(serializers.Serializer):
    plan_code = serializers.CharField()
    included_minutes = serializers.IntegerField()
    overage_allowed = serializers.BooleanField()
    max_file_bytes = serializers.IntegerField()
    max_audio_seconds = serializers.FloatField()
    max_video_pixels = serializers.IntegerField(help_text="Largest beat-sync video frame: width × height.")
    max_video_fps = serializers.FloatField(help_text="Highest beat-sync video frame rate.")
    max_video_pixel_rate = serializers.IntegerField(help_text="Most beat-sync video pixels per second.")
    max_concurrent_jobs = serializers.IntegerField()
    retention_days = serializers.IntegerField()
    rate_limits = serializers.DictField(
        child=serializers.IntegerField(), help_text="Requests per minute per API key, by endpoint family."
    )


class UsageSerializer(serializers.Serializer):
    period = PeriodSerializer()
    plan = PlanRefSerializer()
    subscription = SubscriptionStateSerializer()
    minutes = MinutesSerializer()
    seconds = SecondsSerializer()
    by_kind = KindUsageSerializer(many=True)
    active_jobs = serializers.IntegerField()
    limits = LimitsSerializer()
