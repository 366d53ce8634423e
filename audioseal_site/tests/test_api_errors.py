"""Under /api/ every error is JSON with a stable code, in every profile; listings refuse what they cannot use."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest
from rest_framework.test import APIClient

from testing.assertions import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def debug_on(settings):
    settings.DEBUG = True  # Django's technical HTML pages would answer here without the middleware


def _cursor(raw: str) -> str:
    return base64.b64encode(raw.encode()).decode()


@pytest.mark.parametrize("cursor", [_cursor("p=bogus"), _cursor("o=many&p=x"), "%%%not-base64"])
def test_a_cursor_that_is_not_ours_is_a_400_with_a_code(api_client, cursor):
    body = assert_error(api_client.get("/api/v1/jobs", {"cursor": cursor}), 400, "INVALID_CURSOR")
    assert "cursor" in body["error"]["details"]["fields"]


def test_a_cursor_the_listing_gave_out_still_works(api_client):
    position = urlencode({"p": "2026-01-01 00:00:00+00:00", "r": "1"})  # as DRF encodes it
    assert api_client.get("/api/v1/jobs", {"cursor": _cursor(position)}).status_code == 200


@pytest.mark.parametrize("size", ["0", "101", "abc", "-3"])
def test_page_size_outside_1_to_100_is_refused(api_client, size):
    assert_error(api_client.get("/api/v1/jobs", {"page_size": size}), 400, "VALIDATION_ERROR")


def test_unknown_api_paths_are_json_even_with_debug_on(api_client, debug_on):
    body = assert_error(api_client.get("/api/v1/no-such-thing"), 404, "NOT_FOUND")
    assert "DATABASE_URL" not in str(body)


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_posting_to_the_schema_and_docs_is_a_json_error(debug_on, path):
    response = APIClient().post(path, {})
    assert 400 <= response.status_code < 500
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    assert response.json()["error"]["code"]


def test_a_crash_under_api_is_a_json_500_that_reveals_nothing(api_key, debug_on, monkeypatch):
    from jobs.api import views

    def boom(self):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(views.JobListView, "get_queryset", boom)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.secret}")
    response = client.get("/api/v1/jobs")
    assert response.status_code == 500 and response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == "INTERNAL_ERROR" and body["error"]["details"]["request_id"]
    assert "secret detail" not in response.content.decode() and "DATABASE_URL" not in response.content.decode()
