"""The message registry API: register a given or the next free message, list and retrieve, per tenant."""

from __future__ import annotations

import pytest

from provenance.models import RegisteredMessage
from testing.assertions import assert_error

pytestmark = pytest.mark.django_db

MESSAGES = "/api/v1/provenance/messages"


def test_register_given_and_next_free_messages(api_client):
    given = api_client.post(MESSAGES, {"message": "1a2b", "label": "Voice nova", "metadata": {"voice": "nova"}},
                            format="json")
    assert given.status_code == 201, given.json()
    assert given.json()["message"] == "1A2B" and given.json()["metadata"] == {"voice": "nova"}
    first = api_client.post(MESSAGES, {"label": "Campaign A"}, format="json").json()
    second = api_client.post(MESSAGES, {"message": "auto", "label": "Campaign B"}, format="json").json()
    assert (first["message"], second["message"]) == ("0001", "0002")  # 0000 is never handed out

    listed = api_client.get(MESSAGES).json()["results"]
    assert [e["message"] for e in listed] == ["0001", "0002", "1A2B"]
    assert api_client.get(f"{MESSAGES}/1a2b").json()["label"] == "Voice nova"


def test_a_message_is_unique_per_tenant_not_globally(api_client, other_client):
    assert api_client.post(MESSAGES, {"message": "00FF", "label": "a"}, format="json").status_code == 201
    assert_error(api_client.post(MESSAGES, {"message": "00ff", "label": "b"}, format="json"), 409, "MESSAGE_TAKEN")
    assert other_client.post(MESSAGES, {"message": "00FF", "label": "c"}, format="json").status_code == 201
    assert other_client.get(f"{MESSAGES}/00FF").json()["label"] == "c"
    assert RegisteredMessage.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"message": "XYZ1", "label": "a"}, "INVALID_MESSAGE"),
        ({"message": "12345", "label": "a"}, "INVALID_MESSAGE"),
        ({"message": "1A2B"}, "VALIDATION_ERROR"),
        ({"message": "1A2B", "label": "a", "metadata": {"x": "y" * 9000}}, "VALIDATION_ERROR"),
    ],
)
def test_bad_registrations_are_refused_and_leave_no_row(api_client, body, code):
    assert_error(api_client.post(MESSAGES, body, format="json"), 400, code)
    assert RegisteredMessage.objects.count() == 0


def test_another_tenants_entry_is_not_found(api_client, other_client):
    api_client.post(MESSAGES, {"message": "BEEF", "label": "Acme only"}, format="json")
    assert_error(other_client.get(f"{MESSAGES}/BEEF"), 404, "NOT_FOUND")
    assert other_client.get(MESSAGES).json()["results"] == []


def test_the_registry_needs_a_key(client):
    assert client.get(MESSAGES).status_code == 401


def test_the_listing_pages_by_message(api_client, tenant):
    from provenance import services

    for _ in range(103):
        services.register_message(tenant, label="bulk")
    first = api_client.get(MESSAGES).json()
    assert len(first["results"]) == 100 and first["results"][-1]["message"] == "0064"
    second = api_client.get(first["next"]).json()
    assert [e["message"] for e in second["results"]] == ["0065", "0066", "0067"] and second["next"] is None
    assert_error(api_client.get(f"{MESSAGES}?after=zz"), 400, "INVALID_MESSAGE")


def test_settings_read_and_patch_per_tenant(api_client, other_client):
    assert api_client.get("/api/v1/provenance/settings").json()["manifests_enabled"] is True
    changed = api_client.patch("/api/v1/provenance/settings", {"manifests_enabled": False, "generator_name": "TTS"},
                               format="json")
    assert changed.status_code == 200 and changed.json()["generator_name"] == "TTS"
    assert changed.json()["manifests_enabled"] is False
    assert other_client.get("/api/v1/provenance/settings").json()["manifests_enabled"] is True
    bad = api_client.patch("/api/v1/provenance/settings", {"digital_source_type": "made-up"}, format="json")
    assert_error(bad, 400, "VALIDATION_ERROR")
