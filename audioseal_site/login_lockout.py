"""Sign-in lockout for the admin and the dashboard, with django-axes: per username and per client IP.

``LockoutBackend`` (axes' ``AxesStandaloneBackend``) comes first in ``AUTHENTICATION_BACKENDS``: while a
username or an IP is locked it refuses, so not even a correct password gets in; otherwise the next backend
checks the password. Failures are recorded by axes' database handler from Django's ``user_login_failed``
signal (``axes.AccessAttempt`` rows in PostgreSQL, visible and deletable by staff in the admin), and
``AxesMiddleware`` turns a locked-out sign-in into ``lockout_response``: a page, 429 with ``Retry-After``,
that says the sign-in is locked and when it unlocks, instead of "wrong password".

The settings (``audioseal_site/settings.py``) keep their names: ``LOGIN_FAILURES_PER_USER`` and
``LOGIN_FAILURES_PER_IP`` failures within ``LOGIN_FAILURE_WINDOW_SECONDS`` (axes' cool-off) lock. Axes
compares one failure count with one limit; ``LockoutHandler.get_failures`` gives it the count of whichever
of the username and the IP is closest to (or past) its own limit, on the per-user scale, so each keeps its
limit. An attempt is forgotten a window after the last failure of its (username, IP, user agent) row, so a
lock lasts one window after the failure that set it; attempts refused while locked are not recorded, so
hammering does not push the unlock time back. A successful sign-in clears the username's failures.

Only password sign-ins count: API keys (``accounts.authentication``) never call ``authenticate()``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin as django_admin
from django.contrib.auth.backends import ModelBackend
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone


def client_ip(request: HttpRequest | None) -> str:
    """The client's address (``AXES_CLIENT_IP_CALLABLE``): behind ``TRUSTED_PROXY_COUNT`` proxies, the entry
    they appended to ``X-Forwarded-For`` (entries further left are client-controlled); else ``REMOTE_ADDR``."""
    if request is None:
        return "unknown"
    proxies = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)
    forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
    if proxies and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "unknown")


def username(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    """The username an attempt counts against (``AXES_USERNAME_CALLABLE``): trimmed and lower-cased, so
    ``Ops`` and ``ops `` share one counter. (The dashboard's form has already turned an email into it.)"""
    value = (credentials or {}).get("username")
    if value is None and request is not None:
        value = request.POST.get("username")
    value = str(value or "").strip().lower()
    return value or None


def failure_limit(request: HttpRequest | None, credentials: dict[str, Any] | None) -> int:
    """``AXES_FAILURE_LIMIT``: the per-user limit (the IP's is mapped onto it by ``LockoutHandler``)."""
    return int(settings.LOGIN_FAILURES_PER_USER)


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """``AXES_COOLOFF_TIME``: how long failures count, and so how long a lock lasts."""
    return timedelta(seconds=int(settings.LOGIN_FAILURE_WINDOW_SECONDS))


class LockoutHandler(AxesDatabaseHandler):
    """axes' database handler with a limit per lockout parameter (username, IP) instead of one for all."""

    def _groups(self, request: HttpRequest, credentials: dict[str, Any] | None) -> list[tuple[str, QuerySet, int]]:
        recent = AccessAttempt.objects.filter(attempt_time__gte=get_cool_off_threshold(request))
        groups = [("ip", recent.filter(ip_address=request.axes_ip_address), int(settings.LOGIN_FAILURES_PER_IP))]
        name = get_client_username(request, credentials)
        if name:
            groups.append(("user", recent.filter(username=name), int(settings.LOGIN_FAILURES_PER_USER)))
        return groups

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        """Failures on the per-user scale: reaches ``failure_limit`` exactly when the username or the IP
        reaches its own limit."""
        worst = max(
            sum(queryset.values_list("failures_since_start", flat=True)) - limit
            for _, queryset, limit in self._groups(request, credentials)
        )
        return max(0, worst + failure_limit(request, credentials))

    def reset_user_attempts(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        """After a successful sign-in: forget the username's failures (the IP's from other usernames stay)."""
        name = get_client_username(request, credentials)
        if not name:
            return 0
        count, _ = AccessAttempt.objects.filter(username=name).delete()
        return count

    def lock(self, request: HttpRequest, credentials: dict[str, Any] | None) -> tuple[list[str], datetime | None]:
        """What is locked (``"user"``, ``"ip"``) and when the last of those locks ends.

        A group is locked while its recent failures reach its limit; its lock ends when enough of its rows
        (newest first) have aged out of the window for the rest to fall under the limit."""
        window = cool_off(request)
        locked, ends = [], None
        for kind, queryset, limit in self._groups(request, credentials):
            total = 0
            for attempt_time, failures in queryset.order_by("-attempt_time").values_list(
                "attempt_time", "failures_since_start"
            ):
                total += failures
                if total >= limit:
                    locked.append(kind)
                    end = attempt_time + window
                    ends = end if ends is None else max(ends, end)
                    break
        return locked, ends


class LockoutBackend(AxesStandaloneBackend):
    """axes' lockout check, first of ``AUTHENTICATION_BACKENDS``; authenticates nobody itself."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> None:
        if request is None:
            # No request, no sign-in to lock (the test client's login(), scripts): axes would raise instead.
            return None
        return super().authenticate(request, username, password, **kwargs)

    def get_user(self, user_id: Any) -> Any:
        """Sessions made with ``login(user)`` without a backend name record the first backend: this one.
        Resolve them like ModelBackend does, so such sessions (``force_login`` in tests) stay valid."""
        return ModelBackend().get_user(user_id)


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: the sign-in page's lockout answer (the admin's look on the admin login)."""
    # axes' async middleware passes its arguments shifted: the request carries the credentials either way.
    credentials = getattr(request, "axes_credentials", None) or (credentials if isinstance(credentials, dict) else None)
    handler = AxesProxyHandler.get_implementation()
    locked, ends = handler.lock(request, credentials) if isinstance(handler, LockoutHandler) else ([], None)
    now = timezone.now()
    ends = ends or now + cool_off(request)
    seconds = max(1, math.ceil((ends - now).total_seconds()))
    admin = request.path.startswith(reverse("admin:index"))
    context = {
        "unlocks_at": ends,
        "minutes": max(1, math.ceil(seconds / 60)),
        "by_user": "user" in locked or not locked,
        "by_ip": "ip" in locked,
        "login_url": reverse("admin:login") if admin else reverse("dashboard:login"),
        "title": "Sign-in locked",
    }
    if admin:
        context.update(django_admin.site.each_context(request))
    template = "admin/locked_out.html" if admin else "registration/locked_out.html"
    response = render(request, template, context, status=settings.AXES_HTTP_RESPONSE_CODE)
    response["Retry-After"] = str(seconds)
    return response
