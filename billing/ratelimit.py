"""Per-API-key, per-endpoint-family rate limits from the tenant's plan, counted atomically in Redis.

A view declares its family with ``rate_family = "watermark"`` (job-creating endpoints: the model family;
reading endpoints: ``"read"``). Views without the attribute count as ``"read"`` for GET/HEAD/OPTIONS and
``"default"`` otherwise. The plan maps families to requests per minute (``Plan.rate_limits``).

Counting: one Redis key per (API key, family). A Lua script increments it and, on the first request, sets a
60-second expiry, so the window starts at the first request and increment + expiry are one atomic step
(no key can be left without an expiry, and concurrent requests on several web processes count exactly).
Requests past the limit get ``429 RATE_LIMITED`` with ``Retry-After`` (seconds until the window ends).

Every throttled-or-not API response carries ``X-RateLimit-Limit`` (requests per window),
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds until the window resets, like ``Retry-After``),
set by ``RateLimitHeadersMiddleware`` from what the throttle recorded on the request.

If Redis is unreachable the request is allowed (logged): rate limiting must not take the API down.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from core.errors import ServiceError
from core.redis import client as redis_client

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

# KEYS[1] counter; ARGV[1] window in ms. Returns {count, milliseconds until the window ends}.
_INCR_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


@dataclass(frozen=True)
class RateLimitState:
    family: str
    limit: int
    count: int
    reset_seconds: int

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }


@lru_cache(maxsize=4)
def _script(url: str):
    return redis_client().register_script(_INCR_SCRIPT)


def hit(identity: str, family: str, limit: int) -> RateLimitState:
    """Count one request for ``identity`` in ``family``; the state says whether it is within ``limit``."""
    key = f"audioseal:ratelimit:{identity}:{family}"
    count, ttl_ms = _script(settings.REDIS_URL)(keys=[key], args=[WINDOW_SECONDS * 1000])
    reset = max(1, math.ceil(int(ttl_ms) / 1000))
    return RateLimitState(family=family, limit=limit, count=int(count), reset_seconds=reset)


def family_for(request, view) -> str:
    family = getattr(view, "rate_family", None)
    if family:
        return family
    return "read" if request.method in SAFE_METHODS else "default"


def identity_for(request) -> str | None:
    """Who is counted: the API key, or (dashboard session) the user within the tenant; None: anonymous."""
    # Imported here, not at the top: DRF imports this module (DEFAULT_THROTTLE_CLASSES) while
    # `rest_framework.views` is still initialising, before the models of the apps may be imported.
    from accounts.models import ApiKey

    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        return f"key:{auth.pk}"
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return f"user:{user.pk}"
    return None


def standing_for_request(request):
    """The tenant's billing ``Standing`` for this request, read once and kept on the request: the throttle,
    the upload checks and the quota reservation of one submission all use the same reading."""
    from accounts.scoping import tenant_for_request  # not at the top: see PlanRateThrottle.allow_request
    from billing.selectors import standing_for

    django_request = getattr(request, "_request", request)
    if not hasattr(django_request, "billing_standing"):
        tenant = tenant_for_request(request)
        django_request.billing_standing = standing_for(tenant) if tenant is not None else None
    return django_request.billing_standing


class PlanRateThrottle(BaseThrottle):
    """DRF throttle (``DEFAULT_THROTTLE_CLASSES``): the plan's limit for the view's family, per key."""

    def allow_request(self, request, view) -> bool:
        identity = identity_for(request)
        if identity is None:
            return True
        standing = standing_for_request(request)
        if standing is None:
            return True
        family = family_for(request, view)
        limit = standing.limits.rate_limit(family)
        if limit is None:
            return True
        try:
            state = hit(f"{standing.tenant_id}:{identity}", family, limit)
        except redis.RedisError:
            logger.warning("rate limiting skipped: Redis unavailable", exc_info=True)
            return True
        request._request.ratelimit = state
        if not state.allowed:
            raise ServiceError(
                "RATE_LIMITED",
                f"Rate limit exceeded: {limit} requests per minute for `{family}` endpoints with this key. "
                f"Retry in {state.reset_seconds} s.",
                {"family": family, "limit": limit, "window_seconds": WINDOW_SECONDS,
                 "retry_after": state.reset_seconds},
                headers={"Retry-After": str(state.reset_seconds), **state.headers()},
            )
        return True

    def wait(self) -> float | None:
        return None


class RateLimitHeadersMiddleware:
    """Adds the X-RateLimit-* headers the throttle recorded to the response (including 429s)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        state = getattr(request, "ratelimit", None)
        if state is not None:
            for name, value in state.headers().items():
                if name not in response:
                    response[name] = value
        return response
