"""The production profile (DJANGO_ENV=production), run in subprocesses exactly as a container starts it:
``check --deploy`` is clean, required secrets are required, HTTPS is enforced except for probes, static files
are served by whitenoise from the collected, hashed files, and the admin lives at ADMIN_URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

SECRET = "k3T9-prod-test-secret-2yR8wq!LmZ0@vB7x#Nf5&Hs1^Jd4*Gp6(Qc)Ue_Ya+Ti=Ko"


def production_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_", "DEBUG"))}
    env.update(
        DJANGO_ENV="production",
        DJANGO_SETTINGS_MODULE="audioseal_site.settings",
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS="api.example.com",
        DATABASE_URL="postgres://audioseal@db.internal/audioseal",  # never connected to by these checks
        REDIS_URL="redis://redis.internal:6379/0",
        VAR_DIR=str(tmp_path / "var"),
        STATIC_ROOT=str(tmp_path / "static"),
        ADMIN_URL="ops-console-7f3a/",
    )
    env.pop("EMBEDDED_SERVICES", None)  # production's default (off) must hold by itself
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=django_settings.BASE_DIR, env=env, capture_output=True,
        text=True, timeout=180,
    )


def test_check_deploy_is_clean(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"])
def test_production_requires_its_settings(tmp_path, missing):
    env = production_env(tmp_path)
    env.pop(missing)
    result = manage(env, "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr


PROBE = r"""
import json, django
django.setup()
from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from django.test import Client
from django.urls import reverse

c = Client(HTTP_HOST="api.example.com")
css = staticfiles_storage.url("css/app.css")
static = c.get(css, secure=True)
plain_api = c.get("/api/v1/jobs")
secure_api = c.get("/api/v1/jobs", secure=True)
print(json.dumps({
    "debug": settings.DEBUG,
    "css_url": css,
    "static_status": static.status_code,
    "static_cache": static.get("Cache-Control", ""),
    "static_body": b"".join(static.streaming_content)[:20].decode(errors="replace"),
    "api_http_status": plain_api.status_code,
    "api_http_location": plain_api.get("Location", ""),
    "api_https_status": secure_api.status_code,
    "hsts": secure_api.get("Strict-Transport-Security", ""),
    "healthz_http": c.get("/healthz").status_code,
    "probe_by_pod_ip": Client(HTTP_HOST="10.1.2.3:8000").get("/healthz").status_code,
    "api_by_pod_ip": Client(HTTP_HOST="10.1.2.3:8000").get("/api/v1/jobs", secure=True).status_code,
    "admin_url": reverse("admin:index"),
    "admin_default": c.get("/admin/", secure=True).status_code,
    "log_format": settings.LOGGING["handlers"]["console"]["formatter"],
    "session_secure": settings.SESSION_COOKIE_SECURE and settings.CSRF_COOKIE_SECURE,
}))
"""


def test_https_static_files_and_admin_url(tmp_path):
    env = production_env(tmp_path)
    collected = manage(env, "collectstatic", "--noinput", "-v", "0")
    assert collected.returncode == 0, collected.stderr
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=django_settings.BASE_DIR, env=env, capture_output=True, text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["debug"] is False
    # whitenoise serves the hashed file with a far-future cache header
    assert out["css_url"].startswith("/static/css/app.") and out["css_url"] != "/static/css/app.css"
    assert out["static_status"] == 200 and "max-age=315360000" in out["static_cache"]
    assert (django_settings.BASE_DIR / "static/css/app.css").read_text()[:20] == out["static_body"]
    # plain HTTP is redirected to HTTPS; HTTPS responses carry HSTS; probes answer over plain HTTP
    assert out["api_http_status"] == 301 and out["api_http_location"].startswith("https://api.example.com/")
    assert out["api_https_status"] == 401
    assert "max-age=31536000" in out["hsts"] and "includeSubDomains" in out["hsts"]
    assert out["healthz_http"] == 200
    # probes address pods by IP: they skip host validation; everything else does not
    assert out["probe_by_pod_ip"] == 200 and out["api_by_pod_ip"] == 400
    # the admin moved to ADMIN_URL; the default path is not it
    assert out["admin_url"] == "/ops-console-7f3a/" and out["admin_default"] == 404
    assert out["log_format"] == "json" and out["session_secure"] is True
