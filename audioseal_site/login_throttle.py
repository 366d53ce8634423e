"""Throttle password sign-ins (admin and dashboard) per username and per client IP, counted in Redis.

Django's ``authenticate()`` asks each backend in ``AUTHENTICATION_BACKENDS`` in turn and stops at the first
that raises ``PermissionDenied``. ``LoginThrottleBackend`` comes first: while a username or an IP has too
many recent failures it raises, so not even a correct password gets in; otherwise it returns ``None`` and
the next backend checks the password. Failures are counted from Django's ``user_login_failed`` signal in
fixed windows (the counter's expiry is set by the first failure of a window); a successful sign-in clears
the username's counter. Counting in Redis makes the limit hold across every web process.

If Redis is unreachable the throttle fails open (sign-in keeps working, a warning is logged): an outage of
the limiter must not lock staff out of the admin they need to handle the outage.

Forms can tell a throttled refusal from a wrong password: ``request.login_throttled`` is set to True.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import HttpRequest

from core.redis import client as redis_client

logger = logging.getLogger(__name__)

PREFIX = "audioseal:login-failures:"


def client_ip(request: HttpRequest | None) -> str:
    """The client's address: behind ``TRUSTED_PROXY_COUNT`` proxies, the entry they appended to
    ``X-Forwarded-For`` (entries further left are client-controlled); else ``REMOTE_ADDR``."""
    if request is None:
        return "unknown"
    proxies = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)
    forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
    if proxies and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "unknown")


def _keys(request: HttpRequest | None, username: str | None) -> dict[str, str]:
    keys = {"ip": f"{PREFIX}ip:{client_ip(request)}"}
    if username:
        digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        keys["user"] = f"{PREFIX}user:{digest}"
    return keys


def _limits() -> dict[str, int]:
    return {"ip": settings.LOGIN_FAILURES_PER_IP, "user": settings.LOGIN_FAILURES_PER_USER}


def _redis() -> redis.Redis:
    return redis_client()


def is_throttled(request: HttpRequest | None, username: str | None) -> bool:
    """True when the username or the client IP reached its failure limit in the current window."""
    keys = _keys(request, username)
    try:
        counts = _redis().mget(list(keys.values()))
    except redis.RedisError as exc:
        logger.warning("login throttle unavailable (failing open): %s", exc)
        return False
    limits = _limits()
    return any(int(c or 0) >= limits[kind] for kind, c in zip(keys, counts, strict=True))


def record_failure(request: HttpRequest | None, username: str | None) -> None:
    try:
        with _redis().pipeline() as pipe:
            for key in _keys(request, username).values():
                # The window starts with its first failure (SET NX EX); INCR keeps the expiry. Works on
                # Redis 6 too (EXPIRE ... NX needs Redis 7).
                pipe.set(key, 0, ex=settings.LOGIN_FAILURE_WINDOW_SECONDS, nx=True)
                pipe.incr(key)
            pipe.execute()
    except redis.RedisError as exc:
        logger.warning("could not count a failed sign-in: %s", exc)


def clear(request: HttpRequest | None, username: str | None) -> None:
    keys = _keys(request, username)
    if "user" in keys:
        try:
            _redis().delete(keys["user"])
        except redis.RedisError:
            pass


def _username(credentials: dict[str, Any]) -> str | None:
    field = get_user_model().USERNAME_FIELD
    value = credentials.get(field) or credentials.get("username")
    return str(value) if value else None


class LoginThrottleBackend(BaseBackend):
    """Authenticates nobody; refuses everybody while their username or IP is throttled."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, **credentials: Any
    ) -> None:
        username = username or _username(credentials)
        if is_throttled(request, username):
            if request is not None:
                request.login_throttled = True
            logger.warning("sign-in refused: too many failures", extra={"client_ip": client_ip(request)})
            raise PermissionDenied("Too many failed sign-in attempts; try again later.")
        return None

    def get_user(self, user_id: Any) -> Any:
        """Sessions made with ``login(user)`` without a backend name record the first backend: this one.
        Resolve them like ModelBackend does, so such sessions (``force_login`` in tests, signup) stay valid."""
        from django.contrib.auth.backends import ModelBackend

        return ModelBackend().get_user(user_id)


@receiver(user_login_failed, dispatch_uid="audioseal_login_throttle_failed")
def _on_failure(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    record_failure(request, _username(credentials))


@receiver(user_logged_in, dispatch_uid="audioseal_login_throttle_success")
def _on_success(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    clear(request, user.get_username() if user is not None else None)
