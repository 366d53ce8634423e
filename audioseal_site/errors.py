"""One error shape for the whole API: ``{"error": {"code", "message", "details"}}``.

Codes are stable, upper-case and documented; clients switch on them, never on messages. Every failure path
(authentication, validation, media probing, quota, rate limits) goes through ``ApiError`` or is translated by
``api_exception_handler`` so no DRF-default shape leaks out.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

# HTTP status per code. A code not listed is a 400.
STATUS_BY_CODE: dict[str, int] = {
    "UNAUTHENTICATED": 401,
    "INVALID_API_KEY": 401,
    "API_KEY_REVOKED": 401,
    "API_KEY_EXPIRED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "FILE_NOT_FOUND": 404,
    "FILE_EXPIRED": 410,
    "METHOD_NOT_ALLOWED": 405,
    "INVALID_STATE": 409,
    "IDEMPOTENCY_CONFLICT": 409,
    "INVALID_IDEMPOTENCY_KEY": 400,
    "INVALID_CALLBACK_URL": 400,
    "FILE_TOO_LARGE": 413,
    "INVALID_FORMAT": 415,
    "AUDIO_TOO_LONG": 422,
    "NO_AUDIO_TRACK": 422,
    "QUOTA_EXCEEDED": 402,
    "SUBSCRIPTION_INACTIVE": 402,
    "RATE_LIMITED": 429,
    "CONCURRENCY_LIMIT": 429,
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


class ApiError(exceptions.APIException):
    """An API failure with a stable code; the status comes from ``STATUS_BY_CODE`` unless given."""

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.error_code = code
        self.message = message
        self.details = details or {}
        self.status_code = status_code or STATUS_BY_CODE.get(code, status.HTTP_400_BAD_REQUEST)
        self.headers = headers or {}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def from_media_error(exc: Any) -> ApiError:
    """Translate a ``media_ops.errors.MediaError`` raised while probing an upload."""
    return ApiError(exc.code, exc.message, exc.details)


def _translate(exc: Exception) -> ApiError | None:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Http404 | exceptions.NotFound):
        return ApiError("NOT_FOUND", "Not found.")
    if isinstance(exc, exceptions.NotAuthenticated):
        return ApiError(
            "UNAUTHENTICATED", "Authentication required: send `Authorization: Bearer <api key>`."
        )
    if isinstance(exc, exceptions.AuthenticationFailed):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "INVALID_API_KEY"
        code = code if code in STATUS_BY_CODE else "INVALID_API_KEY"
        return ApiError(code, str(exc.detail))
    if isinstance(exc, exceptions.PermissionDenied):
        return ApiError("PERMISSION_DENIED", str(exc.detail))
    if isinstance(exc, exceptions.MethodNotAllowed):
        return ApiError("METHOD_NOT_ALLOWED", str(exc.detail))
    if isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        return ApiError("RATE_LIMITED", str(exc.detail), {"retry_after": wait}, headers={"Retry-After": str(wait)})
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return ApiError("UNSUPPORTED_MEDIA_TYPE", str(exc.detail), status_code=415)
    if isinstance(exc, exceptions.ValidationError):
        return ApiError("VALIDATION_ERROR", "The request is invalid.", {"fields": exc.detail})
    if isinstance(exc, exceptions.ParseError):
        return ApiError("PARSE_ERROR", str(exc.detail))
    if isinstance(exc, exceptions.APIException):
        return ApiError(str(exc.default_code).upper(), str(exc.detail), status_code=exc.status_code)
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    error = _translate(exc)
    if error is None:
        return exception_handler(exc, context)
    response = Response(error_body(error.error_code, error.message, error.details), status=error.status_code)
    for name, value in error.headers.items():
        response[name] = value
    if error.status_code == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response
