"""One domain error for the whole product, free of HTTP: ``ServiceError(code, message, details)``.

Services raise it; the edges translate it: the DRF exception handler (``audioseal_site.errors``) renders
``{"error": {"code", "message", "details"}}`` with the status ``http_status`` hints, the dashboard shows the
message next to the form, the admin shows it as a message. Codes are stable and upper-case; clients switch
on them, never on messages. The status lives here as a *hint* (a plain int) so a caller that never speaks
HTTP (a worker, a management command, the bench) can ignore it.
"""

from __future__ import annotations

from typing import Any

# HTTP status hint per code. A code not listed is a 400.
STATUS_BY_CODE: dict[str, int] = {
    "UNAUTHENTICATED": 401,
    "INVALID_API_KEY": 401,
    "API_KEY_REVOKED": 401,
    "API_KEY_EXPIRED": 401,
    "PERMISSION_DENIED": 403,
    "KEY_SCOPE": 403,
    "NOT_FOUND": 404,
    "FILE_NOT_FOUND": 404,
    "FILE_EXPIRED": 410,
    "METHOD_NOT_ALLOWED": 405,
    "INVALID_STATE": 409,
    "IDEMPOTENCY_CONFLICT": 409,
    "INVALID_IDEMPOTENCY_KEY": 400,
    "INVALID_CALLBACK_URL": 400,
    "NO_WEBHOOK_URL": 409,
    "FILE_TOO_LARGE": 413,
    "INVALID_FORMAT": 415,
    "AUDIO_TOO_LONG": 422,
    "NO_AUDIO_TRACK": 422,
    "VIDEO_TOO_LARGE": 422,
    "FRAME_RATE_TOO_HIGH": 422,
    "QUOTA_EXCEEDED": 402,
    "SUBSCRIPTION_INACTIVE": 402,
    "RATE_LIMITED": 429,
    "CONCURRENCY_LIMIT": 429,
    "TOO_MANY_WAITS": 429,
    "SERVICE_UNAVAILABLE": 503,
    # billing
    "TENANT_SUSPENDED": 403,
    "ALREADY_SUBSCRIBED": 409,
    "PLAN_NOT_PURCHASABLE": 400,
    "INVALID_SIGNATURE": 400,
    "INVALID_PAYLOAD": 400,
    "PAYMENT_PROVIDER_ERROR": 502,
    "BILLING_UNAVAILABLE": 503,
}


class ServiceError(Exception):
    """A refused operation with a stable ``code``, a human ``message`` and machine-readable ``details``.

    ``http_status`` is a hint for the HTTP edge (from ``STATUS_BY_CODE`` unless given); ``headers`` are
    hints too (e.g. ``Retry-After`` for a rate limit).
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        http_status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.http_status = http_status or STATUS_BY_CODE.get(code, 400)
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"ServiceError({self.code!r}, {self.message!r})"


def error_body(
    code: str, message: str, details: dict[str, Any] | None = None, request_id: str = ""
) -> dict[str, Any]:
    """The API's one error shape; ``request_id`` (the response's ``X-Request-ID``) when the edge knows it, so
    a customer can quote it and support finds the request in the log."""
    error: dict[str, Any] = {"code": code, "message": message, "details": details or {}}
    if request_id:
        error["request_id"] = request_id
    return {"error": error}


def from_media_error(exc: Any) -> ServiceError:
    """Translate a ``media_ops.errors.MediaError`` (duck-typed: ``code``, ``message``, ``details``)."""
    return ServiceError(exc.code, exc.message, dict(exc.details or {}))
