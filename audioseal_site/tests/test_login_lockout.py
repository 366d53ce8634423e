"""Sign-in lockout (django-axes) on the real admin and dashboard login forms: per username and per client IP,
a lockout page that says the sign-in is locked and when it unlocks, and API keys untouched."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import services

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse 42"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only


@pytest.fixture
def staff(db):
    return services.get_or_create_user("ops", email="ops@example.com", password=PASSWORD, staff=True)


def login(client, password: str, username: str = "ops", ip: str = "10.0.0.1", url: str | None = None):
    return client.post(
        url or reverse("admin:login"), {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def dashboard_login(client, password: str, username: str = "ops@example.com", ip: str = "10.0.0.1"):
    return login(client, password, username, ip, url=reverse("dashboard:login"))


def _locked(response) -> bool:
    return response.status_code == 429 and not response.wsgi_request.user.is_authenticated


def test_username_is_locked_after_repeated_failures(client, staff, settings):
    settings.LOGIN_FAILURES_PER_USER = 3
    assert login(client, PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        assert login(client, "wrong").status_code == 200  # "wrong password"
    assert _locked(login(client, "wrong"))  # the failure that reaches the limit locks
    assert _locked(login(client, PASSWORD, ip="10.0.0.2"))  # even the right password, from elsewhere
    other = services.get_or_create_user("other", password="another pass 42", staff=True)
    assert login(client, "another pass 42", username=other.username).status_code == 302


def test_ip_is_locked_across_usernames(client, staff, settings):
    settings.LOGIN_FAILURES_PER_IP = 4
    for n in range(3):
        assert login(client, "wrong", username=f"guess{n}", ip="10.9.9.9").status_code == 200
    assert _locked(login(client, "wrong", username="guess3", ip="10.9.9.9"))
    assert _locked(login(client, PASSWORD, ip="10.9.9.9"))
    assert login(client, PASSWORD, ip="10.9.9.10").status_code == 302


def test_success_clears_the_username_counter(client, staff, settings):
    settings.LOGIN_FAILURES_PER_USER = 3
    for _ in range(2):
        login(client, "wrong")
    assert login(client, PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        login(client, "wrong")
    assert login(client, PASSWORD).status_code == 302  # 2 + 2 failures, never 3 in a row


def test_the_lock_ends_after_the_cool_off(client, staff, settings):
    from axes.models import AccessAttempt

    settings.LOGIN_FAILURES_PER_USER = 2
    for _ in range(2):
        login(client, "wrong")
    assert _locked(login(client, PASSWORD))
    window = timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    AccessAttempt.objects.update(attempt_time=timezone.now() - window - timedelta(seconds=1))
    assert login(client, PASSWORD).status_code == 302


def test_sign_in_does_not_need_redis(client, staff, settings):
    """The lockout counts in PostgreSQL (axes' database handler): a Redis outage locks nobody out."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    login(client, "wrong")
    assert login(client, PASSWORD).status_code == 302


def _unlock_time(html: str) -> str:
    match = re.search(r"locked until <time datetime=\"([^\"]+)\">(\d\d:\d\d) UTC</time>", html)
    assert match, html[:3000]
    return match.group(1)


@pytest.mark.parametrize("where", ["dashboard", "admin"])
def test_the_lockout_page_says_locked_and_when_it_unlocks(client, staff, settings, where):
    settings.LOGIN_FAILURES_PER_USER = 3
    post = dashboard_login if where == "dashboard" else login
    for _ in range(2):
        response = post(client, "wrong")
        assert response.status_code == 200 and "locked" not in response.content.decode().lower()
    before = timezone.now()
    response = post(client, "wrong")
    assert _locked(response)
    html = response.content.decode()
    assert "Please enter a correct" not in html and "wrong password" not in html.lower()
    assert "Too many failed sign-in attempts" in html
    unlocks = timezone.datetime.fromisoformat(_unlock_time(html))
    window = timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    assert before + window - timedelta(seconds=2) <= unlocks <= timezone.now() + window + timedelta(seconds=2)
    assert "15 minutes" in html  # the default window
    assert 0 < int(response["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
    # While locked, even the right password gets the same page, and does not push the unlock time back.
    again = post(client, PASSWORD)
    assert _locked(again) and _unlock_time(again.content.decode()) == _unlock_time(html)


def test_api_keys_are_not_sign_ins(client, staff, settings, api_key):
    """Bearer API keys never count as failed sign-ins, and a locked-out address can still use a valid key."""
    from rest_framework.test import APIClient

    settings.LOGIN_FAILURES_PER_IP = 3
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer ask_wrong_wrong_wrong")
    for _ in range(5):
        assert bad.get("/api/v1/jobs", REMOTE_ADDR="10.5.5.5").status_code == 401
    assert login(client, PASSWORD, ip="10.5.5.5").status_code == 302
    client.logout()
    for n in range(3):
        login(client, "wrong", username=f"guess{n}", ip="10.5.5.5")
    assert _locked(login(client, PASSWORD, ip="10.5.5.5"))
    good = APIClient()
    good.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.secret}")
    assert good.get("/api/v1/jobs", REMOTE_ADDR="10.5.5.5").status_code == 200
