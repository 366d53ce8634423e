"""Tenant, member and API-key operations shared by the API, the dashboard, the admin and management commands.

The rules live here, not in forms or views: forms check what was typed, views call these functions and show
a refusal (a ``core.errors.ServiceError`` with a stable code) next to the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.contrib.auth.forms import PasswordResetForm
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import ApiKey, Membership, Tenant
from accounts.signals import tenant_created
from core.errors import ServiceError

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

KEY_PREFIX = "ask_"  # "AudioSeal key": makes leaked keys easy to spot in logs and secret scanners
PREFIX_LENGTH = 8  # random characters in the visible prefix
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    """An API key as created: ``secret`` is the only copy of the full key and is shown once."""

    api_key: ApiKey
    secret: str


def hash_secret(secret: str) -> str:
    """SHA-256 of a key: what is stored. Keys carry 190+ bits of randomness, so a fast hash is safe here (no
    dictionary to attack) and keeps authentication off the request's critical path, unlike a password KDF."""
    return hashlib.sha256(secret.encode()).hexdigest()


# The job kinds a key's scopes can name. Accounts sits below jobs and cannot import its kinds: jobs registers
# them when it loads (``jobs.apps.JobsConfig.ready``), so the forms and the checks here use the real list.
_JOB_KIND_CHOICES: list[tuple[str, str]] = []


def register_job_kinds(choices: list[tuple[str, str]]) -> None:
    """Declare the job kinds API key scopes may name (value, label); called once by the jobs app."""
    _JOB_KIND_CHOICES[:] = [(str(value), str(label)) for value, label in choices]


def job_kind_choices() -> list[tuple[str, str]]:
    return list(_JOB_KIND_CHOICES)


def kind_labels(kinds: list[str]) -> list[str]:
    """What people call ``kinds`` ("Watermark detect"), in the registered order."""
    wanted = set(kinds)
    return [label for value, label in _JOB_KIND_CHOICES if value in wanted]


def _check_scopes(read_only: bool, job_kinds: list[str]) -> list[str]:
    known = {value for value, _ in _JOB_KIND_CHOICES}
    unknown = sorted(set(job_kinds) - known)
    if unknown:
        raise ServiceError(
            "VALIDATION_ERROR", f"Unknown job kind(s): {', '.join(unknown)}.", {"field": "job_kinds"}
        )
    if read_only and job_kinds:
        raise ServiceError(
            "VALIDATION_ERROR", "A read-only key creates no jobs: leave the job kinds empty.", {"field": "job_kinds"}
        )
    return sorted(set(job_kinds))


def issue_api_key(
    tenant: Tenant,
    name: str,
    *,
    created_by: AbstractBaseUser | None = None,
    expires_at: datetime | None = None,
    read_only: bool = False,
    job_kinds: list[str] | None = None,
) -> IssuedKey:
    """A new key for ``tenant``. Only its hash is stored, so the returned secret is the one chance to show it.

    Scopes: ``read_only`` keys only read; ``job_kinds`` (empty: all) limits which kinds of job it creates."""
    kinds = _check_scopes(read_only, job_kinds or [])
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=prefix,
        secret_hash=hash_secret(secret),
        created_by=created_by,
        expires_at=expires_at,
        read_only=read_only,
        job_kinds=kinds,
    )
    return IssuedKey(api_key=api_key, secret=secret)


def update_api_key(
    api_key: ApiKey, *, name: str, expires_at: datetime | None, read_only: bool, job_kinds: list[str]
) -> ApiKey:
    """Rename a key, set or clear its expiry, change its scopes; effective on its next request (every request
    reads the key). A revoked key stays as it was (``INVALID_STATE``): its history should not change."""
    if api_key.is_revoked:
        raise ServiceError("INVALID_STATE", "This key is revoked: it cannot be changed.")
    api_key.name = name
    api_key.expires_at = expires_at
    api_key.read_only = read_only
    api_key.job_kinds = _check_scopes(read_only, job_kinds)
    api_key.save(update_fields=["name", "expires_at", "read_only", "job_kinds"])
    return api_key


def parse_key(raw: str) -> str | None:
    """Return the visible prefix of a well-formed key, or None."""
    if not raw.startswith(KEY_PREFIX):
        return None
    prefix, sep, rest = raw[len(KEY_PREFIX):].partition("_")
    if not sep or len(prefix) != PREFIX_LENGTH or len(rest) < 20:
        return None
    return prefix


def verify_key(api_key: ApiKey, raw: str) -> bool:
    """Whether ``raw`` is this key's secret (constant-time, so timing does not leak the hash)."""
    return hmac.compare_digest(api_key.secret_hash, hash_secret(raw))


def touch_last_used(api_key: ApiKey) -> None:
    """Record use at most once a minute: a write per request would make every API call a DB write."""
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


def revoke_api_key(api_key: ApiKey) -> None:
    """Refuse the key from now on (``API_KEY_REVOKED``). Idempotent: the first revocation time is kept."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])


def unique_slug(name: str) -> str:
    """A slug for a new tenant that no tenant has yet (``acme``, ``acme-2``, …): names need not be unique."""
    base = slugify(name)[:60] or "tenant"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def create_tenant(name: str, *, owner: AbstractBaseUser | None = None, slug: str | None = None) -> Tenant:
    """A new organisation, with ``owner`` as its first owner. Sends ``accounts.signals.tenant_created`` in the
    same transaction, so what other apps attach to a tenant (billing: its subscription) exists with it."""
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
    # An UPDATE of the one column: a concurrent edit of the tenant's other fields is not overwritten.
    Tenant.objects.filter(pk=tenant.pk).update(is_active=active)
    tenant.is_active = active


def get_or_create_user(
    username: str, *, email: str = "", password: str | None = None, staff: bool = False
) -> AbstractBaseUser:
    """The user named ``username``, created if missing (commands, quick start, invitations). Without a
    password a new user gets an unusable one: they set it through the emailed link; ``staff`` only adds.

    A ``password`` the user already has is not hashed again: a new hash (a new salt) would change the
    session's auth hash and sign the user out everywhere; ``make run`` calls this on every start."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"email": email})
    rehash = created or bool(password and not user.check_password(password))
    promote = staff and not (user.is_staff and user.is_superuser)
    if rehash or promote:
        if rehash and password:
            user.set_password(password)
        elif rehash:
            user.set_unusable_password()
        user.is_staff = user.is_superuser = staff or user.is_staff
        user.save()
    return user


# --- members: who may add, change and remove whom ----------------------------------------------------------
# The dashboard's forms only check what was typed; these functions hold the rules and are what the views
# call, so the rules are the same for every caller (a page, a command, a test). Refusals are ServiceErrors
# with stable codes: PERMISSION_DENIED, ROLE_NOT_ALLOWED, ALREADY_MEMBER, LAST_OWNER.

Role = Membership.Role


@dataclass(frozen=True)
class AddedMember:
    """A new membership; ``created_user``: the person had no account, so one was made (invite them)."""

    membership: Membership
    created_user: bool


def grantable_roles(actor: Membership) -> list[str]:
    """Owners grant any role; admins manage members and admins but cannot create owners."""
    if actor.role == Role.OWNER:
        return [Role.OWNER, Role.ADMIN, Role.MEMBER]
    if actor.role == Role.ADMIN:
        return [Role.ADMIN, Role.MEMBER]
    return []


def can_change(actor: Membership, target: Membership) -> bool:
    """Whether ``actor`` may change or remove ``target`` at all (admins never touch owners)."""
    if not actor.can_manage:
        return False
    return actor.role == Role.OWNER or target.role != Role.OWNER


def is_last_owner(target: Membership, *, owners: int | None = None) -> bool:
    """Whether ``target`` is its organisation's only owner (which must stay: someone has to manage it).

    ``owners``: the organisation's owner count when the caller already has it (a page listing everyone).
    """
    if target.role != Role.OWNER:
        return False
    if owners is None:
        owners = Membership.objects.filter(tenant_id=target.tenant_id, role=Role.OWNER).count()
    return owners <= 1


def can_remove(actor: Membership, target: Membership, *, owners: int | None = None) -> bool:
    """Whether the members page offers to remove ``target`` (``remove_member`` decides again)."""
    return can_change(actor, target) and not is_last_owner(target, owners=owners)


def _lock_owners(tenant_id: uuid.UUID) -> None:
    """Lock the organisation's owner rows, so two owners demoting or removing each other at once cannot both
    pass the last-owner check (the second waits, then sees one owner left)."""
    list(Membership.objects.select_for_update().filter(tenant_id=tenant_id, role=Role.OWNER))


def _check_grantable(actor: Membership, role: str) -> None:
    if role not in grantable_roles(actor):
        raise ServiceError(
            "ROLE_NOT_ALLOWED", "That role cannot be granted.", {"field": "role", "role": role}, http_status=403
        )


@transaction.atomic
def add_member(actor: Membership, email: str, role: str) -> AddedMember:
    """Add the person with ``email`` to the actor's organisation; without an account, they get one (with no
    usable password: send them ``invite_member``)."""
    if not actor.can_manage:
        raise ServiceError("PERMISSION_DENIED", "Only owners and admins can add members.")
    _check_grantable(actor, role)
    email = email.strip().lower()
    if Membership.objects.filter(tenant_id=actor.tenant_id, user__email__iexact=email).exists():
        raise ServiceError(
            "ALREADY_MEMBER", "This person is already a member.", {"field": "email"}, http_status=409
        )
    user = get_user_model().objects.filter(email__iexact=email).order_by("id").first()
    created = user is None
    if user is None:
        user = get_or_create_user(email, email=email)
    membership = Membership.objects.create(user=user, tenant_id=actor.tenant_id, role=role)
    return AddedMember(membership=membership, created_user=created)


class _InviteEmail(PasswordResetForm):
    """Django's password-reset email, reused as an invitation: its link lets a new member choose a password.

    Only its mail machinery is used (token, uid, templates, sending). Django's reset skips users without a
    usable password; an invited user has exactly that, hence ``get_users``.
    """

    def __init__(self, user: AbstractBaseUser) -> None:
        super().__init__({"email": user.email})
        self.invited = user

    def get_users(self, email: str) -> list[AbstractBaseUser]:
        return [self.invited]


def invite_member(
    membership: Membership, *, inviter: AbstractBaseUser | None, domain: str, use_https: bool
) -> None:
    """Email a new member the link to set their password (``registration/invite_*.txt``). ``domain`` and
    ``use_https`` build the link (the dashboard passes the request's host and scheme)."""
    invite = _InviteEmail(membership.user)
    if invite.is_valid():
        invite.save(
            domain_override=domain,
            use_https=use_https,
            subject_template_name="registration/invite_subject.txt",
            email_template_name="registration/invite_email.txt",
            extra_email_context={"tenant": membership.tenant, "inviter": inviter},
        )


@transaction.atomic
def change_role(actor: Membership, target: Membership, role: str) -> Membership:
    """Give ``target`` another role. Only owners change owners; an organisation keeps at least one owner."""
    if not can_change(actor, target):
        raise ServiceError("PERMISSION_DENIED", "Only an owner can change an owner's role.")
    _check_grantable(actor, role)
    _lock_owners(target.tenant_id)
    if role != Role.OWNER and is_last_owner(target):
        raise ServiceError(
            "LAST_OWNER", "An organisation needs at least one owner: make someone else owner first.",
            http_status=409,
        )
    target.role = role
    target.save(update_fields=["role"])
    return target


@transaction.atomic
def remove_member(actor: Membership, target: Membership) -> None:
    """Remove ``target`` from the organisation (a member may be the actor: leaving). The last owner stays."""
    if not can_change(actor, target):
        raise ServiceError("PERMISSION_DENIED", "Only an owner can remove an owner.")
    _lock_owners(target.tenant_id)
    if is_last_owner(target):
        raise ServiceError(
            "LAST_OWNER", "The last owner cannot be removed: make someone else owner first.", http_status=409
        )
    target.delete()


@transaction.atomic
def sign_up(email: str, password: str, organisation: str) -> tuple[AbstractBaseUser, Tenant]:
    """A new user (``email`` is also the username) who owns a new organisation on the default plan."""
    user = get_user_model().objects.create_user(username=email, email=email, password=password)
    return user, create_tenant(organisation.strip(), owner=user)
