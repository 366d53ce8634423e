"""``POST /api/v1/provenance/verify``: who made this file, from its Content Credentials or its watermark.

The work is in ``jobs.attribution``; this view validates the request, holds the answer while the watermark
detection runs (``?wait``, default ``PROVENANCE_VERIFY_WAIT_SECONDS``, as every waitable endpoint: on the
event loop under ASGI) and serialises. Always 200: ``status`` says whether the answer is ``complete`` or
still ``pending`` (then poll ``watermark.job_url``: the detect job's result carries the registry entries).
"""

from __future__ import annotations

from django.conf import settings
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.scoping import tenant_for_request
from billing.ratelimit import standing_for_request
from core.errors import ServiceError
from jobs import attribution, services
from jobs.api import waiting
from jobs.api.schema import WAIT_PARAM
from jobs.api.views import parse_wait
from jobs.models import Job, JobKind


class VerifyRequest(serializers.Serializer):
    file = serializers.FileField(help_text="Audio to verify: WAV, FLAC, OGG, MP3 or M4A/AAC/MP4.")


class VerifyResponse(serializers.Serializer):
    path = serializers.ChoiceField(
        choices=("manifest", "watermark", "none"),
        help_text="What answered: a valid embedded manifest, the watermark (manifest absent or failing), or "
        "neither (no valid manifest and no watermark found).",
    )
    status = serializers.ChoiceField(choices=("complete", "pending", "failed"))
    manifest = serializers.DictField(
        help_text="The manifest report: present, valid, trusted, state, checks (signature, chain, hash_binding, "
        "assertions: passed/failed/not_checked), failures (the SDK's codes), signer, actions, soft_bindings, "
        "declaration.",
    )
    watermark = serializers.DictField(allow_null=True, help_text="The detection's job, regions and messages.")
    attribution = serializers.DictField(
        allow_null=True, help_text="source, message and your registry entry for it (null if not yours).",
    )


class VerifyView(waiting.WaitableView):
    parser_classes = [MultiPartParser]  # uploads are multipart only, as every upload endpoint
    rate_family = "watermark"  # the fallback is a watermark detection

    @extend_schema(
        request=VerifyRequest, responses={200: VerifyResponse},
        parameters=[OpenApiParameter(WAIT_PARAM.name, WAIT_PARAM.type, description=WAIT_PARAM.description
                                     + " Default: PROVENANCE_VERIFY_WAIT_SECONDS (20).")],
        summary="Verify a file's provenance (C2PA manifest, else watermark + registry)",
    )
    def post(self, request: Request) -> Response:
        if len(request.FILES.getlist("file")) > 1:
            raise ServiceError("VALIDATION_ERROR", "Send one `file` part.", {"fields": {"file": ["several parts"]}})
        wait = parse_wait(request) if request.query_params.get("wait") not in (None, "") else min(
            settings.PROVENANCE_VERIFY_WAIT_SECONDS, settings.MAX_WAIT_SECONDS
        )
        serializer = VerifyRequest(data=request.data)
        if not serializer.is_valid():
            errors = serializer.errors
            if "file" in errors and "empty" in str(errors["file"]).lower():
                raise ServiceError("EMPTY_FILE", "`file` is empty.", {"field": "file"})
            raise ServiceError("VALIDATION_ERROR", "The request is invalid.", {"fields": errors})
        tenant = tenant_for_request(request)
        sub = services.Submission(
            tenant=tenant,
            kind=JobKind.WATERMARK_DETECT,
            files={"file": serializer.validated_data["file"]},
            api_key=request.auth if request.auth is not None else None,
            user=request.user,
            standing=standing_for_request(request),
        )
        manifest = attribution.manifest_report(sub)
        if manifest["valid"]:  # answered by the manifest: no job, no wait
            return Response(attribution.verification_json(tenant.pk, manifest, None, request))
        slot = waiting.acquire(request, wait)  # before submitting: a refused wait creates no job
        try:
            job = attribution.submit_detection(sub, manifest)
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        return waiting.respond(
            request, job, wait, lambda j: attribution.verification_json(tenant.pk, manifest, j, request), slot=slot,
        )


class VerificationView(waiting.WaitableView):
    """The verification a pending ``POST /provenance/verify`` answer points to, rebuilt from its detect job."""

    rate_family = "read"

    @extend_schema(responses={200: VerifyResponse}, parameters=[WAIT_PARAM], summary="A verification's answer")
    def get(self, request: Request, pk) -> Response:
        wait = parse_wait(request)
        job = Job.objects.filter(
            pk=pk, tenant=tenant_for_request(request), kind=JobKind.WATERMARK_DETECT,
            params__has_key=attribution.VERIFY_PARAM,
        ).first()
        if job is None:
            raise ServiceError("NOT_FOUND", "No such verification.", http_status=404)
        return waiting.respond(request, job, wait, lambda j: attribution.verification_for_job(j, request))


urlpatterns = [
    path("provenance/verify", VerifyView.as_view(), name="provenance-verify"),
    path("provenance/verify/<uuid:pk>", VerificationView.as_view(), name="provenance-verification"),
]
