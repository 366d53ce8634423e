"""Staff tools in the admin: every billing page renders; plans are editable; grants default to the current
period; tenant plan and overrides are edited on the subscription."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.urls import reverse

from billing import selectors as billing_selectors
from billing import services
from billing.models import MeterSync, PeriodUsage, Plan, QuotaGrant, Reservation, StripeEvent, Subscription

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", [Plan, Subscription, QuotaGrant, PeriodUsage, Reservation, MeterSync, StripeEvent])
def test_changelists_render(staff_client, succeeded_job, tenant, model):
    succeeded_job(tenant, 2.0)
    name = model._meta.model_name
    assert staff_client.get(reverse(f"admin:billing_{name}_changelist")).status_code == 200


def test_subscription_page_shows_usage_and_edits_plan_and_overrides(staff_client, tenant, succeeded_job):
    succeeded_job(tenant, 120.0)
    sub = billing_selectors.subscription_for(tenant)
    url = reverse("admin:billing_subscription_change", args=[sub.pk])
    page = staff_client.get(url).content.decode()
    assert "2.0 used" in page and "Grant extra minutes" in page

    pro = Plan.objects.get(code="pro")
    form = {
        "tenant": str(tenant.pk), "plan": pro.pk, "status": "active", "past_due_since": "",
        "current_period_start_0": sub.current_period_start.strftime("%Y-%m-%d"),
        "current_period_start_1": "00:00:00",
        "current_period_end_0": sub.current_period_end.strftime("%Y-%m-%d"), "current_period_end_1": "00:00:00",
        "included_minutes_override": "", "overage_allowed_override": "unknown", "max_file_bytes_override": "",
        "max_audio_seconds_override": "", "max_concurrent_jobs_override": "3", "rate_limits_override": "{}",
        "retention_days_override": "", "stripe_customer_id": "", "stripe_subscription_id": "",
    }
    response = staff_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    limits = billing_selectors.limits_for(tenant)
    assert limits.plan_code == "pro" and limits.max_concurrent_jobs == 3


def test_grant_defaults_to_the_current_period(staff_client, tenant):
    add = reverse("admin:billing_quotagrant_add")
    assert staff_client.get(add + f"?tenant={tenant.pk}").status_code == 200
    response = staff_client.post(add, {"tenant": str(tenant.pk), "minutes": 30, "reason": "outage credit"})
    assert response.status_code == 302, response.content.decode()[:3000]
    grant = QuotaGrant.objects.get()
    start, _ = billing_selectors.period_bounds(billing_selectors.subscription_for(tenant))
    assert grant.period_start == start and grant.granted_by.username == "billing-staff"
    assert billing_selectors.usage_summary(tenant)["minutes"]["included"] == 90.0


def _form_data(html: str) -> dict[str, Any]:
    """What a browser would post back from the admin change form as rendered (inputs, selects, textareas)."""
    form = re.search(r'<form[^>]*id="tenant_form".*?</form>', html, re.S).group(0)
    data: dict[str, Any] = {}
    for tag in re.findall(r"<input[^>]*>", form):
        attrs = dict(re.findall(r'(\w[\w-]*)="([^"]*)"', tag))
        name, kind = attrs.get("name"), attrs.get("type", "text")
        if not name or kind in ("submit", "button", "file"):
            continue
        if kind == "checkbox":
            if "checked" in tag:
                data[name] = attrs.get("value", "on")
            continue
        data[name] = unescape(attrs.get("value", ""))
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', body)
        data[name] = unescape(chosen.group(1)) if chosen else ""
    for name, body in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', form, re.S):
        data[name] = unescape(body.strip())
    return data


def test_tenant_page_edits_plan_and_quota_through_the_service(staff_client, tenant, monkeypatch):
    """The tenant page's plan-and-quota inline is written by services.change_subscription, and ticking
    "is active" goes through accounts.services like the suspend action."""
    from accounts import services as accounts_services

    calls: list[dict[str, Any]] = []
    real = services.change_subscription
    monkeypatch.setattr(services, "change_subscription", lambda target, **kw: calls.append(kw) or real(target, **kw))
    suspended: list[Any] = []
    monkeypatch.setattr(
        accounts_services, "suspend_tenant", lambda t: suspended.append(t) or accounts_services._set_active(t, False)
    )

    url = reverse("admin:accounts_tenant_change", args=[tenant.pk])
    data = _form_data(staff_client.get(url).content.decode())
    pro = Plan.objects.get(code="pro")
    data.update({"subscription-0-plan": str(pro.pk), "subscription-0-max_concurrent_jobs_override": "4"})
    data.pop("is_active", None)  # unticked: suspend
    response = staff_client.post(url, {**data, "_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:3000]

    assert calls == [{"plan": pro, "overrides": {"max_concurrent_jobs": 4}}]
    limits = billing_selectors.limits_for(tenant)
    assert limits.plan_code == "pro" and limits.max_concurrent_jobs == 4
    tenant.refresh_from_db()
    assert not tenant.is_active and [t.pk for t in suspended] == [tenant.pk]
    from django.contrib.admin.models import LogEntry

    message = LogEntry.objects.get().get_change_message()
    assert "Changed Is active" in message and "Max concurrent jobs override for subscription" in message, message


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data/",
     "http://[::ffff:10.0.0.1]/hook", "ftp://93.184.216.34/hook"],
)
def test_tenant_page_refuses_a_private_webhook_url(staff_client, tenant, url):
    """Staff get the SSRF guard customers get on the dashboard: the refusal is a form error, nothing saved."""
    change = reverse("admin:accounts_tenant_change", args=[tenant.pk])
    data = _form_data(staff_client.get(change).content.decode())
    assert "webhook_url" in data
    response = staff_client.post(change, {**data, "webhook_url": url, "_save": "Save"})
    assert response.status_code == 200, response.status_code
    errors = response.context["adminform"].form.errors
    assert "webhook_url" in errors and errors["webhook_url"][0], errors
    assert "errorlist" in response.content.decode()
    tenant.refresh_from_db()
    assert tenant.webhook_url == ""


def test_tenant_page_saves_a_public_webhook_url(staff_client, tenant):
    change = reverse("admin:accounts_tenant_change", args=[tenant.pk])
    data = _form_data(staff_client.get(change).content.decode())
    response = staff_client.post(change, {**data, "webhook_url": "http://93.184.216.34/hook", "_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:3000]
    tenant.refresh_from_db()
    assert tenant.webhook_url == "http://93.184.216.34/hook"
