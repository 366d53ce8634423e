"""Django's error views for URLs no API view handled: JSON in the API's one error shape under ``/api/``.

DRF turns exceptions *inside* API views into ``{"error": {...}}``, but a path that matches no URL pattern
(``/api/v1/jobs/not-a-uuid``), a bad Host header or an unhandled crash is answered by Django itself, with an
HTML page. Clients of the API (and the OpenAPI schema) expect JSON, so these handlers answer JSON for API
paths and keep Django's pages for the dashboard and the admin. Found by the schemathesis contract test.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from core.errors import error_body


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("BAD_REQUEST", "The request could not be understood."), status=400)
    return defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("NOT_FOUND", "Not found."), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        request_id = getattr(request, "request_id", "")
        return JsonResponse(
            error_body("INTERNAL_ERROR", "The server failed; it has been logged.", {"request_id": request_id}),
            status=500,
        )
    return defaults.server_error(request)
