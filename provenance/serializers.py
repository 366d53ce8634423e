"""Request and response shapes of the message registry API (also what the OpenAPI schema documents)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from provenance.models import DIGITAL_SOURCE_TYPES


class RegisteredMessageOut(serializers.Serializer):
    message = serializers.CharField(help_text="4 hex digits: the watermark's 16-bit payload.")
    label = serializers.CharField()
    metadata = serializers.DictField()
    job_id = serializers.UUIDField(allow_null=True, help_text="The embed job that allocated it, if any.")
    created_at = serializers.DateTimeField()


@extend_schema_field({
    "type": "string", "pattern": "^([0-9A-Fa-f]{4}|auto)?$",
    "description": "4 hex digits (anything else is 400 INVALID_MESSAGE); omit, empty or `auto`: the next free "
    "message of your registry.",
})
class RegistryMessageField(serializers.CharField):
    """Checked by ``provenance.services`` (400 ``INVALID_MESSAGE``), not here, so the error has its own code."""

    def __init__(self, **kwargs) -> None:
        super().__init__(required=False, allow_blank=True, **kwargs)


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\x00]*\\S[^\\x00]*$",
                      "description": "What the message means, e.g. a campaign or voice."})
class LabelField(serializers.CharField):
    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=200, **kwargs)


class RegisteredMessageCreate(serializers.Serializer):
    message = RegistryMessageField()
    label = LabelField()
    metadata = serializers.DictField(
        required=False, default=dict, help_text="Free JSON object (at most 8 KB): end user, TTS voice, …"
    )


class RegisteredMessagePage(serializers.Serializer):
    results = RegisteredMessageOut(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page (ordered by message), or null.")


class ProvenanceSettingsSerializer(serializers.Serializer):
    """The tenant's Content Credentials settings; PATCH any subset."""

    manifests_enabled = serializers.BooleanField(required=False, help_text="Sign watermarked outputs (C2PA).")
    generator_name = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                           help_text="The product that made the audio (declared in the manifest).")
    generator_version = serializers.CharField(required=False, allow_blank=True, max_length=50)
    digital_source_type = serializers.ChoiceField(
        required=False, allow_blank=True, choices=[value for value, _ in DIGITAL_SOURCE_TYPES if value],
        help_text="IPTC digital source type, e.g. …/trainedAlgorithmicMedia for AI-generated audio.",
    )
    statement = serializers.CharField(required=False, allow_blank=True, max_length=500)
