"""``make run`` seeds its demo tenant, admin and API key on every start (``audioseal_site.quickstart._seed``):
a restart must keep the people who were signed in signed in (issue 19, defect 10: it re-hashed the admin's
password each time, which changed the session auth hash and logged staff out)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from audioseal_site.quickstart import _seed

pytestmark = pytest.mark.django_db


def test_a_restart_keeps_the_admin_signed_in(tmp_path, fast_passwords):
    creds = _seed(tmp_path)
    admin = get_user_model().objects.get(username="admin")
    client = Client()
    assert client.login(username="admin", password=creds["admin_password"])
    assert client.get(reverse("admin:index")).status_code == 200
    hashed = admin.password

    again = _seed(tmp_path)  # the next `make run`
    assert again == creds
    admin.refresh_from_db()
    assert admin.password == hashed and admin.is_staff and admin.is_superuser
    assert client.get(reverse("admin:index")).status_code == 200  # the same session still works


def test_a_changed_password_is_set_again(tmp_path, fast_passwords):
    """The file is the truth: a password edited in var/quickstart.json is applied on the next start."""
    import json

    creds = _seed(tmp_path)
    (tmp_path / "quickstart.json").write_text(json.dumps({**creds, "admin_password": "edited-password-1"}))
    _seed(tmp_path)
    assert get_user_model().objects.get(username="admin").check_password("edited-password-1")
