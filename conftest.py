"""Test-session services and the fixtures every app's tests share.

The suite runs against a real PostgreSQL and a real Redis: the ones ``DATABASE_URL``/``REDIS_URL`` name,
or embedded servers under ``var/test`` (started by the settings module, separate from ``make run``'s).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("VAR_DIR", str(Path(__file__).resolve().parent / "var" / "test"))
os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ.setdefault("MODEL_THREADS", "1")

import pytest  # noqa: E402

# The shared fixtures (tenants, API clients, people, Redis, workers; the browser tests' Chromium); plain
# helpers are imported explicitly from `testing.*` by the tests that use them.
pytest_plugins = ["testing.fixtures", "testing.browser"]


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    """Each test stores files in its own directory, so tests can assert that nothing was left behind."""
    media = tmp_path / "media"
    media.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": media}},
    }
    settings.MEDIA_ROOT = media
    settings.VAR_DIR = tmp_path / "var"
    yield media
