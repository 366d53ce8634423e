"""``POST /api/v1/uploads``: a presigned direct upload to S3 (``jobs.direct_uploads``)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scoping import tenant_for_request
from billing.ratelimit import standing_for_request
from core.errors import ServiceError
from jobs import direct_uploads
from jobs.api import schema, serializers


class UploadCreateView(APIView):
    parser_classes = [JSONParser]  # JSON bodies only (no file rides in this request): a form is a 415
    rate_family = "default"

    @extend_schema(
        operation_id="create_upload",
        request=serializers.UploadCreateRequest,
        responses={
            201: serializers.UploadSerializer,
            **schema.errors(
                _400="VALIDATION_ERROR (a field)", _413="FILE_TOO_LARGE: `size_bytes` over the plan's size limit",
                _409="PRESIGNED_UPLOADS_UNAVAILABLE: this deployment does not store files in S3",
            ),
        },
        summary="Start a direct upload: a presigned PUT URL (S3 storage only; 409 otherwise)",
        description="PUT the file's bytes to `upload_url` with `headers`, then create a job with `upload_id`. "
        "The URL and the unused upload expire at `expires_at` (`DIRECT_UPLOAD_EXPIRY_SECONDS`).",
    )
    def post(self, request: Request) -> Response:
        form = serializers.UploadCreateRequest(data=request.data)
        if not form.is_valid():
            raise ServiceError("VALIDATION_ERROR", "The request is invalid.", {"fields": form.errors})
        presigned = direct_uploads.create(
            tenant_for_request(request),
            filename=form.validated_data.get("filename") or "",
            size_bytes=form.validated_data.get("size_bytes"),
            max_bytes=standing_for_request(request).limits.max_file_bytes,
            api_key=request.auth if request.auth is not None else None,
        )
        body = serializers.UploadSerializer(presigned.upload, context={"presigned": presigned}).data
        return Response(body, status=status.HTTP_201_CREATED)
