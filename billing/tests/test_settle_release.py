"""Settle and release: a succeeded job produces one UsageEvent; failed or canceled ones produce none and free
their reservation; running the settle step again changes nothing."""

from __future__ import annotations

import pytest

from billing import selectors as billing_selectors
from billing import services
from billing.models import MeterSync, PeriodUsage, Reservation, ReservationState, SyncState, UsageEvent
from jobs import services as jobs_services
from jobs.models import Job, JobStatus
from jobs.services import billable_job
from testing.assertions import assert_error
from testing.uploads import tone_wav_bytes, upload

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = "/api/v1/watermark/embed"


def _usage(tenant) -> tuple[int, int]:
    usage = PeriodUsage.objects.get(tenant=tenant)
    return usage.reserved_seconds, usage.used_seconds


def _submit(client, seconds: float) -> str:
    response = client.post(
        EMBED, {"file": upload("x.wav", content=tone_wav_bytes(seconds))}, format="multipart"
    )
    assert response.status_code == 202, response.json()
    return response.json()["id"]


def test_submission_reserves_rounded_up_seconds(api_client, tenant, redis_clean):
    job_id = _submit(api_client, 2.5)
    reservation = Reservation.objects.get(job_id=job_id)
    assert reservation.seconds == 3 and reservation.state == ReservationState.RESERVED
    assert _usage(tenant) == (3, 0)


def test_succeeded_job_is_settled_into_one_usage_event(api_client, tenant, redis_clean):
    job_id = _submit(api_client, 2.5)
    job = jobs_services.start(job_id, "test-worker")
    assert jobs_services.succeed(job, result={})

    event = UsageEvent.objects.get()
    assert (event.job_id, event.tenant_id, event.kind, event.quantity) == (job.pk, tenant.pk, job.kind, 3)
    assert event.metric == "audio_seconds"
    assert MeterSync.objects.get(event=event).state == SyncState.PENDING
    assert Reservation.objects.get(job_id=job_id).state == ReservationState.SETTLED
    assert _usage(tenant) == (0, 3)

    # The settle step again (a retried transition, a reconciler, a second hook call): nothing changes.
    assert services.settle(billable_job(job)) is None
    services.on_job_final(billable_job(job))
    assert jobs_services.succeed(job, result={}) is False
    assert UsageEvent.objects.count() == 1 and MeterSync.objects.count() == 1
    assert _usage(tenant) == (0, 3)


def test_usage_billed_is_what_the_job_consumed(tenant, reserved_job):
    job = reserved_job(tenant, seconds=10.0)
    job = jobs_services.start(job.pk, "test-worker")
    assert jobs_services.succeed(job, result={}, audio_seconds=4.2)  # e.g. the handler trimmed silence
    assert UsageEvent.objects.get().quantity == 5
    assert _usage(tenant) == (0, 5)


@pytest.mark.parametrize("ending", ["fail_running", "fail_queued", "cancel_queued", "cancel_running"])
def test_failed_or_canceled_job_is_not_billed_and_frees_its_reservation(tenant, reserved_job, ending):
    job = reserved_job(tenant, seconds=7.0)
    other = reserved_job(tenant, seconds=2.0)  # stays reserved: releasing one job must not touch another
    assert _usage(tenant) == (9, 0)
    if ending.endswith("running"):
        job = jobs_services.start(job.pk, "test-worker")
    if ending.startswith("fail"):
        assert jobs_services.fail(job, "PROCESSING_FAILED", "boom")
    else:
        assert jobs_services.cancel(job)

    assert UsageEvent.objects.count() == 0
    assert Reservation.objects.get(job_id=job.pk).state == ReservationState.RELEASED
    assert Reservation.objects.get(job_id=other.pk).state == ReservationState.RESERVED
    assert _usage(tenant) == (2, 0)
    # Releasing again, or a late settle of the released job, changes nothing.
    assert services.release(billable_job(job)) is False
    assert services.settle(billable_job(job)) is None
    assert UsageEvent.objects.count() == 0 and _usage(tenant) == (2, 0)


def test_released_minutes_can_be_used_again(api_client, tenant, on_plan, redis_clean):
    on_plan(tenant, included_minutes=1)
    first = _submit(api_client, 40.0)
    assert_error(
        api_client.post(EMBED, {"file": upload("y.wav", content=tone_wav_bytes(30.0))}, format="multipart"),
        402, "QUOTA_EXCEEDED",
    )
    jobs_services.cancel(Job.objects.get(pk=first))
    _submit(api_client, 30.0)
    assert _usage(tenant) == (30, 0)


def test_job_without_reservation_is_still_billed_once(tenant):
    """Jobs created before billing existed (no reservation) are billed once when they succeed."""
    job = Job.objects.create(tenant=tenant, kind="emotion", audio_seconds=3.2, status=JobStatus.RUNNING)
    assert jobs_services.succeed(job, result={})
    assert services.settle(billable_job(job)) is None
    assert UsageEvent.objects.get().quantity == 4
    assert PeriodUsage.objects.get(tenant=tenant).used_seconds == 4


@pytest.mark.slow
def test_end_to_end_through_the_real_worker(api_client, tenant, run_worker):
    """The real worker runs the job with the demo watermark model and the final transition settles it."""
    response = api_client.post(
        "/api/v1/watermark/detect", {"file": upload("speech_16k_mono.wav")}, format="multipart"
    )
    assert response.status_code == 202, response.json()
    duration = response.json()["input"]["duration_seconds"]
    run_worker(["watermark"])
    job = api_client.get(f"/api/v1/jobs/{response.json()['id']}").json()
    assert job["status"] == "succeeded", job
    event = UsageEvent.objects.get()
    assert event.quantity == billing_selectors.billable_seconds(duration) and event.kind == "watermark_detect"
    assert _usage(tenant) == (0, event.quantity)


def test_settle_many_bills_each_job_like_settle_in_constant_statements(api_client, tenant, redis_clean):
    """The worker pipeline settles a batch at once: the same events, meter rows and usage as one ``settle``
    per job, in statements that do not grow with the batch, and idempotent like ``settle``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def running(seconds: list[float]) -> list:
        jobs = [jobs_services.start(_submit(api_client, s), "test-worker") for s in seconds]
        for job in jobs:
            job.status = JobStatus.SUCCEEDED
        return [billable_job(job) for job in jobs]

    one, three = running([1.2]), running([2.5, 0.4, 3.0])
    with CaptureQueriesContext(connection) as small:
        assert services.settle_many(one) == 1
    with CaptureQueriesContext(connection) as large:
        assert services.settle_many(three) == 3
    assert len(large) == len(small)
    assert sorted(UsageEvent.objects.values_list("quantity", flat=True)) == [1, 2, 3, 3]
    assert MeterSync.objects.filter(state=SyncState.PENDING).count() == 4
    assert set(Reservation.objects.values_list("state", flat=True)) == {ReservationState.SETTLED}
    assert _usage(tenant) == (0, 9)
    assert services.settle_many(one + three) == 0  # again: nothing changes
    assert UsageEvent.objects.count() == 4 and _usage(tenant) == (0, 9)
