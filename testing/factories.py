"""Tenants, users, API clients and the cast of the dashboard tests (``People``), for every app's tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import Membership, Tenant

PASSWORD = "correct-horse-battery-42"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"

def client_for(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def expired(days: int = 1):
    return timezone.now() - timedelta(days=days)


@dataclass
class People:
    """Acme with an owner, an admin and a member; Globex with its own owner; a staff user in neither."""

    tenant: Tenant
    other_tenant: Tenant
    users: dict[str, Any]

    def client(self, who: str) -> Client:
        client = Client()
        if who != "anonymous":
            client.force_login(self.users[who], backend=MODEL_BACKEND)
        return client

    def membership(self, who: str, tenant: Tenant | None = None) -> Membership:
        return Membership.objects.get(user=self.users[who], tenant=tenant or self.tenant)


def make_people() -> People:
    """The cast of every dashboard permission test (also used by jobs/tests/test_dashboard.py)."""
    User = get_user_model()

    def user(name: str, **extra: Any):
        return User.objects.create_user(
            username=f"{name}@example.com", email=f"{name}@example.com", password=PASSWORD, **extra
        )

    users = {name: user(name) for name in ("owner", "admin", "member", "outsider")}
    users["staff"] = user("staff", is_staff=True, is_superuser=True)
    tenant = services.create_tenant("Acme", owner=users["owner"])
    Membership.objects.create(user=users["admin"], tenant=tenant, role=Membership.Role.ADMIN)
    Membership.objects.create(user=users["member"], tenant=tenant, role=Membership.Role.MEMBER)
    other = services.create_tenant("Globex", owner=users["outsider"])
    return People(tenant=tenant, other_tenant=other, users=users)
