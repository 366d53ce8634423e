"""Rate limits per API key and endpoint family, from the plan, counted in Redis."""

from __future__ import annotations

import pytest

from accounts import services as accounts_services
from testing.assertions import assert_error
from testing.factories import client_for

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/jobs"


@pytest.fixture
def limited(tenant, on_plan, redis_clean):
    return on_plan(tenant, rate_limits={"read": 5, "watermark": 2, "default": 50})


def test_the_n_plus_first_request_is_refused_with_retry_after(limited, api_client, tenant):
    for i in range(5):
        response = api_client.get(JOBS)
        assert response.status_code == 200
        assert response["X-RateLimit-Limit"] == "5"
        assert response["X-RateLimit-Remaining"] == str(4 - i)
        assert 0 < int(response["X-RateLimit-Reset"]) <= 60

    refused = api_client.get(JOBS)
    body = assert_error(refused, 429, "RATE_LIMITED")
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused["X-RateLimit-Limit"] == "5" and refused["X-RateLimit-Remaining"] == "0"
    assert body["error"]["details"]["limit"] == 5 and body["error"]["details"]["family"] == "read"
    assert "5 requests per minute" in body["error"]["message"]
    # Other reading endpoints share the "read" family and are refused too.
    assert_error(api_client.get("/api/v1/usage"), 429, "RATE_LIMITED")

    # Another key of the same tenant has its own budget.
    other = client_for(accounts_services.issue_api_key(tenant, "second").secret)
    response = other.get(JOBS)
    assert response.status_code == 200 and response["X-RateLimit-Remaining"] == "4"


def test_families_are_counted_separately(limited, api_client):
    for _ in range(2):
        response = api_client.post("/api/v1/watermark/embed", {}, format="multipart")
        assert_error(response, 400, "VALIDATION_ERROR")  # counted even though invalid
        assert response["X-RateLimit-Limit"] == "2"
    assert_error(api_client.post("/api/v1/watermark/embed", {}, format="multipart"), 429, "RATE_LIMITED")
    response = api_client.get(JOBS)
    assert response.status_code == 200 and response["X-RateLimit-Remaining"] == "4"


def test_limits_follow_the_plan(tenant, on_plan, api_client, redis_clean):
    on_plan(tenant, rate_limits={"default": 1})  # "read" not listed: the default applies
    assert api_client.get(JOBS)["X-RateLimit-Limit"] == "1"
    assert_error(api_client.get(JOBS), 429, "RATE_LIMITED")


def test_unlimited_family_has_no_headers(tenant, on_plan, api_client, redis_clean):
    on_plan(tenant, rate_limits={"watermark": 10})  # no "read", no "default": unlimited
    response = api_client.get(JOBS)
    assert response.status_code == 200 and "X-RateLimit-Limit" not in response


def test_unauthenticated_requests_are_not_counted(redis_clean):
    from rest_framework.test import APIClient

    assert_error(APIClient().get(JOBS), 401, "UNAUTHENTICATED")
    assert not redis_clean.keys("audioseal:ratelimit:*")
