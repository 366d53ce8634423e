"""Staff admin for tenants and API keys: plan, quota overrides and usage on the tenant page, the
suspend / reactivate / grant-minutes actions, and API keys revocable but never readable."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from accounts import services
from accounts.models import ApiKey

pytestmark = pytest.mark.django_db


def test_tenant_list_and_page_show_plan_usage_members_and_keys(people):
    issued = services.issue_api_key(people.tenant, "ci")
    staff = people.client("staff")
    listing = staff.get(reverse("admin:accounts_tenant_changelist")).content.decode()
    assert "Acme" in listing and "Free" in listing and "included" in listing
    page = staff.get(reverse("admin:accounts_tenant_change", args=[people.tenant.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    for text in ("quota overrides", "included_minutes_override", "usage this period", "member@example.com",
                 issued.api_key.prefix):
        assert text in html.lower(), text
    assert issued.secret not in html and issued.api_key.secret_hash not in html


def test_suspend_and_reactivate(people):
    staff = people.client("staff")
    url = reverse("admin:accounts_tenant_changelist")
    staff.post(url, {"action": "suspend", ACTION_CHECKBOX_NAME: [str(people.tenant.pk)]})
    people.tenant.refresh_from_db()
    assert not people.tenant.is_active
    page = people.client("member").get(reverse("dashboard:overview")).content.decode()
    assert "is suspended" in page
    staff.post(url, {"action": "reactivate", ACTION_CHECKBOX_NAME: [str(people.tenant.pk)]})
    people.tenant.refresh_from_db()
    assert people.tenant.is_active


def test_grant_minutes_action_asks_then_grants(people):
    from billing.selectors import usage_summary

    staff = people.client("staff")
    url = reverse("admin:accounts_tenant_changelist")
    selection = {"action": "grant_minutes", ACTION_CHECKBOX_NAME: [str(people.tenant.pk)]}
    form_page = staff.post(url, selection)
    assert form_page.status_code == 200 and b"Grant extra minutes" in form_page.content
    assert usage_summary(people.tenant)["minutes"]["granted"] == 0
    done = staff.post(url, {**selection, "apply": "1", "minutes": "30", "reason": "support ticket 42"})
    assert done.status_code == 302
    summary = usage_summary(people.tenant)
    assert summary["minutes"]["granted"] == 30 and summary["minutes"]["included"] == 90
    assert people.tenant.quota_grants.get().granted_by == people.users["staff"]


def test_api_keys_revoked_never_shown(people):
    issued = services.issue_api_key(people.tenant, "ci")
    staff = people.client("staff")
    page = staff.get(reverse("admin:accounts_apikey_change", args=[issued.api_key.pk])).content.decode()
    assert issued.api_key.prefix in page
    assert issued.secret not in page and issued.api_key.secret_hash not in page
    assert staff.get(reverse("admin:accounts_apikey_add")).status_code == 403
    staff.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke", ACTION_CHECKBOX_NAME: [str(issued.api_key.pk)]},
    )
    assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at is not None
