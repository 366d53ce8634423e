"""The outermost middleware: request id, log context, one access-log line and the HTTP metrics.

It runs first so that every other middleware's log lines carry the request id, and so that redirects made
by ``SecurityMiddleware`` and errors turned into responses further in are timed and counted too. The
tenant id is attached as soon as authentication has set ``request.tenant`` (API keys do): the log filter
reads it lazily, so lines written after authentication inside the view carry it as well.

Every middleware in ``settings.MIDDLEWARE`` is sync *and* async capable. Under ASGI one sync-only middleware
would make Django run everything inside it, the view included, on a thread that is held until the response
is ready, so an async view (``?wait``: ``jobs.api.waiting``) would pin a thread again. Ours are written for
both modes; ``async_capable`` adapts a sync one of another app that only edits the response;
``StaticFilesMiddleware`` is whitenoise's, both ways.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from whitenoise.middleware import WhiteNoiseFileResponse, WhiteNoiseMiddleware

from accounts import request_log
from audioseal_site import metrics
from billing import ratelimit
from core import asgi, log
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


class _BothModes:
    """Base of a middleware usable by the sync and the async handler: ``__call__`` answers in the mode of
    ``get_response`` (``_sync`` or ``_async``)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        return self._async(request) if self.async_mode else self._sync(request)

    def _sync(self, request: HttpRequest) -> HttpResponse:  # pragma: no cover - overridden
        raise NotImplementedError

    async def _async(self, request: HttpRequest) -> HttpResponse:  # pragma: no cover - overridden
        raise NotImplementedError


class RequestContextMiddleware(_BothModes):
    def _sync(self, request: HttpRequest) -> HttpResponse:
        request_id, started = self._begin(request)
        response = None
        with log.context(request_id=request_id), log.request_scope(request):
            entry = None
            try:
                response = self.get_response(request)
            finally:
                entry = self._end(request, response, started)
            if entry is not None:
                request_log.record(entry)
        response["X-Request-ID"] = request_id
        return response

    async def _async(self, request: HttpRequest) -> HttpResponse:
        request_id, started = self._begin(request)
        response = None
        with log.context(request_id=request_id), log.request_scope(request):
            entry = None
            try:
                response = await self.get_response(request)
            finally:
                entry = self._end(request, response, started)
            if entry is not None:
                await request_log.arecord(entry)  # the event loop's Redis client: no thread held
        response["X-Request-ID"] = request_id
        return response

    @staticmethod
    def _begin(request: HttpRequest) -> tuple[str, float]:
        request.request_id = request_id_for(request)
        request.started_at = time.time()
        return request.request_id, time.perf_counter()

    @staticmethod
    def _end(
        request: HttpRequest, response: HttpResponse | None, started: float
    ) -> request_log.RequestEntry | None:
        """Metrics and the access-log line; returns the request log's entry for the caller to record (in
        the caller's mode: sync or async)."""
        seconds = time.perf_counter() - started
        status = response.status_code if response is not None else 500
        route = route_of(request)
        entry = api_request_entry(request, response, status, route, seconds)
        metrics.observe_request(request.method or "", route, status, seconds)
        logger.log(
            logging.DEBUG if request.path in QUIET_PATHS else logging.INFO,
            "%s %s %s %.1fms", request.method, request.path, status, seconds * 1000,
            extra={
                "method": request.method, "path": request.path, "route": route, "status": status,
                "duration_ms": round(seconds * 1000, 2),
            },
        )
        return entry


def error_code_of(response: HttpResponse | None) -> str:
    """The ``error.code`` of an API error response: DRF's responses still hold their data; a JSON error
    written by ``ApiJsonErrorsMiddleware`` (or any ``JsonResponse``) is parsed, it is small."""
    if response is None:
        return "INTERNAL_ERROR"
    if response.status_code < 400:
        return ""
    data = getattr(response, "data", None)
    if data is None and not response.streaming and response.get("Content-Type", "").startswith("application/json"):
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
    error = data.get("error") if isinstance(data, dict) else None
    return str(error.get("code", ""))[:40] if isinstance(error, dict) else ""


def api_request_entry(
    request: HttpRequest, response: HttpResponse | None, status: int, route: str, seconds: float
) -> request_log.RequestEntry | None:
    """The tenant's request log line (``accounts.request_log``) for a request under ``/api/`` made with an
    API key, refused ones included (a revoked key, a scope, a quota, a bad upload); None for anything else.
    Requests with no recognisable key belong to no tenant and are only in the access log; the dashboard's
    own calls (session) are not logged."""
    api_key = getattr(request, "api_key", None)
    if api_key is None or not request.path.startswith("/api/"):
        return None
    return request_log.RequestEntry(
        tenant_id=str(api_key.tenant_id), api_key_id=str(api_key.pk), key_prefix=api_key.prefix,
        request_id=getattr(request, "request_id", ""), method=request.method or "", path=request.path[:300],
        route=route[:200], status=status, error_code=error_code_of(response), duration_ms=round(seconds * 1000, 2),
        at=getattr(request, "started_at", time.time()),
    )


class ProbeMiddleware(_BothModes):
    """Answer ``/healthz``, ``/readyz`` and ``/metrics`` before the rest of the stack.

    Orchestrator probes and Prometheus address pods by IP, so their Host header is never in
    ``ALLOWED_HOSTS`` (Django would answer 400), and they come over plain HTTP inside the cluster (no HTTPS
    redirect wanted). These views build no URLs from the Host header, and ``/metrics`` checks its own token,
    so skipping host validation, sessions and CSRF for them is safe, and cheaper per probe.
    """

    def __init__(self, get_response: Callable) -> None:
        from audioseal_site import health

        super().__init__(get_response)
        self.views = {"/healthz": health.healthz, "/readyz": health.readyz, "/metrics": metrics.metrics_view}

    def _probe(self, request: HttpRequest) -> Callable | None:
        view = self.views.get(request.path_info)
        if view is None or request.method not in ("GET", "HEAD"):
            return None
        request.probe_route = request.path_info
        return view

    def _sync(self, request: HttpRequest) -> HttpResponse:
        view = self._probe(request)
        return view(request) if view is not None else self.get_response(request)

    async def _async(self, request: HttpRequest) -> HttpResponse:
        view = self._probe(request)
        if view is None:
            return await self.get_response(request)
        return await sync_to_async(view)(request)  # the checks touch the database, Redis and storage


def async_capable(middleware_class: type) -> type:
    """``middleware_class`` (sync only) usable by the async handler too, for a middleware that does nothing
    before ``get_response`` and only edits the response it returns, without I/O: in async mode the response
    is awaited, then handed to a throwaway instance whose ``get_response`` returns it."""

    class Adapter(_BothModes):
        def __init__(self, get_response: Callable) -> None:
            super().__init__(get_response)
            self.inner = None if self.async_mode else middleware_class(get_response)

        def _sync(self, request: HttpRequest) -> HttpResponse:
            return self.inner(request)

        async def _async(self, request: HttpRequest) -> HttpResponse:
            response = await self.get_response(request)
            return middleware_class(lambda _request: response)(request)

    Adapter.__name__ = Adapter.__qualname__ = middleware_class.__name__
    Adapter.__doc__ = f"{middleware_class.__module__}.{middleware_class.__name__}, sync and async."
    return Adapter


# X-RateLimit-* on API responses (billing issue): billing's middleware, usable under ASGI.
RateLimitHeadersMiddleware = async_capable(ratelimit.RateLimitHeadersMiddleware)


class _StreamedWhiteNoiseFileResponse(asgi.FileResponse, WhiteNoiseFileResponse):
    pass


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """whitenoise's middleware, sync and async: a static file is looked up in memory (or, with autorefresh in
    development, found on disk) and streamed chunk by chunk; anything else goes on without a thread.

    Production serves what ``collectstatic`` put in ``STATIC_ROOT``; development (the quick start's gunicorn)
    serves the apps' files through the finders (``WHITENOISE_USE_FINDERS``), so a ``STATIC_ROOT`` that was never
    collected is skipped there without a warning.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable | None = None, *args, **kwargs) -> None:
        super().__init__(get_response, *args, **kwargs)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def add_files(self, root, prefix=None) -> None:
        if self.use_finders and not os.path.isdir(root):
            return
        super().add_files(root, prefix)

    def __call__(self, request: HttpRequest):
        return self._async(request) if self.async_mode else super().__call__(request)

    async def _async(self, request: HttpRequest) -> HttpResponse:
        if self.autorefresh and request.path_info.startswith(self.static_prefix):
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        elif self.autorefresh:
            static_file = None
        else:
            static_file = self.files.get(request.path_info)
        if static_file is None:
            return await self.get_response(request)
        response = await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        response.__class__ = _StreamedWhiteNoiseFileResponse  # same object, also async-iterable
        return response


API_ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                   405: "METHOD_NOT_ALLOWED", 413: "FILE_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}


class _ApiJsonErrors:
    """Under ``/api/``, every error is JSON in the API's one shape, in every profile.

    DRF renders errors of its views; what is left is Django's own pages: with ``DEBUG`` on, an unknown path
    or a crash becomes the technical HTML page (which shows settings and the environment), and views that are
    not DRF's (the schema and docs) can answer HTML. This middleware replaces any non-JSON error response of
    an API path with ``{"error": {...}}`` of the same status. Every error carries the request id
    (``error.request_id``; a 500 also in its details, as before), so support can find the request in the
    tenant's request log and the logged traceback (Django's request logger has already written it).
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
        request_id = getattr(request, "request_id", "")
        if status >= 500:
            body = error_body("INTERNAL_ERROR", "The server failed; it has been logged.",
                              {"request_id": request_id}, request_id=request_id)
        else:
            code = API_ERROR_CODES.get(status, f"HTTP_{status}")
            body = error_body(code, original.reason_phrase or "The request failed.", request_id=request_id)
        response = JsonResponse(body, status=status)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in original:
                response[header] = original[header]
        return response


class _ThirdPartyPagesCSP:
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


# Both only edit the response they are given: usable by the async handler through the adapter.
ApiJsonErrorsMiddleware = async_capable(_ApiJsonErrors)
ThirdPartyPagesCSPMiddleware = async_capable(_ThirdPartyPagesCSP)
