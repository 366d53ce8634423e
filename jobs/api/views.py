"""The jobs REST API. Views validate, call ``jobs.services`` and serialise; nothing else."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.storage import default_storage
from django.http import HttpResponseRedirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
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
from core.units import human_bytes
from jobs import attribution, idempotency, model_versions, services, sources
from jobs.api import schema, serializers, waiting
from jobs.kinds import report_battery, spec
from jobs.models import Job, JobKind, JobStatus
from media_ops.audio import CONTENT_TYPES
from media_ops.watermark import parse_message, random_message


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
    """Base for endpoints that create a job (each subclass documents its operation): from uploaded files, or
    (single-input kinds) from exactly one of `file`, `file_url` (fetched now, jobs.remote) or `upload_id` (a
    presigned direct upload).

    Multipart only: the schema offers exactly one request body type, so a generated client sends files the one
    way the server reads them (an urlencoded form cannot carry a file)."""

    parser_classes = [MultiPartParser]
    kind: str = ""
    request_serializer: type[serializers.serializers.Serializer]

    @property
    def rate_family(self) -> str:
        """Rate-limit family (billing.ratelimit): the kind's queue (watermark, emotion, media)."""
        return spec(self.kind).queue

    @property
    def key_scope_kind(self) -> str:
        """The job kind an API key must be allowed to create (``accounts.permissions.KeyScope``)."""
        return self.kind

    def params_from(self, data: dict[str, Any]) -> dict[str, Any]:
        return {}

    def prepare_for(self, request: Request, data: dict[str, Any]) -> Callable[[Job], None] | None:
        """A step to run inside the creating transaction (``Submission.prepare``); none by default."""
        return None

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
                f"The request is {human_bytes(length)}; "
                f"the limit is {human_bytes(settings.MAX_UPLOAD_BYTES)} per file.",
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
        tenant = tenant_for_request(request)
        standing = standing_for_request(request)  # read once per request (the throttle did)
        params = self.params_from(data)
        pin = model_versions.resolve(self.kind, data.get("model_version"))
        if pin:
            params[model_versions.PARAM] = pin
        fingerprint = idempotency.request_fingerprint(self.kind, request) if key else ""
        if key:  # a replay answers before any URL is fetched or upload read again
            existing = idempotency.replay(tenant, key, fingerprint)
            if existing is not None:
                return self._respond(request, existing, wait, None, replayed=True)
        slot = waiting.acquire(request, wait)  # before submitting: a refused wait creates no job
        source = None
        try:
            input_names = spec(self.kind).input_names
            extra: dict[str, Any] = {}
            if len(input_names) == 1:
                sources.check_one_source(data)
                source = sources.resolve(
                    tenant, max_bytes=standing.limits.max_file_bytes, file=data.get("file"),
                    file_url=(data.get("file_url") or "").strip(), upload_id=data.get("upload_id"),
                )
                files = {input_names[0]: source.upload}
                if source.stored_name:
                    extra = {"stored_inputs": {input_names[0]: source.stored_name},
                             "direct_upload_id": source.direct_upload_id}
            else:
                files = {name: data[name] for name in input_names if data.get(name) is not None}  # optional: absent
            job, replayed = idempotency.submit(
                services.Submission(
                    tenant=tenant,
                    kind=self.kind,
                    files=files,
                    params=params,
                    api_key=request.auth if request.auth is not None else None,
                    user=request.user,
                    idempotency_key=key,
                    request_fingerprint=fingerprint,
                    callback_url=(data.get("callback_url") or "").strip(),
                    standing=standing,
                    prepare=self.prepare_for(request, data),
                    **extra,
                )
            )
        except BaseException as exc:
            if slot is not None:
                slot.release()
            if source is not None and isinstance(exc, ServiceError):
                source.relabel(exc)
            raise
        finally:
            if source is not None:
                source.close()
        return self._respond(request, job, wait, slot, replayed=replayed)

    def _respond(self, request: Request, job: Job, wait: float, slot, *, replayed: bool) -> Response:
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
        if attribution.allocates(data):
            message = attribution.AUTO  # the registry's next free message replaces it inside the submission
        elif message:
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

    def prepare_for(self, request: Request, data: dict[str, Any]) -> Callable[[Job], None] | None:
        return attribution.registration_step(request.user, data)

    @schema.job_creation(
        JobKind.WATERMARK_EMBED, serializers.WatermarkEmbedRequest, "Embed a 16-bit watermark",
        "Hides an inaudible 16-bit message (AudioSeal) in speech or music. The output is the watermarked "
        "audio in the input's format (or `output_format`); the result has the message, its bits and the SNR.",
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class WatermarkDetectView(JobCreateView):
    kind = JobKind.WATERMARK_DETECT
    request_serializer = serializers.WatermarkDetectRequest

    @schema.job_creation(
        JobKind.WATERMARK_DETECT, serializers.WatermarkDetectRequest, "Detect a watermark and decode its message",
        "Finds where in the audio a watermark is (`segments`, each decoded from its own samples, with the "
        "offset, polarity and speed it was read at) and the message of the strongest region. No output file.",
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class WatermarkReportView(JobCreateView):
    """A robustness report: the watermarked file through the attack battery, each copy read back by detection.
    Billed as ``duration × attacks × WATERMARK_REPORT_ATTACK_RATE`` seconds (see the attacks endpoint)."""

    kind = JobKind.WATERMARK_REPORT
    request_serializer = serializers.WatermarkReportRequest

    def params_from(self, data: dict[str, Any]) -> dict[str, Any]:
        message = data.get("message") or ""
        if not message:
            return {}  # the worker reads the expected message from the file as uploaded
        try:
            if message != message.strip():  # the schema's pattern: exactly 4 hex digits
                raise ValueError("message must be exactly 4 hexadecimal digits (16 bits), e.g. 1A2B")
            parse_message(message)
        except ValueError as exc:
            raise ServiceError("INVALID_MESSAGE", str(exc), {"message": message}) from exc
        return {"message": message.upper()}

    @schema.job_creation(
        JobKind.WATERMARK_REPORT, serializers.WatermarkReportRequest, "Robustness report: attack a watermarked file",
        "Runs the versioned attack battery (`GET /api/v1/watermark/report/attacks`) on the file and reports, per "
        "attack, detection, probability, whether the message survived and the bit accuracy; with `original`, the "
        "watermark's quality. Billed as duration × attacks × `WATERMARK_REPORT_ATTACK_RATE` seconds; a file longer "
        "than the battery's `max_duration_seconds` is 422 AUDIO_TOO_LONG. A file without a detectable watermark "
        "(and no `message`) fails with `NO_WATERMARK`, unbilled. No output file.",
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class WatermarkAttacksView(APIView):
    """The attack battery of the robustness report: a read of the code's versioned list, the same for all."""

    rate_family = "read"

    @extend_schema(
        operation_id="list_report_attacks",
        responses={200: serializers.AttackBatterySerializer, **schema.errors()},
        summary="The robustness report's attack battery",
        description="The battery a `watermark/report` job runs now: its version (named in every report's "
        "`battery.version`), each attack with its settings, the longest file a report accepts and its price.",
    )
    def get(self, request: Request) -> Response:
        return Response(serializers.AttackBatterySerializer(report_battery()).data)


class EmotionAnalyzeView(JobCreateView):
    kind = JobKind.EMOTION
    request_serializer = serializers.EmotionAnalyzeRequest

    def params_from(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"granularity": data["granularity"], "extract_embedding": data["extract_embedding"]}

    @schema.job_creation(
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

    @schema.job_creation(
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
            if value is not None:  # `?kind=` is not "any kind": the schema's enum has no empty value
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
        responses={200: serializers.job_schema(many=True), **schema.errors(_400="VALIDATION_ERROR, INVALID_CURSOR")},
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
        responses={200: serializers.job_schema(), **schema.errors(404, _400="VALIDATION_ERROR (`wait`)")},
        parameters=[schema.WAIT_PARAM], summary="Read a job",
        description="The job, its progress and, once it has succeeded, its typed `result` (by `kind`).",
    )
    def get(self, request: Request, pk) -> Response:
        job = generics.get_object_or_404(tenant_jobs(request), pk=pk)
        return waiting.respond(request, job, parse_wait(request), serialize_for(request))


class JobDeliveriesView(APIView):
    rate_family = "read"

    @extend_schema(
        operation_id="list_deliveries",
        responses={200: serializers.WebhookDeliverySerializer(many=True), **schema.errors(404)},
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
        responses={200: serializers.job_schema(), **schema.errors(404, _409="INVALID_STATE: the job is already final")},
        summary="Cancel a queued or running job",
    )
    def post(self, request: Request, pk) -> Response:
        job = generics.get_object_or_404(tenant_jobs(request), pk=pk)
        services.cancel(job)
        return Response(serializers.JobSerializer(job, context={"request": request}).data)


class JobOutputView(APIView):
    rate_family = "read"

    @extend_schema(
        operation_id="download_output",
        responses=schema.download_responses(schema.OUTPUT_CONTENT_TYPES, "FILE_NOT_FOUND: no output (yet)"),
        parameters=schema.DOWNLOAD_HEADERS, summary="Download the job's output file",
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


class JobInputView(APIView):
    """The job's uploaded input, tenant-scoped like its output: the dashboard plays it next to the output."""

    rate_family = "read"

    @extend_schema(
        operation_id="download_input",
        responses=schema.download_responses(schema.INPUT_CONTENT_TYPES, "FILE_NOT_FOUND: no such input"),
        parameters=[schema.ROLE_PARAM, *schema.DOWNLOAD_HEADERS], summary="Download the job's input file",
        description="The uploaded file as it was stored, with a content type from its sniffed format. With S3 "
        "storage the answer is a 302 to a short-lived presigned URL.",
    )
    def get(self, request: Request, pk):
        job = generics.get_object_or_404(tenant_jobs(request), pk=pk)
        if job.files_expired_at:
            raise ServiceError("FILE_EXPIRED", "The job's files were deleted by the retention policy.")
        role = request.query_params.get("role")  # absent: the primary input; present: one of its roles
        if role is not None and role not in (job.extra_inputs or {}):
            raise ServiceError("FILE_NOT_FOUND", f"This job has no input {role!r}.", {"role": role})
        meta = job.extra_inputs[role] if role is not None else {**job.input, "file": job.input_file}
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
