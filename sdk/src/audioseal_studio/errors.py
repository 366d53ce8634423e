"""What the SDK raises. Every API error carries the server's stable ``code`` (switch on it, never on the
message), its human ``message``, the HTTP ``status``, the ``request_id`` to quote to support (the server's
``X-Request-ID``), and ``details``. The class only groups codes by status, so ``except RateLimitError``
catches ``RATE_LIMITED``, ``CONCURRENCY_LIMIT`` and ``TOO_MANY_WAITS`` alike.

    StudioError
    ├── APIConnectionError          the server could not be reached (after the retries)
    │   └── APITimeoutError
    ├── APIError                    the server answered with an error: code, message, status, request_id
    │   ├── BadRequestError 400     ├── ConflictError 409        ├── RateLimitError 429 (retry_after)
    │   ├── AuthenticationError 401 ├── GoneError 410            └── ServerError 5xx
    │   ├── PaymentRequiredError 402├── PayloadTooLargeError 413
    │   ├── PermissionDeniedError 403├── UnsupportedMediaError 415
    │   └── NotFoundError 404       └── UnprocessableError 422
    ├── JobFailedError              a job ended failed or canceled (its error code and message)
    └── WaitTimeoutError            a job was not final when the client's deadline passed
"""

from __future__ import annotations

import email.utils
import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from audioseal_studio.models import Job


class StudioError(Exception):
    """Base of everything the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class APIConnectionError(StudioError):
    """The request did not get an answer (refused connection, reset, DNS), even after the retries."""


class APITimeoutError(APIConnectionError):
    """The server did not answer within the client's timeout."""


class APIError(StudioError):
    """The server answered with an error in the API's one shape ``{"error": {"code", "message", "details"}}``."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.request_id = request_id
        self.details = details or {}
        self.headers = headers or httpx.Headers()

    def __str__(self) -> str:
        suffix = f" (request {self.request_id})" if self.request_id else ""
        return f"{self.code} ({self.status}): {self.message}{suffix}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, message={self.message!r})"


class BadRequestError(APIError):
    """400: VALIDATION_ERROR, INVALID_MESSAGE, EMPTY_FILE, INVALID_CURSOR, INVALID_CALLBACK_URL…"""


class AuthenticationError(APIError):
    """401: UNAUTHENTICATED, INVALID_API_KEY, API_KEY_REVOKED, API_KEY_EXPIRED."""


class PaymentRequiredError(APIError):
    """402: QUOTA_EXCEEDED, SUBSCRIPTION_INACTIVE."""


class PermissionDeniedError(APIError):
    """403: TENANT_SUSPENDED, PERMISSION_DENIED."""


class NotFoundError(APIError):
    """404: NOT_FOUND, FILE_NOT_FOUND."""


class ConflictError(APIError):
    """409: INVALID_STATE, IDEMPOTENCY_CONFLICT."""


class GoneError(APIError):
    """410: FILE_EXPIRED (the retention policy deleted the job's files)."""


class PayloadTooLargeError(APIError):
    """413: FILE_TOO_LARGE."""


class UnsupportedMediaError(APIError):
    """415: INVALID_FORMAT (the bytes are not a format the server decodes)."""


class UnprocessableError(APIError):
    """422: AUDIO_TOO_LONG, NO_AUDIO_TRACK, VIDEO_TOO_LARGE, FRAME_RATE_TOO_HIGH."""


class RateLimitError(APIError):
    """429: RATE_LIMITED, CONCURRENCY_LIMIT, TOO_MANY_WAITS. ``retry_after``: seconds the server asked for."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


class ServerError(APIError):
    """5xx: the server failed (quote ``request_id``)."""


class JobFailedError(StudioError):
    """A job ended without succeeding: ``code`` and ``message`` are the job's error (e.g. INVALID_FORMAT)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.code = job.error.code if job.error else job.status.upper()
        detail = job.error.message if job.error else f"the job was {job.status}"
        super().__init__(f"job {job.id} {job.status}: {self.code}: {detail}")


class WaitTimeoutError(StudioError):
    """The job was still queued or running when the client's deadline passed; ``job`` is its last reading."""

    def __init__(self, job: Job, timeout: float) -> None:
        self.job = job
        super().__init__(f"job {job.id} still {job.status} after {timeout:g} s")


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaError,
    422: UnprocessableError,
    429: RateLimitError,
}


def error_from_response(response: httpx.Response) -> APIError:
    """The exception for an error response. Tolerates bodies that are not the API's shape (a proxy's HTML
    page, an empty 502): the code is then ``HTTP_<status>`` and the message the start of the body."""
    status = response.status_code
    code, message, details = f"HTTP_{status}", response.reason_phrase or "error", {}
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        if text:
            message = text[:300]
    else:
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code = str(error.get("code") or code)
            message = str(error.get("message") or message)
            details = error.get("details") if isinstance(error.get("details"), dict) else {}
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    return cls(
        code, message, status=status, request_id=response.headers.get("X-Request-ID") or details.get("request_id"),
        details=details, headers=response.headers,
    )


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds (``"2"``) or an HTTP date (RFC 9110); None when absent or
    unreadable. A date in the past is 0."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
