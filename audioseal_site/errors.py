"""The HTTP edge of errors: every failure under ``/api/`` becomes ``{"error": {"code", "message", "details"}}``.

Services raise ``core.errors.ServiceError`` (no HTTP in it); DRF raises its own exceptions for
authentication, parsing and validation. ``api_exception_handler`` (DRF's ``EXCEPTION_HANDLER``) maps both to
the one error shape with the status the code hints, so no DRF-default shape leaks out.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core.errors import STATUS_BY_CODE, ServiceError, error_body


def _translate(exc: Exception) -> ServiceError | None:
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, Http404 | exceptions.NotFound):
        return ServiceError("NOT_FOUND", "Not found.")
    if isinstance(exc, exceptions.NotAuthenticated):
        return ServiceError(
            "UNAUTHENTICATED", "Authentication required: send `Authorization: Bearer <api key>`."
        )
    if isinstance(exc, exceptions.AuthenticationFailed):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "INVALID_API_KEY"
        code = code if code in STATUS_BY_CODE else "INVALID_API_KEY"
        return ServiceError(code, str(exc.detail))
    if isinstance(exc, exceptions.PermissionDenied):
        return ServiceError("PERMISSION_DENIED", str(exc.detail))
    if isinstance(exc, exceptions.MethodNotAllowed):
        return ServiceError("METHOD_NOT_ALLOWED", str(exc.detail))
    if isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        return ServiceError(
            "RATE_LIMITED", str(exc.detail), {"retry_after": wait}, headers={"Retry-After": str(wait)}
        )
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return ServiceError("UNSUPPORTED_MEDIA_TYPE", str(exc.detail), http_status=415)
    if isinstance(exc, exceptions.ValidationError):
        return ServiceError("VALIDATION_ERROR", "The request is invalid.", {"fields": exc.detail})
    if isinstance(exc, exceptions.ParseError):
        return ServiceError("PARSE_ERROR", str(exc.detail))
    if isinstance(exc, exceptions.APIException):
        return ServiceError(str(exc.default_code).upper(), str(exc.detail), http_status=exc.status_code)
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    error = _translate(exc)
    if error is None:
        return exception_handler(exc, context)
    # The request id in the body too (it is in X-Request-ID): what a customer pastes into a support ticket.
    request = context.get("request")
    request_id = getattr(getattr(request, "_request", request), "request_id", "") if request is not None else ""
    body = error_body(error.code, error.message, error.details, request_id=request_id)
    response = Response(body, status=error.http_status)
    for name, value in error.headers.items():
        response[name] = value
    if error.http_status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response
