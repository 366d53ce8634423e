"""``services.change_subscription``: the one writer of a tenant's subscription (plan, state, period,
overrides, Stripe ids), and the past-due rule every writer gets from it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing import selectors as billing_selectors
from billing import services
from billing.models import SubscriptionStatus

pytestmark = pytest.mark.django_db

T1 = datetime(2026, 3, 1, tzinfo=UTC)
T2 = datetime(2026, 3, 9, tzinfo=UTC)


def test_past_due_keeps_its_first_date_and_other_states_clear_it(tenant):
    sub = services.change_subscription(tenant, status=SubscriptionStatus.PAST_DUE, status_at=T1)
    assert (sub.status, sub.past_due_since) == ("past_due", T1)
    sub = services.change_subscription(tenant, status=SubscriptionStatus.PAST_DUE, status_at=T2)
    assert sub.past_due_since == T1
    sub = services.change_subscription(tenant, status=SubscriptionStatus.ACTIVE)
    assert (sub.status, sub.past_due_since) == ("active", None)
    sub = services.change_subscription(tenant, status=SubscriptionStatus.PAST_DUE, past_due_since=T2)
    assert sub.past_due_since == T2


def test_only_the_given_fields_change(tenant):
    before = billing_selectors.subscription_for(tenant)
    sub = services.change_subscription(tenant, overrides={"max_concurrent_jobs": 2, "rate_limits": None})
    assert sub.max_concurrent_jobs_override == 2 and sub.rate_limits_override == {}
    assert (sub.plan_id, sub.status, sub.current_period_start) == (
        before.plan_id, before.status, before.current_period_start
    )
    assert sub.updated_at > before.updated_at
    sub = services.change_subscription(sub, plan="pro", period=(T1, T2))
    assert (sub.plan.code, sub.current_period_start, sub.current_period_end) == ("pro", T1, T2)
    assert sub.max_concurrent_jobs_override == 2
    assert billing_selectors.limits_for(tenant).max_concurrent_jobs == 2


def test_unknown_override_is_refused(tenant):
    with pytest.raises(ValueError, match="max_jobs"):
        services.change_subscription(tenant, overrides={"max_jobs": 1})
