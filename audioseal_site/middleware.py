"""The outermost middleware: request id, log context, one access-log line and the HTTP metrics.

It runs first so that every other middleware's log lines carry the request id, and so that redirects made
by ``SecurityMiddleware`` and errors turned into responses further in are timed and counted too. The
tenant id is attached as soon as authentication has set ``request.tenant`` (API keys do): the log filter
reads it lazily, so lines written after authentication inside the view carry it as well.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from audioseal_site import metrics
from core import log
from core.errors import error_body

logger = logging.getLogger("audioseal.request")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
# Probes and scrapes are logged at DEBUG: at INFO they would drown the access log.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def request_id_for(request: HttpRequest) -> str:
    """The caller's ``X-Request-ID`` when it is a sane token (so ids follow a request across proxies),
    else a fresh one."""
    given = request.headers.get("X-Request-ID", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def route_of(request: HttpRequest) -> str:
    """The URL pattern, not the path: label values must not grow with job ids. Requests that hold on
    purpose (``?wait=N``) get a ``?wait`` suffix so latency alerts can leave them out."""
    if getattr(request, "probe_route", None):
        return request.probe_route
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "<unmatched>"
    route = "/" + str(match.route or match.view_name or "")
    if request.GET.get("wait") not in (None, "", "0"):
        route += "?wait"
    return route


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request)
        request.request_id = request_id
        started = time.perf_counter()
        status = 500
        with log.context(request_id=request_id), log.request_scope(request):
            try:
                response = self.get_response(request)
                status = response.status_code
            finally:
                seconds = time.perf_counter() - started
                route = route_of(request)
                metrics.observe_request(request.method or "", route, status, seconds)
                logger.log(
                    logging.DEBUG if request.path in QUIET_PATHS else logging.INFO,
                    "%s %s %s %.1fms", request.method, request.path, status, seconds * 1000,
                    extra={
                        "method": request.method, "path": request.path, "route": route, "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                    },
                )
        response["X-Request-ID"] = request_id
        return response


class ProbeMiddleware:
    """Answer ``/healthz``, ``/readyz`` and ``/metrics`` before the rest of the stack.

    Orchestrator probes and Prometheus address pods by IP, so their Host header is never in
    ``ALLOWED_HOSTS`` (Django would answer 400), and they come over plain HTTP inside the cluster (no HTTPS
    redirect wanted). These views build no URLs from the Host header, and ``/metrics`` checks its own token,
    so skipping host validation, sessions and CSRF for them is safe, and cheaper per probe.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from audioseal_site import health

        self.get_response = get_response
        self.views = {"/healthz": health.healthz, "/readyz": health.readyz, "/metrics": metrics.metrics_view}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self.views.get(request.path_info)
        if view is None or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        request.probe_route = request.path_info
        return view(request)


API_ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                   405: "METHOD_NOT_ALLOWED", 413: "FILE_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}


class ApiJsonErrorsMiddleware:
    """Under ``/api/``, every error is JSON in the API's one shape, in every profile.

    DRF renders errors of its views; what is left is Django's own pages: with ``DEBUG`` on, an unknown path
    or a crash becomes the technical HTML page (which shows settings and the environment), and views that are
    not DRF's (the schema and docs) can answer HTML. This middleware replaces any non-JSON error response of
    an API path with ``{"error": {...}}`` of the same status; a 500 carries the request id, so support can
    find the logged traceback (Django's request logger has already written it).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return self._json(request, response)
        return response

    @staticmethod
    def _json(request: HttpRequest, original: HttpResponse) -> HttpResponse:
        status = original.status_code
        if status >= 500:
            body = error_body("INTERNAL_ERROR", "The server failed; it has been logged.",
                              {"request_id": getattr(request, "request_id", "")})
        else:
            code = API_ERROR_CODES.get(status, f"HTTP_{status}")
            body = error_body(code, original.reason_phrase or "The request failed.")
        response = JsonResponse(body, status=status)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in original:
                response[header] = original[header]
        return response


class ThirdPartyPagesCSPMiddleware:
    """The one relaxation of the Content-Security-Policy: the RQ dashboard (django-rq's staff pages, under
    ``<ADMIN_URL>django-rq/`` and ``<ADMIN_URL>django_rq/``) writes inline ``<script>``/``<style>`` we do not
    control, so its pages, and only they, allow inline scripts and styles (staff-only pages behind the admin
    login). It sits after ``CSPMiddleware`` so it marks the response before that middleware writes the
    header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith((f"/{settings.ADMIN_URL}django-rq/", f"/{settings.ADMIN_URL}django_rq/")):
            response._csp_update = {"script-src": ["'unsafe-inline'"], "style-src": ["'unsafe-inline'"]}
        return response
