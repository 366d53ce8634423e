"""``?wait`` under ASGI (Django's ``AsyncClient``: the async front of ``jobs.api.waiting``), the same contract as
the sync path, and the wait caps (``429 TOO_MANY_WAITS``) on both paths."""

from __future__ import annotations

import asyncio
import threading
from unittest import mock

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from django.test import AsyncClient

from accounts import services as accounts
from core.redis import client as redis_client
from jobs import services
from jobs.api import waiting
from jobs.models import Job
from testing.assertions import assert_error, wait_until
from testing.uploads import FIXTURES, upload

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = "/api/v1/watermark/embed"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def _async_client(api_key) -> AsyncClient:
    return AsyncClient(AUTHORIZATION=f"Bearer {api_key.secret}")  # an ASGI header name, sent on every request


def _queued_job(api_client) -> dict:
    response = api_client.post(EMBED, {"file": upload("speech_16k_mono.wav")}, format="multipart")
    assert response.status_code == 202
    return response.json()


def _held(api_key) -> int:
    return redis_client().zcard(f"audioseal:waits:key:{api_key.api_key.pk}")


def _cancel_later(job_id: str, when) -> threading.Thread:
    """Cancel the job (a committed status change, published to waiters) once ``when()`` holds."""

    def run() -> None:
        try:
            wait_until(when, timeout=30, what="the wait to be held")
            services.cancel(Job.objects.get(pk=job_id))
        finally:
            connection.close()  # back to the pool: a connection left in a finished thread stays open

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_asgi_wait_answers_when_the_job_becomes_final_same_json_and_headers(
    api_client, api_key, redis_clean, caplog
):
    job = _queued_job(api_client)
    canceller = _cancel_later(job["id"], lambda: _held(api_key) == 1)
    with caplog.at_level("INFO", logger="audioseal.request"):
        response = async_to_sync(_async_client(api_key).get)(f"/api/v1/jobs/{job['id']}?wait=30")
    canceller.join(5)
    (access,) = [r for r in caplog.records if r.name == "audioseal.request" and r.route.endswith("?wait")]
    assert access.status == 200 and access.request_id == response.headers["X-Request-ID"]
    assert access.tenant_id == str(api_key.api_key.tenant_id)  # the log context crossed the async wait
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "canceled" and body["id"] == job["id"]
    sync = api_client.get(f"/api/v1/jobs/{job['id']}")
    assert body == sync.json()  # the same JSON as the sync path
    for name in (*RATE_HEADERS, "X-Request-ID"):
        assert response.headers.get(name) and sync.headers.get(name), name
    assert response.headers["Content-Type"] == sync.headers["Content-Type"]
    assert _held(api_key) == 0  # the slot went back


def test_asgi_wait_gives_up_after_n_seconds(api_client, api_key, redis_clean):
    job = _queued_job(api_client)
    response = async_to_sync(_async_client(api_key).get)(f"/api/v1/jobs/{job['id']}?wait=0.5")
    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert _held(api_key) == 0


def test_asgi_create_with_wait_keeps_status_and_replay_header(api_client, api_key, redis_clean):
    client = _async_client(api_key)
    headers = {"Idempotency-Key": "wait-create-1"}
    with open(FIXTURES / "speech_16k_mono.wav", "rb") as fh:
        first = async_to_sync(client.post)(f"{EMBED}?wait=0.5", {"file": fh}, headers=headers)
    assert first.status_code == 202 and first.json()["status"] == "queued", first.content
    assert "Idempotent-Replayed" not in first.headers
    with open(FIXTURES / "speech_16k_mono.wav", "rb") as fh:
        again = async_to_sync(client.post)(f"{EMBED}?wait=0.5", {"file": fh}, headers=headers)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    for name in RATE_HEADERS:
        assert first.headers.get(name), name
    assert _held(api_key) == 0


def test_asgi_errors_before_the_wait_are_unchanged(api_client, api_key, other_tenant, redis_clean):
    job = _queued_job(api_client)
    client = _async_client(api_key)
    assert_error(async_to_sync(client.get)(f"/api/v1/jobs/{job['id']}?wait=31"), 400, "VALIDATION_ERROR")
    anonymous = async_to_sync(AsyncClient().get)(f"/api/v1/jobs/{job['id']}?wait=5")
    assert_error(anonymous, 401, "UNAUTHENTICATED")
    foreign = _async_client(accounts.issue_api_key(other_tenant, "other"))
    assert_error(async_to_sync(foreign.get)(f"/api/v1/jobs/{job['id']}?wait=5"), 404, "NOT_FOUND")
    assert _held(api_key) == 0


def test_too_many_waits_per_key_is_429_with_retry_after(api_client, api_key, redis_clean, settings):
    settings.MAX_WAITS_PER_KEY = 2
    job = _queued_job(api_client)
    client = _async_client(api_key)
    url = f"/api/v1/jobs/{job['id']}?wait=30"

    async def scenario():
        held = [asyncio.create_task(client.get(url)) for _ in range(2)]
        while await sync_to_async(_held, thread_sensitive=False)(api_key) < 2:
            await asyncio.sleep(0.02)
        refused = await client.get(url)
        no_wait = await client.get(f"/api/v1/jobs/{job['id']}")  # reading without waiting is not capped
        await sync_to_async(services.cancel)(await sync_to_async(Job.objects.get)(pk=job["id"]))
        return refused, no_wait, await asyncio.gather(*held)

    refused, no_wait, held = async_to_sync(scenario)()
    body = assert_error(refused, 429, "TOO_MANY_WAITS")
    assert body["error"]["details"]["scope"] == "api_key" and body["error"]["details"]["limit"] == 2
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    assert refused.headers.get("X-RateLimit-Remaining")
    assert no_wait.status_code == 200
    assert [r.json()["status"] for r in held] == ["canceled", "canceled"]
    assert _held(api_key) == 0


def test_too_many_waits_on_create_creates_no_job_sync_path_too(api_client, api_key, redis_clean, settings):
    settings.MAX_WAITS_PER_TENANT = 1
    job = _queued_job(api_client)
    slot = waiting.acquire(_request_for(api_key), 30)  # another request of the tenant holds the one slot
    try:
        before = Job.objects.count()
        response = api_client.post(f"{EMBED}?wait=5", {"file": upload("speech_16k_mono.wav")}, format="multipart")
        body = assert_error(response, 429, "TOO_MANY_WAITS")
        assert body["error"]["details"]["scope"] == "tenant" and response.headers["Retry-After"]
        assert Job.objects.count() == before  # refused before submitting
        assert_error(api_client.get(f"/api/v1/jobs/{job['id']}?wait=5"), 429, "TOO_MANY_WAITS")
        assert api_client.get(f"/api/v1/jobs/{job['id']}?wait=0").status_code == 200
    finally:
        slot.release()
    assert api_client.get(f"/api/v1/jobs/{job['id']}?wait=0.2").json()["status"] == "queued"


def _request_for(api_key):
    from rest_framework.test import APIRequestFactory

    request = APIRequestFactory().get("/")
    request.auth, request.user = api_key.api_key, None
    return request


def test_a_slot_left_by_a_dead_process_expires(api_key, redis_clean, settings):
    settings.MAX_WAITS_PER_KEY = 1
    request = _request_for(api_key)
    leaked = waiting.acquire(request, 30)  # never released: its process "died"
    assert leaked is not None
    key = leaked.keys[0]
    assert 0 < redis_client().pttl(key) <= (30 + settings.WAIT_SLOT_GRACE_SECONDS) * 1000
    with pytest.raises(waiting.ServiceError) as refused:
        waiting.acquire(request, 30)
    assert refused.value.code == "TOO_MANY_WAITS"
    later = waiting.time.time() + 30 + settings.WAIT_SLOT_GRACE_SECONDS + 1
    with mock.patch.object(waiting.time, "time", return_value=later):
        assert waiting.acquire(request, 30) is not None  # the dead process's slot has expired
