"""Sign-in throttling on the real admin login form, counted in the real Redis."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts import services

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only


@pytest.fixture
def staff(redis_clean):
    return services.get_or_create_user("ops", email="ops@example.com", password="correct horse 42", staff=True)


def login(client, password: str, username: str = "ops", ip: str = "10.0.0.1"):
    return client.post(
        reverse("admin:login"), {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def test_username_is_throttled_after_repeated_failures(client, staff, settings):
    settings.LOGIN_FAILURES_PER_USER = 3
    assert login(client, "correct horse 42").status_code == 302  # works, and clears nothing yet
    client.logout()
    for _ in range(3):
        assert login(client, "wrong").status_code == 200
    refused = login(client, "correct horse 42", ip="10.0.0.2")  # even the right password, from elsewhere
    assert refused.status_code == 200 and not refused.wsgi_request.user.is_authenticated
    assert refused.wsgi_request.login_throttled is True
    other = services.get_or_create_user("other", password="another pass 42", staff=True)
    assert login(client, "another pass 42", username=other.username).status_code == 302


def test_ip_is_throttled_across_usernames(client, staff, settings):
    settings.LOGIN_FAILURES_PER_IP = 4
    for n in range(4):
        login(client, "wrong", username=f"guess{n}", ip="10.9.9.9")
    assert login(client, "correct horse 42", ip="10.9.9.9").status_code == 200
    assert login(client, "correct horse 42", ip="10.9.9.10").status_code == 302


def test_success_clears_the_username_counter(client, staff, settings):
    settings.LOGIN_FAILURES_PER_USER = 3
    for _ in range(2):
        login(client, "wrong")
    assert login(client, "correct horse 42").status_code == 302
    client.logout()
    for _ in range(2):
        login(client, "wrong")
    assert login(client, "correct horse 42").status_code == 302  # 2 + 2 failures, never 3 in a row


def test_throttle_fails_open_when_redis_is_down(client, staff, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    for _ in range(settings.LOGIN_FAILURES_PER_USER + 1):
        login(client, "wrong")
    assert login(client, "correct horse 42").status_code == 302
