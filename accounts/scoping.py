"""Which tenant a request acts for.

API keys belong to one tenant. A dashboard session acts for the tenant the user selected (stored in the
session) among those they are a member of. Views never take a tenant from the request body or URL.
"""

from __future__ import annotations

from accounts.models import ApiKey, Membership, Tenant

SESSION_TENANT_KEY = "tenant_id"


def membership_for_session(request) -> Membership | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    memberships = Membership.objects.select_related("tenant").filter(user=user).order_by("created_at")
    wanted = request.session.get(SESSION_TENANT_KEY)
    if wanted:
        chosen = memberships.filter(tenant_id=wanted).first()
        if chosen:
            return chosen
    return memberships.first()


def tenant_for_request(request) -> Tenant | None:
    cached = getattr(request, "_tenant_cache", None)
    if cached is not None:
        return cached
    tenant = None
    if isinstance(getattr(request, "auth", None), ApiKey):
        tenant = request.auth.tenant
    else:
        membership = membership_for_session(request)
        tenant = membership.tenant if membership else None
    request._tenant_cache = tenant
    return tenant
