"""Request and response shapes of the message registry API (also what the OpenAPI schema documents)."""

from __future__ import annotations

from rest_framework import serializers


class RegisteredMessageOut(serializers.Serializer):
    message = serializers.CharField(help_text="4 hex digits: the watermark's 16-bit payload.")
    label = serializers.CharField()
    metadata = serializers.DictField()
    job_id = serializers.UUIDField(allow_null=True, help_text="The embed job that allocated it, if any.")
    created_at = serializers.DateTimeField()


class RegisteredMessageCreate(serializers.Serializer):
    message = serializers.CharField(
        required=False, allow_blank=True, max_length=16,
        help_text="4 hex digits; omit (or `auto`) to get the next free message of your registry.",
    )
    label = serializers.CharField(max_length=200, help_text="What the message means, e.g. a campaign or voice.")
    metadata = serializers.DictField(
        required=False, default=dict, help_text="Free JSON object (at most 8 KB): end user, TTS voice, …"
    )


class RegisteredMessagePage(serializers.Serializer):
    results = RegisteredMessageOut(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page (ordered by message), or null.")
