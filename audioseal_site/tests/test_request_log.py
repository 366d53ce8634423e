"""The API request log: every request with a key, refused ones included, buffered in Redis (no database
write on the request's path), drained in bulk, shown per tenant, pruned per plan; and the request id in
every API error body."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts import request_log, services
from accounts.models import ApiRequest
from billing import services as billing_services
from jobs.upkeep import retention
from testing.factories import client_for, expired
from testing.uploads import upload

pytestmark = pytest.mark.django_db(transaction=True)

DETECT = "/api/v1/watermark/detect"


def test_requests_are_buffered_then_written_in_bulk(api_client, api_key, tenant, redis_clean):
    ok = api_client.get("/api/v1/jobs")
    refused = api_client.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert ApiRequest.objects.count() == 0 and request_log.pending() == 2  # nothing written on the request path
    assert request_log.drain() == 2 and request_log.pending() == 0
    first, second = ApiRequest.objects.order_by("created_at", "id")
    assert (first.method, first.path, first.route, first.status, first.error_code) == (
        "GET", "/api/v1/jobs", "/api/v1/jobs", 200, ""
    )
    assert first.request_id == ok["X-Request-ID"] and first.duration_ms > 0
    assert first.tenant_id == tenant.pk and first.api_key_id == api_key.api_key.pk
    assert first.key_prefix == api_key.api_key.prefix and api_key.secret not in str(first.__dict__)
    assert (second.status, second.error_code, second.request_id) == (404, "NOT_FOUND", refused["X-Request-ID"])
    assert second.route == "/api/v1/jobs/<uuid:pk>"


def test_refusals_of_a_known_key_are_logged(tenant, redis_clean):
    revoked = services.issue_api_key(tenant, "old")
    services.revoke_api_key(revoked.api_key)
    outdated = services.issue_api_key(tenant, "outdated", expires_at=expired())
    read_only = services.issue_api_key(tenant, "reader", read_only=True)
    client_for(revoked.secret).get("/api/v1/jobs")
    client_for(outdated.secret).get("/api/v1/jobs")
    client_for(read_only.secret).post(DETECT, {"file": upload("speech_16k_mono.wav")}, format="multipart")
    client_for(read_only.secret).post(DETECT, {"file": upload("speech_16k_mono.wav")}, format="multipart",
                                      HTTP_X_REQUEST_ID="support-ticket-4242")
    client_for("ask_nothere0_" + "x" * 40).get("/api/v1/jobs")  # no such key: no tenant to log it for
    request_log.drain()
    rows = {(r.key_prefix, r.status, r.error_code) for r in ApiRequest.objects.all()}
    assert rows == {
        (revoked.api_key.prefix, 401, "API_KEY_REVOKED"),
        (outdated.api_key.prefix, 401, "API_KEY_EXPIRED"),
        (read_only.api_key.prefix, 403, "KEY_SCOPE"),
    }
    assert ApiRequest.objects.filter(request_id="support-ticket-4242", method="POST").exists()


def test_requests_served_by_the_async_handler_are_logged(api_key, redis_clean):
    """Under ASGI (production) the line goes through the event loop's Redis client (``arecord``)."""
    client = AsyncClient(AUTHORIZATION=f"Bearer {api_key.secret}")
    response = async_to_sync(client.get)("/api/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404 and request_log.pending() == 1
    request_log.drain()
    row = ApiRequest.objects.get()
    assert (row.request_id, row.status, row.error_code) == (response.headers["X-Request-ID"], 404, "NOT_FOUND")


def test_every_api_error_body_carries_the_request_id(api_client, redis_clean):
    for response in (
        api_client.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000"),  # DRF's handler
        api_client.get("/api/v1/no-such-endpoint"),  # the JSON errors middleware
        client_for("ask_nothere0_" + "x" * 40).get("/api/v1/jobs"),  # authentication
        api_client.post(DETECT, {}, format="multipart"),  # validation
    ):
        assert response.status_code >= 400
        assert response.json()["error"]["request_id"] == response["X-Request-ID"], response.json()


def test_logging_adds_no_statement_to_a_submission(api_client, redis_clean):
    """The submission stays 5 statements and one commit (jobs/tests/test_submission_cost.py): the log
    line goes to Redis, not into the transaction."""
    api_client.post(DETECT, {"file": upload("speech_16k_mono.wav")}, format="multipart")
    before = request_log.pending()
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(DETECT, {"file": upload("speech_16k_mono.wav")}, format="multipart")
    assert response.status_code == 202
    sql = [q["sql"] for q in queries.captured_queries]
    assert not any("accounts_apirequest" in s for s in sql)
    assert len([s for s in sql if not s.strip().upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))]) <= 5
    assert request_log.pending() == before + 1


def test_a_redis_failure_never_fails_the_request(api_client, monkeypatch, redis_clean):
    def broken(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(request_log.core_redis, "client", broken)
    assert api_client.get("/api/v1/jobs").status_code == 200


def test_the_buffer_is_capped(api_client, settings, redis_clean):
    settings.REQUEST_LOG_BUFFER_MAX = 3
    for _ in range(5):
        api_client.get("/api/v1/usage")
    assert request_log.pending() == 3


def test_entries_of_a_deleted_tenant_are_dropped(make_tenant, redis_clean):
    gone = make_tenant("Gone")
    client_for(services.issue_api_key(gone, "k").secret).get("/api/v1/jobs")
    stays = make_tenant("Stays")
    client_for(services.issue_api_key(stays, "k").secret).get("/api/v1/jobs")
    billing_services_delete(gone)
    assert request_log.drain() == 1
    assert list(ApiRequest.objects.values_list("tenant_id", flat=True)) == [stays.pk]


def billing_services_delete(tenant) -> None:
    """Delete a tenant with its billing rows (the ledger protects itself; a test may go around it)."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_subscription WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("DELETE FROM accounts_apikey WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("DELETE FROM accounts_tenant WHERE id = %s", [tenant.pk])


def test_pruning_follows_each_plan(make_tenant, redis_clean):
    free, pro = make_tenant("Free co"), make_tenant("Pro co")
    billing_services.change_subscription(pro, plan="pro")
    now = timezone.now()
    for tenant in (free, pro):
        for days in (1, 10, 40):
            ApiRequest.objects.create(
                tenant=tenant, key_prefix="abcd1234", request_id=f"{tenant.slug}-{days}", method="GET",
                path="/api/v1/jobs", route="/api/v1/jobs", status=200, duration_ms=1.0,
                created_at=now - timedelta(days=days),
            )
    assert retention.prune_request_log(now) == 1 + 2  # pro keeps 30 days, free 7
    left = set(ApiRequest.objects.values_list("request_id", flat=True))
    assert left == {"free-co-1", "pro-co-1", "pro-co-10"}
    assert retention.periodic()["requests_pruned"] == 0


# --- the dashboard page ------------------------------------------------------------------------------------


def listed(response, html: str) -> bool:
    """Whether the page's table has the row of ``response`` (the search box may echo its id)."""
    return f'data-request-id="{response["X-Request-ID"]}"' in html


def test_the_page_lists_only_this_tenants_requests(people, redis_clean):
    ours = client_for(services.issue_api_key(people.tenant, "ours").secret).get("/api/v1/jobs")
    theirs_key = services.issue_api_key(people.other_tenant, "theirs")
    theirs = client_for(theirs_key.secret).get("/api/v1/jobs")
    page = people.client("member").get(reverse("dashboard:requests"))  # drains the buffer first
    assert page.status_code == 200
    html = page.content.decode()
    assert listed(ours, html) and not listed(theirs, html)
    assert theirs_key.api_key.prefix not in html
    # Naming the other tenant's key or request id finds nothing.
    by_key = people.client("owner").get(reverse("dashboard:requests"), {"key": str(theirs_key.api_key.pk)})
    assert not listed(theirs, by_key.content.decode())
    by_id = people.client("owner").get(reverse("dashboard:requests"), {"q": theirs["X-Request-ID"]})
    assert not listed(theirs, by_id.content.decode()) and "No requests match" in by_id.content.decode()


def test_the_page_filters_and_searches(people, redis_clean):
    client = client_for(services.issue_api_key(people.tenant, "ci").secret)
    ok = client.get("/api/v1/jobs")
    missing = client.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000")
    owner = people.client("owner")
    errors = owner.get(reverse("dashboard:requests"), {"status": "errors"}).content.decode()
    assert listed(missing, errors) and not listed(ok, errors)
    found = owner.get(reverse("dashboard:requests"), {"q": ok["X-Request-ID"]}).content.decode()
    assert listed(ok, found) and not listed(missing, found)
    by_code = owner.get(reverse("dashboard:requests"), {"q": "not_found"}).content.decode()
    assert listed(missing, by_code) and not listed(ok, by_code)
    assert owner.get(reverse("dashboard:requests"), {"key": "not-a-key"}).status_code == 200  # ignored


def test_anonymous_visitors_are_sent_to_log_in(people):
    response = people.client("anonymous").get(reverse("dashboard:requests"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("dashboard:login"))


def test_staff_find_any_tenants_request_by_its_id_in_the_admin(people, redis_clean):
    key = services.issue_api_key(people.other_tenant, "k")
    response = client_for(key.secret).get("/api/v1/jobs/00000000-0000-0000-0000-000000000000")
    request_id = response.json()["error"]["request_id"]
    page = people.client("staff").get(reverse("admin:accounts_apirequest_changelist"), {"q": request_id})
    assert page.status_code == 200
    assert request_id in page.content.decode() and "Globex" in page.content.decode()


def test_the_schema_documents_the_request_id_and_key_scope(client):
    schema = client.get("/api/schema/?format=json").json()
    assert "request_id" in schema["components"]["schemas"]["ErrorBody"]["properties"]
    assert "KEY_SCOPE" in schema["paths"]["/api/v1/watermark/detect"]["post"]["responses"]["403"]["description"]
    assert "403" not in schema["paths"]["/api/v1/jobs"]["get"]["responses"]  # reads are never scope-refused
