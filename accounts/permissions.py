"""Every API request acts for exactly one tenant: from its API key, or from the session's current tenant."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts import services
from accounts.models import ApiKey
from accounts.scoping import tenant_for_request
from core.errors import ServiceError


class IsTenantMember(BasePermission):
    def has_permission(self, request, view) -> bool:
        return tenant_for_request(request) is not None


class KeyScope(BasePermission):
    """An API key's scopes (``ApiKey.read_only``, ``ApiKey.job_kinds``), checked before the throttle and the view.

    A read-only key may only read (GET, HEAD, OPTIONS); a key limited to some job kinds may create only those
    (the view's ``key_scope_kind``; job-creating views set it) and do every other write. Refused with 403
    ``KEY_SCOPE`` and the key's scopes in the details. Dashboard sessions have no key: nothing to check.
    """

    def has_permission(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey) or request.method in SAFE_METHODS:
            return True
        if key.read_only:
            raise ServiceError(
                "KEY_SCOPE", "This API key is read-only: it cannot create or change anything.",
                {"read_only": True, "job_kinds": key.job_kinds},
            )
        kind = getattr(view, "key_scope_kind", "")
        if kind and not key.may_create(kind):
            allowed = ", ".join(services.kind_labels(key.job_kinds))
            wanted = ", ".join(services.kind_labels([kind])) or kind
            raise ServiceError(
                "KEY_SCOPE", f"This API key may not create “{wanted}” jobs; it may create: {allowed}.",
                {"kind": kind, "read_only": False, "job_kinds": key.job_kinds},
            )
        return True
