"""Quota reservation under concurrency: 40 parallel submissions through the API, each thread with its own
PostgreSQL connection, against a tenant with room for exactly 10."""

from __future__ import annotations

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections

from billing.models import PeriodUsage, Reservation, ReservationState
from jobs.models import Job
from testing.factories import client_for
from testing.uploads import stored_files, tone_wav_bytes

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = "/api/v1/watermark/embed"
PARALLEL = 40


def _submit_in_parallel(secret: str, content: bytes, n: int = PARALLEL) -> list[tuple[int, dict]]:
    barrier = threading.Barrier(n)
    results: list[tuple[int, dict] | None] = [None] * n

    def submit(i: int) -> None:
        try:
            client = client_for(secret)
            barrier.wait()
            file = SimpleUploadedFile(f"take{i}.wav", content)
            response = client.post(EMBED, {"file": file}, format="multipart")
            results[i] = (response.status_code, response.json())
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = (-1, {"exception": repr(exc)})
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(r is not None for r in results), results
    return results  # type: ignore[return-value]


def _assert_exactly_ten(results, refused_status: int, refused_code: str) -> list[dict]:
    accepted = [body for status, body in results if status == 202]
    refused = [(status, body) for status, body in results if status != 202]
    assert len(accepted) == 10, [r for r in results if r[0] != refused_status][:3]
    assert len(refused) == PARALLEL - 10
    for status, body in refused:
        assert status == refused_status, body
        assert body["error"]["code"] == refused_code, body
    return [body for _, body in refused]


def test_minutes_room_for_exactly_ten(tenant, api_key, on_plan, redis_clean, _isolated_media):
    # 1 included minute, 6-second files: 10 fit, the 11th does not.
    on_plan(tenant, included_minutes=1, overage_allowed=False, max_concurrent_jobs=1000)
    results = _submit_in_parallel(api_key.secret, tone_wav_bytes(6.0))

    refused = _assert_exactly_ten(results, 402, "QUOTA_EXCEEDED")
    details = refused[0]["error"]["details"]
    assert details["limit_seconds"] == 60 and details["requested_seconds"] == 6
    assert details["used_seconds"] + details["reserved_seconds"] == 60
    assert "1.0" in refused[0]["error"]["message"]  # the limit, in minutes

    usage = PeriodUsage.objects.get(tenant=tenant)
    assert usage.reserved_seconds == 60 and usage.used_seconds == 0
    reservations = Reservation.objects.filter(tenant=tenant)
    assert reservations.count() == 10 and all(r.seconds == 6 for r in reservations)
    assert {r.state for r in reservations} == {ReservationState.RESERVED}
    assert Job.objects.filter(tenant=tenant).count() == 10
    assert len(stored_files(_isolated_media)) == 10  # refused uploads left no file behind


def test_concurrency_room_for_exactly_ten(tenant, api_key, on_plan, redis_clean, _isolated_media):
    on_plan(tenant, included_minutes=10_000, max_concurrent_jobs=10)
    results = _submit_in_parallel(api_key.secret, tone_wav_bytes(2.0))

    refused = _assert_exactly_ten(results, 429, "CONCURRENCY_LIMIT")
    assert refused[0]["error"]["details"]["limit"] == 10
    assert refused[0]["error"]["details"]["current"] == 10
    assert "10" in refused[0]["error"]["message"]

    assert PeriodUsage.objects.get(tenant=tenant).reserved_seconds == 20
    assert Job.objects.filter(tenant=tenant).count() == 10
    assert len(stored_files(_isolated_media)) == 10
