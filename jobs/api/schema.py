"""The OpenAPI documentation of the jobs API's operations: parameters, documented errors, examples and the
download responses, used by ``jobs.api.views`` in its ``extend_schema`` decorators.

Kept apart from the views so they stay "validate, call services, serialise". Every limit written here is the
one the view enforces (``wait``: ``parse_wait``; ``Idempotency-Key``: ``jobs.idempotency``; content types:
``media_ops.audio.CONTENT_TYPES`` and the handlers), so the schema a client is generated from is the server.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema

from jobs import idempotency
from jobs.api import serializers
from jobs.kinds import spec
from jobs.models import JobKind
from media_ops.audio import CONTENT_TYPES, OUTPUT_FORMATS

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
    _422="AUDIO_TOO_LONG, NO_AUDIO_TRACK, VIDEO_TOO_LARGE, FRAME_RATE_TOO_HIGH, UNKNOWN_MODEL_VERSION",
)
# A single-input kind also takes its input as `file_url` or `upload_id` (jobs.sources), with their own errors.
SOURCE_CREATE_ERRORS = errors(
    _400="VALIDATION_ERROR (a field, or not exactly one of `file`, `file_url`, `upload_id`), EMPTY_FILE, "
    "INVALID_CALLBACK_URL, INVALID_IDEMPOTENCY_KEY, URL_NOT_ALLOWED (`file_url` not https or not public)",
    _402="QUOTA_EXCEEDED (the period's minutes are used up), SUBSCRIPTION_INACTIVE",
    _404="UPLOAD_NOT_FOUND: no such direct upload for this tenant",
    _409="IDEMPOTENCY_CONFLICT: the key was used for another request; UPLOAD_ALREADY_USED, UPLOAD_INCOMPLETE",
    _410="UPLOAD_EXPIRED: the direct upload expired",
    _413="FILE_TOO_LARGE: over the plan's size limit",
    _415="INVALID_FORMAT: not a decodable file of an accepted type",
    _422="AUDIO_TOO_LONG, NO_AUDIO_TRACK, UNKNOWN_MODEL_VERSION, URL_FETCH_FAILED (`file_url` did not answer "
    "a file in time)",
)


def job_created(kind: str, example: dict[str, Any]) -> dict[int, OpenApiResponse]:
    """The 202 of a job-creating operation: the new (or replayed) job of ``kind``, with an example."""
    return {
        202: OpenApiResponse(
            serializers.JOB_BY_KIND[kind],
            description="Accepted: the job is queued (or final, when `wait` was long enough).",
            examples=[OpenApiExample(f"A new {kind} job", value=example, status_codes=["202"], response_only=True)],
        ),
        **(SOURCE_CREATE_ERRORS if len(spec(kind).input_names) == 1 else CREATE_ERRORS),
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
    JobKind.WATERMARK_REPORT: _queued_example(
        JobKind.WATERMARK_REPORT, {"message": "1A2B"},
        {**_SPEECH, "filename": "speech_watermarked.wav",
         "original": {**_SPEECH, "filename": "speech.wav"}},
    ),
}


def job_creation(kind: str, request: type, summary: str, description: str):
    """``extend_schema`` of a job-creating operation: multipart only, its own description and example."""
    if len(spec(kind).input_names) == 1:
        description += (
            "\n\nThe input is exactly one of: `file` (uploaded in this request), `file_url` (an https URL the "
            "server fetches now) or `upload_id` (a presigned direct upload, `POST /api/v1/uploads`)."
        )
    return extend_schema(
        operation_id=spec(kind).url_name.replace("-", "_"),
        request=request,  # its content types are the view's parsers': multipart only
        responses=job_created(kind, EXAMPLES[kind]),
        parameters=[WAIT_PARAM, IDEMPOTENCY_PARAM, REPLAYED_HEADER],
        summary=summary,
        description=description
        + "\n\nUploads are `multipart/form-data` only. The job is queued and answered at once with 202; follow it "
        "with `GET /api/v1/jobs/{id}` (or `?wait=N`), or a webhook at `callback_url`.",
    )


ROLE_PARAM = OpenApiParameter(
    "role", OpenApiTypes.STR, enum=[name for kind in JobKind for name in spec(kind).input_names[1:]],
    description="Which further input of a multi-input job (`music` of a beat-sync job, `original` of a "
    "robustness report sent with one); default: the primary one. A job without that input: 404 FILE_NOT_FOUND.",
)


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


# --- batches and direct uploads ---------------------------------------------------------------------------------

BATCH_CREATE_ERRORS = errors(
    _400="VALIDATION_ERROR (a field, `item_params`, no item), BATCH_TOO_LARGE (over `BATCH_MAX_ITEMS`), "
    "INVALID_MESSAGE, INVALID_CALLBACK_URL, INVALID_IDEMPOTENCY_KEY",
    _402="QUOTA_EXCEEDED, SUBSCRIPTION_INACTIVE (for the whole batch; an item over the quota is refused alone)",
    _409="IDEMPOTENCY_CONFLICT: the key was used for another request",
    _413="FILE_TOO_LARGE: the request is over the batch's size limit",
    _422="BATCH_REJECTED: every item was refused (nothing created); UNKNOWN_MODEL_VERSION",
)


def batch_creation():
    """``extend_schema`` of ``POST /api/v1/batches``: multipart only, like a job's creation."""
    return extend_schema(
        operation_id="create_batch",
        request=serializers.BatchCreateRequest,
        responses={
            202: OpenApiResponse(serializers.BatchSerializer, description="Accepted: one job per accepted item; "
                                 "refused items are listed with their error."),
            **BATCH_CREATE_ERRORS,
        },
        parameters=[IDEMPOTENCY_PARAM, REPLAYED_HEADER],
        summary="Submit many inputs as one batch (one job per item)",
        description="Items are every `file` part, then every `file_url`, then every `upload_id`, in that order "
        f"(at most `BATCH_MAX_ITEMS`, {settings.BATCH_MAX_ITEMS} by default). Each item is a job of `kind`, "
        "checked and charged alone: an item that is refused (a bad file, a URL that failed, the quota) is listed "
        "in `items` with its error and the others run. The batch's `callback_url` (else the tenant's webhook URL, "
        "if its event filter wants `batch.completed`) receives one `batch.completed` event when every item job "
        "is final.\n\nUploads are `multipart/form-data` only.",
    )
