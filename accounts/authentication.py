"""``Authorization: Bearer <api key>`` for the REST API.

The request's ``auth`` is the ApiKey; ``request.tenant`` is set for views and throttles, and the Django
request's ``api_key`` for the request log (``audioseal_site.middleware``), also when the key is refused.
Each refusal has its own stable code so a client can tell a typo from a revoked or expired key.
"""

from __future__ import annotations

from rest_framework import authentication, exceptions

from accounts import services
from accounts.models import ApiKey


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not raw.strip():
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: expected `Bearer <api key>`.", code="INVALID_API_KEY"
            )
        raw = raw.strip()
        prefix = services.parse_key(raw)
        if prefix is None:
            raise exceptions.AuthenticationFailed("Malformed API key.", code="INVALID_API_KEY")
        api_key = ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
        if api_key is None or not services.verify_key(api_key, raw):
            raise exceptions.AuthenticationFailed("Unknown API key.", code="INVALID_API_KEY")
        # The key is known from here on: the request log attributes even a refusal (revoked, expired) to it.
        request._request.api_key = api_key
        if api_key.is_revoked:
            raise exceptions.AuthenticationFailed("This API key has been revoked.", code="API_KEY_REVOKED")
        if api_key.is_expired:
            raise exceptions.AuthenticationFailed("This API key has expired.", code="API_KEY_EXPIRED")
        services.touch_last_used(api_key)
        request._request.tenant = api_key.tenant
        return (None, api_key)

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'
