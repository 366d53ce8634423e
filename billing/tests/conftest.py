"""Fixtures for the billing tests: plans made to measure, jobs that hold reservations, a fake Stripe."""

from __future__ import annotations

import itertools

import pytest
from django.db import transaction

from billing import services
from billing.models import Plan
from testing.fake_stripe import FakeStripe, serve

_codes = itertools.count(1)


@pytest.fixture
def make_plan(db):
    """A plan with generous defaults; override what the test is about."""

    def make(**overrides) -> Plan:
        values = {
            "code": f"test-{next(_codes)}",
            "name": "Test plan",
            "included_minutes": 1000,
            "overage_allowed": False,
            "max_file_bytes": 100 * 1024 * 1024,
            "max_audio_seconds": 3600,
            "max_concurrent_jobs": 1000,
            "rate_limits": {"default": 100000},
            "retention_days": 30,
        }
        values.update(overrides)
        return Plan.objects.create(**values)

    return make


@pytest.fixture
def on_plan(make_plan):
    """Put a tenant on a fresh plan: ``on_plan(tenant, included_minutes=1)``."""

    def put(tenant, **overrides):
        plan = make_plan(**overrides)
        services.change_plan(tenant, plan)
        return plan

    return put


@pytest.fixture
def reserved_job(db):
    """A queued job row holding a reservation, made the way ``jobs.services.submit`` makes it."""
    from jobs.models import Job
    from jobs.services import billable_job

    def make(tenant, seconds: float = 5.0, kind: str = "watermark_embed") -> Job:
        with transaction.atomic():
            job = Job.objects.create(
                tenant=tenant, kind=kind, audio_seconds=seconds, input={"duration_seconds": seconds}
            )
            services.reserve(billable_job(job))
        return job

    return make


@pytest.fixture
def succeeded_job(reserved_job):
    """A job that went queued -> running -> succeeded through the state machine (so it is settled)."""
    from jobs import services as jobs_services

    def make(tenant, seconds: float = 5.0, kind: str = "watermark_embed"):
        job = reserved_job(tenant, seconds, kind)
        job = jobs_services.start(job.pk, "test-worker")
        assert jobs_services.succeed(job, result={})
        return job

    return make


@pytest.fixture
def staff_client(db, client):
    """A signed-in superuser (``ModelBackend`` named explicitly: the first configured backend, the sign-in
    lockout, authenticates nobody)."""
    from accounts.services import get_or_create_user

    user = get_or_create_user("billing-staff", email="staff@example.com", password="x-Secret-123", staff=True)
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


@pytest.fixture
def fake_stripe(settings):
    """Stripe's API on localhost; billing talks to it through the real ``stripe`` library."""
    fake = FakeStripe()
    server, url = serve(fake)
    settings.STRIPE_API_KEY = "sk_test_fake"
    settings.STRIPE_API_BASE = url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    yield fake
    server.shutdown()
    server.server_close()
