"""The jobs REST API. Views validate, call ``jobs.services`` and serialise; nothing else."""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.storage import default_storage
from django.http import HttpResponseRedirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.scoping import tenant_for_request
from billing.ratelimit import standing_for_request
from core.asgi import FileResponse  # streamed chunk by chunk under ASGI too
from core.errors import ServiceError
from jobs import idempotency, services
from jobs.api import serializers, waiting
from jobs.kinds import spec
from jobs.models import Job, JobKind, JobStatus
from media_ops.audio import CONTENT_TYPES, OUTPUT_FORMATS
from media_ops.watermark import parse_message, random_message

WAIT_PARAM = OpenApiParameter(
    "wait", {"type": "number", "minimum": 0, "maximum": settings.MAX_WAIT_SECONDS},
    description="Hold the response up to this many seconds until the job is final (the maximum is the "
    "server's `MAX_WAIT_SECONDS`; more is 400 VALIDATION_ERROR). Too many held waits per key: 429 TOO_MANY_WAITS.",
)
IDEMPOTENCY_PARAM = OpenApiParameter(
    idempotency.HEADER,
    {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_LENGTH, "pattern": r"^[!-~]+$"},
    location=OpenApiParameter.HEADER,
    description="Retry-safe creation: the same key and request return the original job (never a second "
    "charge); the same key with a different request gets 409 IDEMPOTENCY_CONFLICT. 1 to 255 visible ASCII "
    "characters (a UUID is a good choice; else 400 INVALID_IDEMPOTENCY_KEY). Scoped to the tenant, kept at "
    "least 24 h.",
)
REPLAYED_HEADER = OpenApiParameter(
    idempotency.REPLAYED_HEADER, {"type": "string", "enum": ["true"]}, location=OpenApiParameter.HEADER,
    response=[202], description="Present when an `Idempotency-Key` replay returned the original job.",
)


def errors(*statuses: int, **described: str) -> dict[int, OpenApiResponse]:
    """Documented error responses (the one ``Error`` shape); ``described`` adds the codes of a status, as
    ``_<status>="CODE_A, CODE_B"``."""
    text = {int(key.lstrip("_")): value for key, value in described.items()}
    return {
        status_code: OpenApiResponse(serializers.ErrorSerializer, description=text.get(status_code, "An error."))
        for status_code in sorted({*statuses, *text})
    }


CREATE_ERRORS = errors(
    _400="VALIDATION_ERROR (a field), EMPTY_FILE, INVALID_CALLBACK_URL, INVALID_IDEMPOTENCY_KEY",
    _402="QUOTA_EXCEEDED (the period's minutes are used up), SUBSCRIPTION_INACTIVE",
    _409="IDEMPOTENCY_CONFLICT: the key was used for another request",
    _413="FILE_TOO_LARGE: over the plan's size limit",
    _415="INVALID_FORMAT: not a decodable file of an accepted type",
    _422="AUDIO_TOO_LONG, NO_AUDIO_TRACK, VIDEO_TOO_LARGE, FRAME_RATE_TOO_HIGH",
)


def job_created(kind: str, example: dict[str, Any]) -> dict[int, OpenApiResponse]:
    """The 202 of a job-creating operation: the new (or replayed) job of ``kind``, with an example."""
    return {
        202: OpenApiResponse(
            serializers.JOB_BY_KIND[kind],
            description="Accepted: the job is queued (or final, when `wait` was long enough).",
            examples=[OpenApiExample(f"A new {kind} job", value=example, status_codes=["202"], response_only=True)],
        ),
        **CREATE_ERRORS,
    }


def _queued_example(kind: str, params: dict[str, Any], input_: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "5f0c6a4e-8c1b-4d6e-9a43-2b7f1d0c9e11", "kind": kind, "status": "queued", "progress": 0,
        "progress_message": "", "created_at": "2026-12-01T10:00:00Z", "started_at": None, "finished_at": None,
        "input": input_, "params": params, "result": None, "output_url": None, "error": None, "model": None,
        "callback_url": None,
    }


_SPEECH = {"filename": "speech.wav", "format": "wav", "size_bytes": 123370, "duration_seconds": 3.85,
           "sample_rate": 16000, "channels": 1}
EXAMPLES = {
    JobKind.WATERMARK_EMBED: _queued_example(JobKind.WATERMARK_EMBED, {"message": "1A2B"}, _SPEECH),
    JobKind.WATERMARK_DETECT: _queued_example(JobKind.WATERMARK_DETECT, {}, _SPEECH),
    JobKind.EMOTION: _queued_example(
        JobKind.EMOTION, {"granularity": "utterance", "extract_embedding": False}, _SPEECH
    ),
    JobKind.BEATSYNC: _queued_example(
        JobKind.BEATSYNC, {"trim_silence": False},
        {"filename": "dance.mp4", "format": "mp4", "size_bytes": 2483811, "duration_seconds": 6.0,
         "sample_rate": 48000, "channels": 2,
         "music": {"filename": "track.mp3", "format": "mp3", "size_bytes": 128653, "duration_seconds": 8.0,
                   "sample_rate": 44100, "channels": 2}},
    ),
}


def create_schema(kind: str, request: type, summary: str, description: str):
    """``extend_schema`` of a job-creating operation: multipart only, its own description and example."""
    return extend_schema(
        operation_id=spec(kind).url_name.replace("-", "_"),
        request={"multipart/form-data": request},
        responses=job_created(kind, EXAMPLES[kind]),
        parameters=[WAIT_PARAM, IDEMPOTENCY_PARAM, REPLAYED_HEADER],
        summary=summary,
        description=description
        + "\n\nUploads are `multipart/form-data` only. The job is queued and answered at once with 202; follow it "
        "with `GET /api/v1/jobs/{id}` (or `?wait=N`), or a webhook at `callback_url`.",
    )


def parse_wait(request: Request) -> float:
    raw = request.query_params.get("wait")
    if raw in (None, ""):
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= settings.MAX_WAIT_SECONDS:
        raise ServiceError(
            "VALIDATION_ERROR",
            f"`wait` must be a number of seconds between 0 and {settings.MAX_WAIT_SECONDS}.",
            {"fields": {"wait": ["out of range"]}},
        )
    return value


def tenant_jobs(request: Request):
    return Job.objects.filter(tenant=tenant_for_request(request))


def serialize_for(request: Request):
    """The job's JSON for this request (its links are absolute URLs of the request's host)."""
    return lambda job: serializers.JobSerializer(job, context={"request": request}).data


class JobCreateView(waiting.WaitableView):
    """Base for endpoints that create a job from uploaded files (each subclass documents its operation).

    Multipart only: the schema offers exactly one request body type, so a generated client sends files the one
    way the server reads them (an urlencoded form cannot carry a file)."""

    parser_classes = [MultiPartParser]
    kind: str = ""
    request_serializer: type[serializers.serializers.Serializer]

    @property
    def rate_family(self) -> str:
        """Rate-limit family (billing.ratelimit): the kind's queue (watermark, emotion, media)."""
        return spec(self.kind).queue

    def params_from(self, data: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _check_content_length(self, request: Request) -> None:
        """Refuse an obviously oversized upload before reading its body."""
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return
        limit = settings.MAX_UPLOAD_BYTES * len(spec(self.kind).input_names) + 1024 * 1024
        if length > limit:
            raise ServiceError(
                "FILE_TOO_LARGE",
                f"The request is {length} bytes; the limit is {settings.MAX_UPLOAD_BYTES} bytes per file.",
                {"size_bytes": length, "limit_bytes": settings.MAX_UPLOAD_BYTES},
            )

    def _check_one_part_per_file(self, request: Request) -> None:
        """Two ``file`` parts in one request would silently lose one: refuse instead."""
        for name in spec(self.kind).input_names:
            count = len(request.FILES.getlist(name))
            if count > 1:
                raise ServiceError(
                    "VALIDATION_ERROR", f"Send one `{name}` part; this request has {count}.",
                    {"fields": {name: [f"{count} parts; expected one"]}},
                )

    def post(self, request: Request) -> Response:
        self._check_content_length(request)
        self._check_one_part_per_file(request)
        wait = parse_wait(request)
        key = idempotency.key_from_request(request)
        serializer = self.request_serializer(data=request.data)
        if not serializer.is_valid():
            self.raise_invalid(serializer.errors)
        data = serializer.validated_data
        slot = waiting.acquire(request, wait)  # before submitting: a refused wait creates no job
        try:
            job, replayed = idempotency.submit(
                services.Submission(
                    tenant=tenant_for_request(request),
                    kind=self.kind,
                    files={name: data[name] for name in spec(self.kind).input_names},
                    params=self.params_from(data),
                    api_key=request.auth if request.auth is not None else None,
                    user=request.user,
                    idempotency_key=key,
                    request_fingerprint=idempotency.request_fingerprint(self.kind, request) if key else "",
                    callback_url=(data.get("callback_url") or "").strip(),
                    standing=standing_for_request(request),  # read once per request (the throttle did)
                )
            )
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        response = waiting.respond(
            request, job, wait, serialize_for(request), status=status.HTTP_202_ACCEPTED, slot=slot
        )
        if replayed:
            response[idempotency.REPLAYED_HEADER] = "true"
        return response

    def raise_invalid(self, errors: dict[str, Any]) -> None:
        for name in spec(self.kind).input_names:
            if name in errors and "file" in str(errors[name]).lower() and "empty" in str(errors[name]).lower():
                raise ServiceError("EMPTY_FILE", f"`{name}` is empty.", {"field": name})
        raise ServiceError("VALIDATION_ERROR", "The request is invalid.", {"fields": errors})


class WatermarkEmbedView(JobCreateView):
    kind = JobKind.WATERMARK_EMBED
    request_serializer = serializers.WatermarkEmbedRequest

    def params_from(self, data: dict[str, Any]) -> dict[str, Any]:
        message = data.get("message") or ""
        if message:
            try:
                if message != message.strip():  # the schema's pattern: exactly 4 hex digits
                    raise ValueError("message must be exactly 4 hexadecimal digits (16 bits), e.g. 1A2B")
                parse_message(message)
            except ValueError as exc:
                raise ServiceError("INVALID_MESSAGE", str(exc), {"message": message}) from exc
            message = message.upper()
        else:
            message = random_message()
        params: dict[str, Any] = {"message": message}
        if data.get("output_format"):
            params["output_format"] = data["output_format"]
        return params

    @create_schema(
        JobKind.WATERMARK_EMBED, serializers.WatermarkEmbedRequest, "Embed a 16-bit watermark",
        "Hides an inaudible 16-bit message (AudioSeal) in speech or music. The output is the watermarked "
        "audio in the input's format (or `output_format`); the result has the message, its bits and the SNR.",
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class WatermarkDetectView(JobCreateView):
    kind = JobKind.WATERMARK_DETECT
    request_serializer = serializers.WatermarkDetectRequest

    @create_schema(
        JobKind.WATERMARK_DETECT, serializers.WatermarkDetectRequest, "Detect a watermark and decode its message",
        "Finds where in the audio a watermark is (`segments`, each decoded from its own samples, with the "
        "offset, polarity and speed it was read at) and the message of the strongest region. No output file.",
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class EmotionAnalyzeView(JobCreateView):
    kind = JobKind.EMOTION
    request_serializer = serializers.EmotionAnalyzeRequest

    def params_from(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"granularity": data["granularity"], "extract_embedding": data["extract_embedding"]}

    @create_schema(
        JobKind.EMOTION, serializers.EmotionAnalyzeRequest, "Recognise the emotion in speech (emotion2vec+)",
        "Scores nine emotions over the whole utterance or (`granularity=frame`) per 20 ms frame. With "
        "`extract_embedding` the model's embedding is the output, as a float32 `.npy` file.",
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class BeatsyncAlignView(JobCreateView):
    kind = JobKind.BEATSYNC
    request_serializer = serializers.BeatsyncAlignRequest

    def params_from(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"trim_silence": data["trim_silence"]}

    @create_schema(
        JobKind.BEATSYNC, serializers.BeatsyncAlignRequest,
        "Align a dance video to its music and render the synced video",
        "Finds where the clean `music` track sits in the `video`'s recorded sound and renders an MP4 with the "
        "music in place of the recording (optionally trimmed to the non-silent span).",
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class JobCursorPagination(CursorPagination):
    """Newest first. A cursor is opaque to clients: one that was not ours (tampered, truncated, from another
    listing) is a 400 ``INVALID_CURSOR``, never a 404 or a crash; ``page_size`` outside 1–100 is refused."""

    ordering = ("-created_at", "-id")
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100

    def decode_cursor(self, request: Request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound as exc:
            raise _invalid_cursor() from exc
        if cursor is not None and cursor.position is not None:
            try:  # the position is compared with created_at: it must be one
                Job._meta.get_field("created_at").to_python(cursor.position)
            except DjangoValidationError as exc:
                raise _invalid_cursor() from exc
        return cursor

    def get_paginated_response(self, data) -> Response:
        """DRF's page plus ``next_cursor``: the ``cursor`` value of the next page, so a client need not parse
        it out of the ``next`` URL."""
        response = super().get_paginated_response(data)
        response.data["next_cursor"] = _cursor_of(response.data.get("next"))
        return response

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        paginated = super().get_paginated_response_schema(schema)
        paginated["required"] = ["next", "previous", "next_cursor", "results"]
        paginated["properties"]["next_cursor"] = {
            "type": "string", "nullable": True,
            "description": "Pass as `cursor` to read the next page; null on the last page.",
        }
        for name in ("next", "previous"):
            paginated["properties"][name].pop("example", None)
        return paginated

    def get_schema_operation_parameters(self, view) -> list[dict[str, Any]]:
        return [
            {"name": self.cursor_query_param, "required": False, "in": "query",
             "description": "Opaque: the `next_cursor` (or the `cursor` of `next`/`previous`) of a page this "
             "listing gave out; any other value is 400 INVALID_CURSOR.", "schema": {"type": "string"}},
            {"name": self.page_size_query_param, "required": False, "in": "query",
             "description": f"Jobs per page (default {self.page_size}); outside 1–{self.max_page_size} is 400 "
             "VALIDATION_ERROR.",
             "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size}},
        ]

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ServiceError(
                "VALIDATION_ERROR", f"`page_size` must be a whole number from 1 to {self.max_page_size}.",
                {"fields": {"page_size": ["out of range"]}},
            )
        return size


def _cursor_of(url: str | None) -> str | None:
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get(JobCursorPagination.cursor_query_param)
    return values[0] if values else None


def _invalid_cursor() -> ServiceError:
    return ServiceError(
        "INVALID_CURSOR", "The `cursor` is not one this listing gave out; start again without it.",
        {"fields": {"cursor": ["invalid"]}},
    )


class JobListView(generics.ListAPIView):
    rate_family = "read"
    serializer_class = serializers.JobSerializer
    pagination_class = JobCursorPagination

    def get_queryset(self):
        queryset = tenant_jobs(self.request)
        for name, choices in (("status", JobStatus.values), ("kind", JobKind.values)):
            value = self.request.query_params.get(name)
            if value:
                if value not in choices:
                    raise ServiceError(
                        "VALIDATION_ERROR", f"Unknown {name} {value!r}.", {"fields": {name: list(choices)}}
                    )
                queryset = queryset.filter(**{name: value})
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=[s.value for s in JobStatus],
                             description="Only jobs in this status."),
            OpenApiParameter("kind", OpenApiTypes.STR, enum=[k.value for k in JobKind],
                             description="Only jobs of this kind."),
        ],
        operation_id="list_jobs",
        responses={200: serializers.job_schema(many=True), **errors(400, _400="VALIDATION_ERROR, INVALID_CURSOR")},
        summary="List jobs, newest first",
        description="The tenant's jobs, newest first, a page at a time: pass `next_cursor` back as `cursor` for "
        "the next page.",
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class JobDetailView(waiting.WaitableView):
    rate_family = "read"

    @extend_schema(
        operation_id="read_job",
        responses={200: serializers.job_schema(), **errors(400, 404, _400="VALIDATION_ERROR (`wait`)")},
        parameters=[WAIT_PARAM], summary="Read a job",
        description="The job, its progress and, once it has succeeded, its typed `result` (by `kind`).",
    )
    def get(self, request: Request, pk) -> Response:
        job = generics.get_object_or_404(tenant_jobs(request), pk=pk)
        return waiting.respond(request, job, parse_wait(request), serialize_for(request))


class JobDeliveriesView(APIView):
    rate_family = "read"

    @extend_schema(
        operation_id="list_deliveries",
        responses={200: serializers.WebhookDeliverySerializer(many=True), **errors(404)},
        summary="The job's webhook deliveries and their attempts, newest first",
    )
    def get(self, request: Request, pk) -> Response:
        job = generics.get_object_or_404(tenant_jobs(request), pk=pk)
        deliveries = job.webhook_deliveries.order_by("-created_at")[:100]
        return Response(serializers.WebhookDeliverySerializer(deliveries, many=True).data)


class JobCancelView(APIView):
    rate_family = "read"

    @extend_schema(
        request=None, operation_id="cancel_job",
        responses={200: serializers.job_schema(), **errors(404, _409="INVALID_STATE: the job is already final")},
        summary="Cancel a queued or running job",
    )
    def post(self, request: Request, pk) -> Response:
        job = generics.get_object_or_404(tenant_jobs(request), pk=pk)
        services.cancel(job)
        return Response(serializers.JobSerializer(job, context={"request": request}).data)


OUTPUT_CONTENT_TYPES = (*(CONTENT_TYPES[fmt] for fmt in OUTPUT_FORMATS), "application/x-npy", "video/mp4")
# Inputs: the audio formats the upload check accepts, and beat-sync's MP4/MOV video (by file name).
INPUT_CONTENT_TYPES = (*dict.fromkeys(CONTENT_TYPES.values()), "video/mp4", "video/quicktime")
DOWNLOAD_HEADERS = [
    OpenApiParameter("Content-Disposition", OpenApiTypes.STR, location=OpenApiParameter.HEADER, response=[200],
                     description='`attachment; filename="…"`: the name to save the file as.'),
    OpenApiParameter("Location", {"type": "string", "format": "uri"}, location=OpenApiParameter.HEADER,
                     response=[302], description="The presigned S3 URL (valid for minutes)."),
]


def download_responses(content_types: tuple[str, ...], not_found: str) -> dict:
    """A file download: its bytes in one of ``content_types``, or a 302 to the S3 copy; 404 and 410 errors."""
    return {
        **{(200, content_type): OpenApiResponse(OpenApiTypes.BINARY, description="The file.")
           for content_type in content_types},
        302: OpenApiResponse(description="S3 storage: redirect to a short-lived presigned URL of the file."),
        **errors(_404=not_found, _410="FILE_EXPIRED: deleted by the retention policy"),
    }


class JobOutputView(APIView):
    rate_family = "read"

    @extend_schema(
        operation_id="download_output",
        responses=download_responses(OUTPUT_CONTENT_TYPES, "FILE_NOT_FOUND: no output (yet)"),
        parameters=DOWNLOAD_HEADERS, summary="Download the job's output file",
        description="The watermarked audio (its format's type), the emotion embedding (`application/x-npy`) "
        "or the synced video (`video/mp4`). With S3 storage the answer is a 302 to a short-lived presigned URL.",
    )
    def get(self, request: Request, pk):
        job = generics.get_object_or_404(tenant_jobs(request), pk=pk)
        if job.files_expired_at:
            raise ServiceError("FILE_EXPIRED", "The job's files were deleted by the retention policy.")
        if job.status != JobStatus.SUCCEEDED or not job.output_file:
            raise ServiceError(
                "FILE_NOT_FOUND", "This job has no output (yet).", {"status": job.status}
            )
        return output_response(job)


def output_response(job: Job):
    """Stream from local storage, or redirect to a short-lived presigned URL on S3."""
    storage = default_storage
    if getattr(storage, "querystring_auth", False):  # S3: never proxy the bytes through the web process
        url = storage.url(
            job.output_file,
            parameters={"ResponseContentDisposition": f'attachment; filename="{job.output_filename}"'},
        )
        return HttpResponseRedirect(url)
    if not storage.exists(job.output_file):
        raise ServiceError("FILE_NOT_FOUND", "The output file is missing from storage.")
    return FileResponse(
        storage.open(job.output_file, "rb"),
        as_attachment=True,
        filename=job.output_filename or job.output_file.rsplit("/", 1)[-1],
        content_type=job.output_content_type or "application/octet-stream",
    )


ROLE_PARAM = OpenApiParameter(
    "role", OpenApiTypes.STR, enum=[name for kind in JobKind for name in spec(kind).input_names[1:]],
    description="Which further input of a multi-input job (`music` of a beat-sync job); default: the primary "
    "one. A job without that input: 404 FILE_NOT_FOUND.",
)


class JobInputView(APIView):
    """The job's uploaded input, tenant-scoped like its output: the dashboard plays it next to the output."""

    rate_family = "read"

    @extend_schema(
        operation_id="download_input",
        responses=download_responses(INPUT_CONTENT_TYPES, "FILE_NOT_FOUND: no such input"),
        parameters=[ROLE_PARAM, *DOWNLOAD_HEADERS], summary="Download the job's input file",
        description="The uploaded file as it was stored, with a content type from its sniffed format. With S3 "
        "storage the answer is a 302 to a short-lived presigned URL.",
    )
    def get(self, request: Request, pk):
        job = generics.get_object_or_404(tenant_jobs(request), pk=pk)
        if job.files_expired_at:
            raise ServiceError("FILE_EXPIRED", "The job's files were deleted by the retention policy.")
        role = request.query_params.get("role") or ""
        if role and role not in (job.extra_inputs or {}):
            raise ServiceError("FILE_NOT_FOUND", f"This job has no input {role!r}.", {"role": role})
        meta = job.extra_inputs[role] if role else {**job.input, "file": job.input_file}
        if not meta.get("file"):
            raise ServiceError("FILE_NOT_FOUND", "This job has no stored input.")
        return input_response(meta)


def input_response(meta: dict[str, Any]):
    """Like ``output_response`` for an input: its original filename and a content type from its format."""
    name = meta["file"]
    filename = meta.get("filename") or name.rsplit("/", 1)[-1]
    fmt = str(meta.get("format") or "").lower()
    content_type = CONTENT_TYPES.get(fmt) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    storage = default_storage
    if getattr(storage, "querystring_auth", False):
        return HttpResponseRedirect(
            storage.url(name, parameters={"ResponseContentDisposition": f'attachment; filename="{filename}"'})
        )
    if not storage.exists(name):
        raise ServiceError("FILE_NOT_FOUND", "The input file is missing from storage.")
    return FileResponse(
        storage.open(name, "rb"), as_attachment=True, filename=filename, content_type=content_type
    )
