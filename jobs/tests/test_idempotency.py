"""``Idempotency-Key`` on job creation: one job and one reservation per key, conflicts refused."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from jobs.models import Job
from testing.assertions import assert_error
from testing.uploads import upload
from testing.workers import open_reservations, reservations_for

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = "/api/v1/watermark/embed"
DETECT = "/api/v1/watermark/detect"


def post(client, key: str | None, *, url: str = EMBED, name: str = "speech_16k_mono.wav", **fields):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(url, {"file": upload(name), **fields}, format="multipart", **headers)


def test_same_key_same_request_returns_the_original_job(api_client, redis_clean):
    key = str(uuid.uuid4())
    first = post(api_client, key, message="1A2B")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first
    again = post(api_client, key, message="1A2B")
    assert again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    job = Job.objects.get()
    assert job.idempotency_key == key and len(job.request_fingerprint) == 64
    assert len(reservations_for(job)) == 1 and open_reservations() == 1


def test_random_message_is_not_regenerated_on_replay(api_client, redis_clean):
    """The fingerprint covers the request, not the derived params (a random message is drawn once)."""
    key = "retry-me"
    first = post(api_client, key).json()
    assert post(api_client, key).json()["params"] == first["params"]


@pytest.mark.parametrize(
    "change",
    [
        {"fields": {"message": "FFFF"}},
        {"name": "speech2_16k_mono.wav"},
        {"url": DETECT},
        {"fields": {"message": "1A2B", "output_format": "flac"}},
        {"fields": {"message": "1A2B", "callback_url": "http://93.184.216.34/hook"}},
    ],
    ids=["param", "file-bytes", "endpoint", "extra-field", "callback"],
)
def test_same_key_different_request_conflicts(api_client, redis_clean, change):
    key = "k-" + uuid.uuid4().hex
    original = post(api_client, key, message="1A2B").json()
    response = post(
        api_client, key, url=change.get("url", EMBED), name=change.get("name", "speech_16k_mono.wav"),
        **change.get("fields", {"message": "1A2B"}),
    )
    body = assert_error(response, 409, "IDEMPOTENCY_CONFLICT")
    assert body["error"]["details"]["job_id"] == original["id"]
    assert Job.objects.count() == 1 and open_reservations() == 1


def test_same_bytes_under_another_name_conflicts(api_client, redis_clean):
    key = "renamed"
    assert post(api_client, key).status_code == 202
    data = {"file": upload("speech_16k_mono.wav", as_name="other.wav")}
    response = api_client.post(EMBED, data, format="multipart", HTTP_IDEMPOTENCY_KEY=key)
    assert_error(response, 409, "IDEMPOTENCY_CONFLICT")


def test_keys_are_scoped_to_the_tenant(api_client, other_client, redis_clean):
    mine = post(api_client, "shared-key", message="1A2B").json()
    theirs = post(other_client, "shared-key", message="1A2B").json()
    assert mine["id"] != theirs["id"]
    assert Job.objects.count() == 2


def test_without_a_key_every_post_is_a_new_job(api_client, redis_clean):
    post(api_client, None, message="1A2B")
    post(api_client, None, message="1A2B")
    assert Job.objects.count() == 2


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, "bad key", "naïve"])
def test_malformed_key_is_refused(api_client, redis_clean, key):
    assert_error(post(api_client, key), 400, "INVALID_IDEMPOTENCY_KEY")
    assert not Job.objects.exists()


def test_a_refused_request_does_not_burn_the_key(api_client, redis_clean):
    key = "first-try-was-bad"
    response = api_client.post(
        EMBED, {"file": upload("not_audio.wav")}, format="multipart", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 415
    assert post(api_client, key).status_code == 202
    assert Job.objects.count() == 1


def test_five_concurrent_identical_posts_make_one_job_and_one_reservation(api_key, redis_clean):
    """Real concurrency: five threads, five database connections, one unique constraint."""
    from testing.factories import client_for

    key = str(uuid.uuid4())
    barrier = threading.Barrier(5)

    def one(_):
        client = client_for(api_key.secret)
        try:
            barrier.wait(timeout=30)
            response = post(client, key, message="BEEF")
            return response.status_code, response.json()["id"], response.get("Idempotent-Replayed")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(one, range(5)))

    assert {status for status, _, _ in results} == {202}, results
    assert len({job_id for _, job_id, _ in results}) == 1, results
    assert sorted(replayed or "" for _, _, replayed in results) == ["", "true", "true", "true", "true"]
    job = Job.objects.get()
    assert len(reservations_for(job)) == 1 and open_reservations() == 1
