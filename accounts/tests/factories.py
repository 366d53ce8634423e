"""Fixtures for tenants, users and API keys, shared by every app's tests (loaded by the root conftest)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services

__all__ = ["make_tenant", "tenant", "api_key", "api_client", "client_for", "other_tenant", "other_client"]


@pytest.fixture
def make_tenant(db):
    counter = {"n": 0}

    def make(name: str | None = None, **kwargs):
        counter["n"] += 1
        return services.create_tenant(name or f"Tenant {counter['n']}", **kwargs)

    return make


@pytest.fixture
def tenant(make_tenant):
    return make_tenant("Acme")


@pytest.fixture
def api_key(tenant):
    return services.issue_api_key(tenant, "test")


def client_for(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def api_client(api_key) -> APIClient:
    return client_for(api_key.secret)


@pytest.fixture
def other_tenant(make_tenant):
    return make_tenant("Globex")


@pytest.fixture
def other_client(other_tenant) -> APIClient:
    return client_for(services.issue_api_key(other_tenant, "other").secret)


def expired(days: int = 1):
    return timezone.now() - timedelta(days=days)
