"""API-key authentication: every refusal is a 401 with its own code; a valid key is accepted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import ApiKey
from testing.assertions import assert_error
from testing.factories import client_for, expired

pytestmark = pytest.mark.django_db

JOBS_URL = "/api/v1/jobs"


def test_no_key_is_unauthenticated():
    response = APIClient().get(JOBS_URL)
    assert_error(response, 401, "UNAUTHENTICATED")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-key", "Bearer ask_short_x", "Token ask_12345678_" + "a" * 40],
)
def test_malformed_key_is_refused(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_error(client.get(JOBS_URL), 401, "INVALID_API_KEY")


def test_unknown_key_is_refused(api_key):
    # Right prefix, wrong secret: must not authenticate as the key that owns the prefix.
    forged = api_key.secret[:-4] + ("aaaa" if not api_key.secret.endswith("aaaa") else "bbbb")
    assert_error(client_for(forged).get(JOBS_URL), 401, "INVALID_API_KEY")
    unknown = "ask_00000000_" + "x" * 43
    assert_error(client_for(unknown).get(JOBS_URL), 401, "INVALID_API_KEY")


def test_revoked_key_is_refused(api_key):
    services.revoke_api_key(api_key.api_key)
    assert_error(client_for(api_key.secret).get(JOBS_URL), 401, "API_KEY_REVOKED")


def test_expired_key_is_refused(tenant):
    issued = services.issue_api_key(tenant, "old", expires_at=expired())
    assert_error(client_for(issued.secret).get(JOBS_URL), 401, "API_KEY_EXPIRED")


def test_valid_key_is_accepted_and_last_use_is_recorded_at_most_once_a_minute(api_key):
    client = client_for(api_key.secret)
    assert client.get(JOBS_URL).status_code == 200
    first = ApiKey.objects.get(pk=api_key.api_key.pk).last_used_at
    assert first is not None
    assert client.get(JOBS_URL).status_code == 200
    assert ApiKey.objects.get(pk=api_key.api_key.pk).last_used_at == first  # not rewritten within a minute
    ApiKey.objects.filter(pk=api_key.api_key.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    client.get(JOBS_URL)
    assert ApiKey.objects.get(pk=api_key.api_key.pk).last_used_at > first


def test_secret_is_never_stored(api_key):
    row = ApiKey.objects.get(pk=api_key.api_key.pk)
    for field in ApiKey._meta.fields:
        value = getattr(row, field.attname)
        assert api_key.secret not in str(value)
    assert api_key.secret.startswith(f"ask_{row.prefix}_")


def test_create_tenant_command_prints_a_working_key(capsys):
    from django.core.management import call_command

    call_command("create_tenant", "Initech", "--quiet-key")
    secret = capsys.readouterr().out.strip()
    assert client_for(secret).get(JOBS_URL).status_code == 200
