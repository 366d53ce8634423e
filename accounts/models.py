"""Tenants (organisations), their members and their API keys.

Row-level tenancy: every customer-visible row carries a ``tenant`` and every customer query is scoped by it
(``accounts.scoping``). API keys are stored as a SHA-256 hash of the full secret plus a short visible prefix
used to find the row; the secret itself exists only in the response that created it.
"""

from __future__ import annotations

import base64
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 32 random bytes (the HMAC-SHA256 key).

    The spec's format, so ``standardwebhooks.Webhook(secret)`` (and Svix's libraries) take it as it is.
    """
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    is_active = models.BooleanField(default=True, help_text="Suspended tenants can read but not submit.")
    created_at = models.DateTimeField(auto_now_add=True)
    webhook_url = models.CharField(
        max_length=2000, blank=True, default="",
        help_text="Default callback URL for job webhooks (a job's own callback_url wins). "
        "Checked by the SSRF guard wherever it is set (dashboard, admin): private addresses are refused.",
    )
    webhook_secret = models.CharField(
        max_length=100, default=new_webhook_secret,
        help_text="Signs job webhooks (Standard Webhooks, whsec_<base64 key>; see jobs/WEBHOOKS.md).",
    )
    webhook_previous_secret = models.CharField(
        max_length=100, blank=True, default="",
        help_text="The secret before the last rotation: deliveries are signed with it too until it expires.",
    )
    webhook_previous_secret_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="End of the rotation's overlap window (then only the new secret signs)."
    )
    webhook_event_types = models.JSONField(
        default=list, blank=True,
        help_text="Event types sent to the default callback URL (e.g. job.failed); empty = all of them.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"

    @property
    def can_manage(self) -> bool:
        """Owners and admins manage keys, members and billing; members only run jobs."""
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


class ApiKey(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="Visible part of the key, used to find it.")
    secret_hash = models.CharField(max_length=64, help_text="SHA-256 of the full key; the key is never stored.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    read_only = models.BooleanField(
        default=False, help_text="Reads only: creating or cancelling jobs is refused with 403 KEY_SCOPE."
    )
    job_kinds = models.JSONField(
        default=list, blank=True,
        help_text="Job kinds this key may create (jobs.models.JobKind values); empty: every kind.",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    def may_create(self, kind: str) -> bool:
        """Whether this key's scopes allow creating a job of ``kind`` (``accounts.permissions.KeyScope``)."""
        return not self.read_only and (not self.job_kinds or kind in self.job_kinds)


class ApiRequest(models.Model):
    """One API request made with one of the tenant's keys, refused ones included: the dashboard's request log.

    Written in bulk from a Redis buffer (``accounts.request_log``), never on the request's own path, and
    pruned after the tenant's plan's ``request_log_days`` (billing) by ``jobs.upkeep.retention``. The key is
    kept as a foreign key for its current name and as the visible prefix copied at request time, so a row
    still says which key it was after the key is deleted. Never the secret, never a body.
    """

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_requests")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    key_prefix = models.CharField(max_length=16, help_text="The key's visible prefix when the request came.")
    request_id = models.CharField(max_length=128, db_index=True, help_text="The X-Request-ID of the response.")
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=300)
    route = models.CharField(max_length=200, help_text="The URL pattern (``/api/v1/jobs/<uuid:pk>``).")
    status = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=40, blank=True, default="")
    duration_ms = models.FloatField()
    created_at = models.DateTimeField(help_text="When the request arrived (not when the row was written).")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="api_request_tenant_time")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.status} ({self.request_id})"
