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

from django.http import HttpRequest, HttpResponse

from audioseal_site import metrics
from core import log

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
