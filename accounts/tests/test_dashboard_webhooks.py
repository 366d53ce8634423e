"""Dashboard webhook settings: who may open and change them, the SSRF guard on the default callback URL,
the signing secret (masked, revealable, rotatable; never another tenant's), and the default URL being used
for jobs submitted without their own ``callback_url``."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from accounts.models import Tenant
from jobs.models import Job, JobKind, JobStatus, WebhookDelivery
from jobs.webhooks import endpoints, outbox
from testing.dns import fake_dns
from testing.factories import People

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://hooks.customer.example/audioseal?x=1"  # resolved by fake DNS to a public address
PUBLIC_IP_URL = "http://93.184.216.34/hook"  # an IP literal: getaddrinfo answers without DNS


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _test_host_names(monkeypatch):
    """No DNS here: answer for the test host names (as jobs/tests/test_webhooks.py does), refuse the rest."""
    fake_dns(monkeypatch, {"hooks.customer.example": "93.184.216.34", "internal.example": "10.1.2.3"})


def page(people: People, who: str) -> str:
    response = people.client(who).get(reverse("dashboard:webhooks"))
    assert response.status_code == 200
    return response.content.decode()


# --- permissions --------------------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(people):
    for url in (reverse("dashboard:webhooks"), reverse("dashboard:webhook-secret-rotate")):
        response = people.client("anonymous").get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("dashboard:login"))
        response = people.client("anonymous").post(url, {"url": PUBLIC_URL})
        assert response.status_code == 302 and response["Location"].startswith(reverse("dashboard:login"))
    people.tenant.refresh_from_db()
    assert people.tenant.webhook_url == ""


def test_staff_without_an_organisation_goes_to_welcome(people):
    response = people.client("staff").get(reverse("dashboard:webhooks"))
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:welcome")


def test_member_gets_403_and_changes_nothing(people):
    secret = people.tenant.webhook_secret
    client = people.client("member")
    for url in (reverse("dashboard:webhooks"), reverse("dashboard:webhook-secret-rotate")):
        response = client.get(url)
        assert response.status_code == 403 and b"owners and admins" in response.content
        assert secret not in response.content.decode()
    assert client.post(reverse("dashboard:webhooks"), {"url": PUBLIC_URL}).status_code == 403
    assert client.post(reverse("dashboard:webhook-secret-rotate")).status_code == 403
    people.tenant.refresh_from_db()
    assert people.tenant.webhook_url == "" and people.tenant.webhook_secret == secret


def test_nav_link_for_managers_only(people):
    link = reverse("dashboard:webhooks")
    assert link not in people.client("member").get(reverse("dashboard:overview")).content.decode()
    for who in ("admin", "owner"):
        assert link in people.client(who).get(reverse("dashboard:overview")).content.decode()


# --- the default callback URL -------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin", "owner"])
@pytest.mark.parametrize("url", [PUBLIC_URL, PUBLIC_IP_URL])
def test_manager_sets_a_safe_url(people, who, url):
    client = people.client(who)
    response = client.post(reverse("dashboard:webhooks"), {"url": f"  {url} "})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:webhooks")
    people.tenant.refresh_from_db()
    assert people.tenant.webhook_url == url
    shown = client.get(reverse("dashboard:webhooks")).content.decode()
    assert "now go to" in shown and f"<code data-webhook-url>{url}</code>" in shown


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://169.254.169.254/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://[::1]/hook",
        "http://internal.example/hook",  # resolves to 10.1.2.3
        "ftp://93.184.216.34/hook",
        "not a url",
    ],
)
def test_unsafe_url_shows_the_error_and_stores_nothing(people, url):
    endpoints.set_default_callback_url(people.tenant, PUBLIC_IP_URL)  # an earlier, safe value is kept
    response = people.client("admin").post(reverse("dashboard:webhooks"), {"url": url})
    assert response.status_code == 400
    body = response.content.decode()
    assert "errorlist" in body
    assert any(text in body for text in ("non-public address", "Only http", "no host", "does not resolve"))
    people.tenant.refresh_from_db()
    assert people.tenant.webhook_url == PUBLIC_IP_URL


def test_clearing_removes_the_url(people):
    endpoints.set_default_callback_url(people.tenant, PUBLIC_URL)
    client = people.client("owner")
    assert "Remove default URL" in client.get(reverse("dashboard:webhooks")).content.decode()
    response = client.post(reverse("dashboard:webhooks"), {"url": ""})
    assert response.status_code == 302
    people.tenant.refresh_from_db()
    assert people.tenant.webhook_url == ""
    assert "was removed" in client.get(reverse("dashboard:webhooks")).content.decode()


def test_csrf_is_enforced(people):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(people.users["owner"], backend="django.contrib.auth.backends.ModelBackend")
    assert client.post(reverse("dashboard:webhooks"), {"url": PUBLIC_URL}).status_code == 403
    assert client.post(reverse("dashboard:webhook-secret-rotate")).status_code == 403
    people.tenant.refresh_from_db()
    assert people.tenant.webhook_url == ""


# --- the signing secret -------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin", "owner"])
def test_secret_is_masked_and_revealable_for_managers(people, who):
    secret = people.tenant.webhook_secret
    response = people.client(who).get(reverse("dashboard:webhooks"))
    assert response["Cache-Control"] == "no-store"
    body = response.content.decode()
    assert masked(secret) in body
    assert f'value="{secret}"' in body and 'data-copy="#webhook-secret"' in body  # inside <details>
    assert not re.search(r"<script(?![^>]*\bsrc=)", body)  # no inline scripts


def masked(secret: str) -> str:
    from jobs.dashboard.webhooks import mask_secret

    masked = mask_secret(secret)
    assert masked.startswith("whsec_") and masked.endswith(secret[-4:]) and secret not in masked
    return masked


def test_rotate_asks_for_confirmation_then_changes_the_secret(people):
    old = people.tenant.webhook_secret
    client = people.client("admin")
    confirm = client.get(reverse("dashboard:webhook-secret-rotate"))
    assert confirm.status_code == 200 and b"Rotate secret" in confirm.content
    people.tenant.refresh_from_db()
    assert people.tenant.webhook_secret == old  # a GET changes nothing
    response = client.post(reverse("dashboard:webhook-secret-rotate"))
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:webhooks")
    people.tenant.refresh_from_db()
    new = people.tenant.webhook_secret
    assert new != old and new.startswith("whsec_")
    body = client.get(reverse("dashboard:webhooks")).content.decode()
    assert new in body and old not in body and "was rotated" in body


# --- tenant isolation ---------------------------------------------------------------------------------------


def test_other_tenant_never_sees_or_changes_ours(people):
    ours = people.tenant
    endpoints.set_default_callback_url(ours, PUBLIC_URL)
    theirs_before = Tenant.objects.get(pk=people.other_tenant.pk).webhook_secret
    outsider = people.client("outsider")  # owner of Globex only
    body = outsider.get(reverse("dashboard:webhooks")).content.decode()
    assert ours.webhook_secret not in body and masked(ours.webhook_secret) not in body
    assert PUBLIC_URL not in body and theirs_before in body
    # Their mutations act on their own tenant, whatever the form says.
    outsider.post(reverse("dashboard:webhooks"), {"url": PUBLIC_IP_URL, "tenant": str(ours.pk)})
    outsider.post(reverse("dashboard:webhook-secret-rotate"), {"tenant": str(ours.pk)})
    before = ours.webhook_secret
    ours.refresh_from_db()
    assert ours.webhook_url == PUBLIC_URL and ours.webhook_secret == before
    theirs = Tenant.objects.get(pk=people.other_tenant.pk)
    assert theirs.webhook_url == PUBLIC_IP_URL and theirs.webhook_secret != theirs_before
    # And our managers never see theirs.
    assert theirs.webhook_secret not in page(people, "owner")


# --- the default URL is used for jobs without their own callback_url ----------------------------------------


def _final_job(tenant: Tenant, callback_url: str = "") -> Job:
    return Job.objects.create(
        tenant=tenant, kind=JobKind.WATERMARK_DETECT, status=JobStatus.SUCCEEDED, callback_url=callback_url
    )


def test_jobs_without_a_callback_url_use_the_dashboard_default(people):
    people.client("owner").post(reverse("dashboard:webhooks"), {"url": PUBLIC_URL})
    tenant = Tenant.objects.get(pk=people.tenant.pk)
    delivery = outbox.on_job_final(_final_job(tenant))
    assert delivery is not None and delivery.url == PUBLIC_URL
    own = outbox.on_job_final(_final_job(tenant, callback_url=PUBLIC_IP_URL))
    assert own is not None and own.url == PUBLIC_IP_URL  # a job's own callback_url wins
    assert outbox.on_job_final(_final_job(people.other_tenant)) is None  # no default there, no event
    assert WebhookDelivery.objects.filter(tenant=people.other_tenant).count() == 0
