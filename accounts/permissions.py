"""Every API request acts for exactly one tenant: from its API key, or from the session's current tenant."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from accounts.scoping import tenant_for_request


class IsTenantMember(BasePermission):
    def has_permission(self, request, view) -> bool:
        return tenant_for_request(request) is not None
