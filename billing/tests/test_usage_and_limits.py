"""``GET /api/v1/usage``, plan limits on uploads, grants, overrides, plans seeding and the scheduler."""

from __future__ import annotations

from datetime import UTC, datetime

import django_rq
import pytest
from django.core.management import call_command

from billing import periodic, selectors, services
from billing.models import Plan, Subscription
from jobs.models import Job
from testing.assertions import assert_error
from testing.uploads import stored_files, tone_wav_bytes, upload

pytestmark = pytest.mark.django_db

EMBED = "/api/v1/watermark/embed"


def _post(client, seconds: float = 1.0, name: str = "a.wav"):
    return client.post(EMBED, {"file": upload(name, content=tone_wav_bytes(seconds))}, format="multipart")


def test_new_tenants_start_on_the_seeded_free_plan(tenant):
    assert set(Plan.objects.values_list("code", flat=True)) >= {"free", "pro", "enterprise"}
    sub = Subscription.objects.get(tenant=tenant)
    assert sub.plan.code == "free" and sub.status == "active"
    assert sub.current_period_start.day == 1 and sub.current_period_end > sub.current_period_start


def test_plans_are_reseeded_when_missing(make_tenant):
    Plan.objects.all().delete()
    tenant = make_tenant("Fresh")
    assert selectors.subscription_for(tenant).plan.code == "free"
    assert Plan.objects.count() == 3


def test_usage_reports_the_period_minutes_per_kind_and_limits(
    tenant, api_client, succeeded_job, reserved_job, other_client, redis_clean
):
    succeeded_job(tenant, 90.0, "watermark_embed")
    succeeded_job(tenant, 30.0, "emotion")
    succeeded_job(tenant, 29.5, "emotion")
    reserved_job(tenant, 12.0)
    services.grant_minutes(tenant, 15, reason="support")

    body = api_client.get("/api/v1/usage").json()
    assert body["plan"] == {"code": "free", "name": "Free"}
    assert body["minutes"] == {
        "included": 75.0, "granted": 15.0, "used": 2.5, "reserved": 0.2, "remaining": 72.3, "overage": 0.0,
    }
    assert body["seconds"] == {"included": 4500, "used": 150, "reserved": 12}
    assert body["by_kind"] == [
        {"kind": "emotion", "seconds": 60, "minutes": 1.0, "jobs": 2},
        {"kind": "watermark_embed", "seconds": 90, "minutes": 1.5, "jobs": 1},
    ]
    assert body["active_jobs"] == 1
    assert body["limits"]["max_concurrent_jobs"] == 5 and body["limits"]["rate_limits"]["read"] == 300
    assert body["subscription"]["status"] == "active" and body["subscription"]["can_submit"] is True
    start = datetime.fromisoformat(body["period"]["start"].replace("Z", "+00:00"))
    assert start == datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)

    # Another tenant sees only its own usage.
    theirs = other_client.get("/api/v1/usage").json()
    assert theirs["seconds"] == {"included": 3600, "used": 0, "reserved": 0} and theirs["by_kind"] == []


def test_grants_make_room(tenant, api_client, on_plan, redis_clean):
    on_plan(tenant, included_minutes=0)
    body = assert_error(_post(api_client), 402, "QUOTA_EXCEEDED")
    assert body["error"]["details"]["limit_seconds"] == 0
    services.grant_minutes(tenant, 1)
    assert _post(api_client).status_code == 202


def test_overage_plans_are_not_refused(tenant, api_client, on_plan, redis_clean):
    on_plan(tenant, included_minutes=0, overage_allowed=True)
    assert _post(api_client).status_code == 202


def test_plan_file_size_limit_replaces_the_global_one(tenant, api_client, on_plan, _isolated_media, settings):
    on_plan(tenant, max_file_bytes=10_000)
    body = assert_error(_post(api_client, 1.0), 413, "FILE_TOO_LARGE")
    assert body["error"]["details"]["limit_bytes"] == 10_000
    # The setting stays the ceiling: a plan cannot go above it.
    on_plan(tenant, max_file_bytes=10**12)
    settings.MAX_UPLOAD_BYTES = 20_000
    body = assert_error(_post(api_client, 1.0), 413, "FILE_TOO_LARGE")
    assert body["error"]["details"]["limit_bytes"] == 20_000
    assert Job.objects.count() == 0 and stored_files(_isolated_media) == []


def test_plan_duration_limit_replaces_the_global_one(tenant, api_client, on_plan, _isolated_media, settings):
    on_plan(tenant, max_audio_seconds=2.0)
    assert_error(_post(api_client, 3.5), 422, "AUDIO_TOO_LONG")
    settings.MAX_AUDIO_SECONDS = 1.0
    on_plan(tenant, max_audio_seconds=3600)
    assert_error(_post(api_client, 2.5), 422, "AUDIO_TOO_LONG")  # (the probe allows 0.5 s of slack)
    assert Job.objects.count() == 0 and stored_files(_isolated_media) == []


def test_seeded_video_limits_overrides_and_ceilings(tenant, api_client, settings):
    """Beat-sync picture limits: Free 1080p, Pro and Enterprise 4K, 60 fps, pixel rate = the product."""
    plans = {p.code: p for p in Plan.objects.filter(code__in=["free", "pro", "enterprise"])}
    assert (plans["free"].max_video_pixels, plans["free"].max_video_fps) == (1920 * 1080, 60)
    assert plans["free"].max_video_pixel_rate == 1920 * 1080 * 60
    for code in ("pro", "enterprise"):
        assert (plans[code].max_video_pixels, plans[code].max_video_pixel_rate) == (3840 * 2160, 3840 * 2160 * 60)
    limits = api_client.get("/api/v1/usage").json()["limits"]
    assert (limits["max_video_pixels"], limits["max_video_fps"]) == (1920 * 1080, 60)
    assert limits["max_video_pixel_rate"] == 1920 * 1080 * 60
    services.change_subscription(tenant, overrides={"max_video_pixels": 3840 * 2160, "max_video_fps": 240})
    settings.MAX_VIDEO_FPS = 120
    limits = selectors.limits_for(tenant)
    assert (limits.max_video_pixels, limits.max_video_fps) == (3840 * 2160, 120)  # the setting caps the override


def test_staff_overrides_beat_the_plan(tenant, api_client, redis_clean):
    Subscription.objects.filter(tenant=tenant).update(
        max_concurrent_jobs_override=1, rate_limits_override={"read": 7}
    )
    assert _post(api_client).status_code == 202
    body = assert_error(_post(api_client), 429, "CONCURRENCY_LIMIT")
    assert body["error"]["details"] == {"limit": 1, "current": 1, "plan": "free"}
    assert api_client.get("/api/v1/usage")["X-RateLimit-Limit"] == "7"


def test_concurrency_counts_the_tenants_open_reservations(tenant, on_plan, reserved_job):
    """Queued + running jobs are billing's own open reservations: the final transition frees the slot."""
    from core.errors import ServiceError
    from jobs import services as jobs_services

    on_plan(tenant, max_concurrent_jobs=1)
    first = reserved_job(tenant, 1.0)
    with pytest.raises(ServiceError) as refused:
        reserved_job(tenant, 1.0)
    assert refused.value.code == "CONCURRENCY_LIMIT" and refused.value.details["current"] == 1
    assert selectors.usage_summary(tenant)["active_jobs"] == 1
    assert jobs_services.cancel(first)
    assert selectors.usage_summary(tenant)["active_jobs"] == 0
    reserved_job(tenant, 1.0)
    assert Job.objects.filter(tenant=tenant).count() == 2


def test_suspended_tenant_reads_but_cannot_submit(tenant, api_client, _isolated_media, redis_clean):
    tenant.is_active = False
    tenant.save()
    assert_error(_post(api_client), 403, "TENANT_SUSPENDED")
    assert api_client.get("/api/v1/jobs").status_code == 200
    assert Job.objects.count() == 0 and stored_files(_isolated_media) == []


def test_period_rolls_forward_month_by_month(tenant):
    sub = selectors.subscription_for(tenant)
    sub.current_period_start = datetime(2026, 1, 31, tzinfo=UTC)
    sub.current_period_end = datetime(2026, 2, 28, tzinfo=UTC)
    assert selectors.period_bounds(sub, datetime(2026, 2, 10, tzinfo=UTC)) == (
        datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 2, 28, tzinfo=UTC)
    )
    assert selectors.period_bounds(sub, datetime(2026, 4, 2, tzinfo=UTC)) == (
        datetime(2026, 3, 31, tzinfo=UTC), datetime(2026, 4, 30, tzinfo=UTC)
    )


@pytest.mark.django_db(transaction=True)
def test_scheduler_registers_the_stripe_sync_and_a_worker_runs_it(run_worker, settings):
    sync = "billing.stripe_sync.sync_meter_events"
    scheduler = periodic.build_scheduler()
    [job] = [job for job in scheduler.get_jobs() if job.func_name == sync]
    assert job.queue_name == "maintenance" and job.interval == settings.STRIPE_SYNC_INTERVAL_SECONDS

    settings.PERIODIC_TASKS = [task for task in settings.PERIODIC_TASKS if task["func"] == sync]
    call_command("run_scheduler", "--once")
    queue = django_rq.get_queue("maintenance")
    [rq_id] = queue.job_ids
    run_worker(["maintenance"])
    assert queue.fetch_job(rq_id).return_value() == {"enabled": False, "pending": 0}


@pytest.mark.django_db(transaction=True)
def test_run_scheduler_process_enqueues_the_periodic_tasks(redis_clean, _isolated_media):
    """The real ``manage.py run_scheduler`` loop: interval tasks are enqueued as soon as it starts."""
    import subprocess
    import sys
    import time

    from django.conf import settings

    from testing.workers import worker_env

    queue = django_rq.get_queue("maintenance")
    proc = subprocess.Popen(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "run_scheduler"],
        env=worker_env(_isolated_media), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            names = {queue.fetch_job(i).func_name for i in queue.job_ids}
            if "billing.stripe_sync.sync_meter_events" in names:
                break
            time.sleep(0.2)
        assert "billing.stripe_sync.sync_meter_events" in {queue.fetch_job(i).func_name for i in queue.job_ids}
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "stripe-meter-sync" in output
