"""Tenant and API-key operations shared by the API, the dashboard, the admin and management commands."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import ApiKey, Membership, Tenant
from accounts.signals import tenant_created

KEY_PREFIX = "ask_"  # "AudioSeal key": makes leaked keys easy to spot in logs and secret scanners
PREFIX_LENGTH = 8  # random characters in the visible prefix
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    """An API key as created: ``secret`` is the only copy of the full key and is shown once."""

    api_key: ApiKey
    secret: str


def hash_secret(secret: str) -> str:
    # Keys carry 190+ bits of randomness, so a fast hash is safe here (no dictionary to attack) and keeps
    # authentication off the request's critical path, unlike a password KDF.
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_api_key(
    tenant: Tenant, name: str, *, created_by=None, expires_at: datetime | None = None
) -> IssuedKey:
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=prefix,
        secret_hash=hash_secret(secret),
        created_by=created_by,
        expires_at=expires_at,
    )
    return IssuedKey(api_key=api_key, secret=secret)


def parse_key(raw: str) -> str | None:
    """Return the visible prefix of a well-formed key, or None."""
    if not raw.startswith(KEY_PREFIX):
        return None
    prefix, sep, rest = raw[len(KEY_PREFIX):].partition("_")
    if not sep or len(prefix) != PREFIX_LENGTH or len(rest) < 20:
        return None
    return prefix


def verify_key(api_key: ApiKey, raw: str) -> bool:
    return hmac.compare_digest(api_key.secret_hash, hash_secret(raw))


def touch_last_used(api_key: ApiKey) -> None:
    """Record use at most once a minute: a write per request would make every API call a DB write."""
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


def revoke_api_key(api_key: ApiKey) -> None:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])


def unique_slug(name: str) -> str:
    base = slugify(name)[:60] or "tenant"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def create_tenant(name: str, *, owner=None, slug: str | None = None) -> Tenant:
    tenant = Tenant.objects.create(name=name, slug=slug or unique_slug(name))
    if owner is not None:
        Membership.objects.create(user=owner, tenant=tenant, role=Membership.Role.OWNER)
    # Apps above accounts (billing: the tenant's subscription) react in this transaction.
    tenant_created.send(sender=Tenant, tenant=tenant)
    return tenant


def suspend_tenant(tenant: Tenant) -> None:
    """Suspend a tenant: its members and keys still read everything, new jobs are refused (403
    ``TENANT_SUSPENDED``, checked by billing on every submission). The one place suspension is written, so
    whatever comes with it later (an audit entry, a notification) happens for every caller."""
    _set_active(tenant, False)


def reactivate_tenant(tenant: Tenant) -> None:
    """Lift a suspension: the tenant may submit jobs again."""
    _set_active(tenant, True)


def _set_active(tenant: Tenant, active: bool) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(is_active=active)
    tenant.is_active = active


def get_or_create_user(username: str, *, email: str = "", password: str | None = None, staff: bool = False):
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"email": email})
    if created or password:
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.is_staff = user.is_superuser = staff or user.is_staff
        user.save()
    return user
