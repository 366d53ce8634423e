"""API key scopes (read-only, job kinds), expiry and rename: enforced by the API with 403 KEY_SCOPE before
anything is created, and editable in the dashboard within the session's tenant only."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import ApiKey
from core.errors import ServiceError
from jobs.models import Job
from testing.factories import client_for
from testing.uploads import stored_files, upload

pytestmark = pytest.mark.django_db

DETECT, EMBED = "/api/v1/watermark/detect", "/api/v1/watermark/embed"


def key_client(tenant, **scopes):
    return client_for(services.issue_api_key(tenant, "scoped", **scopes).secret)


def test_a_read_only_key_reads_but_creates_nothing(tenant, redis_clean, _isolated_media):
    client = key_client(tenant, read_only=True)
    refused = client.post(DETECT, {"file": upload("speech_16k_mono.wav")}, format="multipart")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "KEY_SCOPE" and error["details"]["read_only"] is True
    assert error["request_id"] == refused["X-Request-ID"]
    assert Job.objects.count() == 0 and stored_files(_isolated_media) == []
    assert client.get("/api/v1/jobs").status_code == 200
    assert client.get("/api/v1/usage").status_code == 200


def test_a_read_only_key_cannot_cancel(tenant, api_client, redis_clean):
    job = api_client.post(DETECT, {"file": upload("speech_16k_mono.wav")}, format="multipart").json()
    refused = key_client(tenant, read_only=True).post(f"/api/v1/jobs/{job['id']}/cancel")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "KEY_SCOPE"
    assert Job.objects.get(pk=job["id"]).status == "queued"


def test_a_read_only_key_cannot_change_webhooks(tenant, redis_clean):
    """The webhook endpoints name their own permissions; the key's scopes are among them."""
    client = key_client(tenant, read_only=True)
    secret = tenant.webhook_secret
    writes = (("post", "/api/v1/webhooks/endpoint/rotate-secret"), ("post", "/api/v1/webhooks/endpoint/test"),
              ("patch", "/api/v1/webhooks/endpoint"))
    for method, path in writes:
        response = getattr(client, method)(path, {}, format="json")
        assert response.status_code == 403 and response.json()["error"]["code"] == "KEY_SCOPE", (path, response.json())
    tenant.refresh_from_db()
    assert tenant.webhook_secret == secret
    assert client.get("/api/v1/webhooks/endpoint").status_code == 200


def test_a_key_limited_to_detection_cannot_embed(tenant, redis_clean):
    client = key_client(tenant, job_kinds=["watermark_detect"])
    assert client.post(DETECT, {"file": upload("speech_16k_mono.wav")}, format="multipart").status_code == 202
    refused = client.post(EMBED, {"file": upload("speech_16k_mono.wav")}, format="multipart")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "KEY_SCOPE"
    assert refused.json()["error"]["details"] == {
        "kind": "watermark_embed", "read_only": False, "job_kinds": ["watermark_detect"]
    }
    assert refused.json()["error"]["message"] == (
        "This API key may not create “Watermark embed” jobs; it may create: Watermark detect."
    )
    assert Job.objects.filter(kind="watermark_embed").count() == 0


def test_a_key_without_scopes_creates_every_kind(tenant, redis_clean):
    client = key_client(tenant)
    for url in (DETECT, EMBED):
        assert client.post(url, {"file": upload("speech_16k_mono.wav")}, format="multipart").status_code == 202


def test_scope_changes_apply_to_the_next_request(tenant, redis_clean):
    issued = services.issue_api_key(tenant, "ci")
    client = client_for(issued.secret)
    services.update_api_key(issued.api_key, name="ci", expires_at=None, read_only=True, job_kinds=[])
    assert client.post(DETECT, {"file": upload("speech_16k_mono.wav")}, format="multipart").status_code == 403


def test_the_service_refuses_unknown_kinds_and_revoked_keys(tenant):
    with pytest.raises(ServiceError) as unknown:
        services.issue_api_key(tenant, "x", job_kinds=["mining"])
    assert unknown.value.code == "VALIDATION_ERROR"
    with pytest.raises(ServiceError):
        services.issue_api_key(tenant, "x", read_only=True, job_kinds=["emotion"])
    key = services.issue_api_key(tenant, "old").api_key
    services.revoke_api_key(key)
    with pytest.raises(ServiceError) as revoked:
        services.update_api_key(key, name="new", expires_at=None, read_only=False, job_kinds=[])
    assert revoked.value.code == "INVALID_STATE"
    assert ApiKey.objects.get(pk=key.pk).name == "old"


# --- the dashboard -------------------------------------------------------------------------------------------


def test_creating_a_key_with_an_expiry_and_kinds(people):
    day = (timezone.now() + timedelta(days=10)).date()
    response = people.client("owner").post(reverse("dashboard:keys"), {
        "name": "detector", "expires_on": day.isoformat(), "access": "kinds", "job_kinds": ["watermark_detect"],
    })
    assert response.status_code < 400
    key = ApiKey.objects.get(tenant=people.tenant, name="detector")
    assert key.job_kinds == ["watermark_detect"] and not key.read_only
    assert key.expires_at.date() == day and key.expires_at.hour == 0
    listing = people.client("owner").get(reverse("dashboard:keys")).content.decode()
    access = re.search(r"<td data-label=\"Access\" data-key-access>(.*?)</td>", listing).group(1)
    assert access.startswith("Only Watermark detect")  # words, not the code


def test_access_kinds_needs_a_kind_and_expiry_must_be_ahead(people):
    client = people.client("owner")
    response = client.post(reverse("dashboard:keys"), {"name": "x", "access": "kinds"})
    assert response.status_code == 400 and b"Choose at least one job kind" in response.content
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()
    response = client.post(reverse("dashboard:keys"), {"name": "x", "access": "full", "expires_on": yesterday})
    assert response.status_code == 400 and b"after today" in response.content
    assert not ApiKey.objects.filter(name="x").exists()


def test_edit_renames_sets_expiry_and_scopes(people):
    key = services.issue_api_key(people.tenant, "ci").api_key
    url = reverse("dashboard:key-edit", args=[key.pk])
    client = people.client("admin")
    page = client.get(url)
    assert page.status_code == 200 and b'value="ci"' in page.content
    day = (timezone.now() + timedelta(days=30)).date()
    response = client.post(url, {"name": "reporting", "expires_on": day.isoformat(), "access": "read_only"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:keys")
    key.refresh_from_db()
    assert (key.name, key.read_only, key.job_kinds, key.expires_at.date()) == ("reporting", True, [], day)
    listing = client.get(reverse("dashboard:keys")).content.decode()
    assert "reporting" in listing and "Read only" in listing
    # Clearing the expiry and widening the scopes again.
    client.post(url, {"name": "reporting", "expires_on": "", "access": "full"})
    key.refresh_from_db()
    assert key.expires_at is None and not key.read_only


def test_edit_is_for_managers_of_the_keys_tenant(people):
    ours = services.issue_api_key(people.tenant, "ours").api_key
    theirs = services.issue_api_key(people.other_tenant, "theirs").api_key
    assert people.client("member").get(reverse("dashboard:key-edit", args=[ours.pk])).status_code == 403
    owner = people.client("owner")
    assert owner.get(reverse("dashboard:key-edit", args=[theirs.pk])).status_code == 404
    edit = owner.post(reverse("dashboard:key-edit", args=[theirs.pk]), {"name": "pwned", "access": "read_only"})
    assert edit.status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "theirs" and not theirs.read_only
