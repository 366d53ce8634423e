"""Issue 19, defect 5: with ``PORT=8200`` the links in webhook payloads pointed at port 8000. The public base
URL now follows the port the quick start serves (and the settings' default follows ``PORT``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from audioseal_site import quickstart

BASE_DIR = Path(__file__).resolve().parents[2]


def child_envs(host: str, port: str) -> dict[str, str]:
    programs = quickstart.programs(BASE_DIR, host, port)
    urls = {program.env["PUBLIC_BASE_URL"] for program in programs}
    assert len(urls) == 1, "web, worker and scheduler must agree (the worker writes the payloads)"
    return programs[0].env


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", "8200", "http://127.0.0.1:8200"),
        ("0.0.0.0", "8200", "http://127.0.0.1:8200"),  # bound everywhere: reachable on loopback
        ("::1", "8300", "http://[::1]:8300"),
        ("127.0.0.1", "8000", "http://127.0.0.1:8000"),
    ],
)
def test_quick_start_children_get_the_served_port(monkeypatch, host, port, expected):
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    assert child_envs(host, port)["PUBLIC_BASE_URL"] == expected


def test_an_explicit_public_base_url_wins(monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://studio.example.com")
    assert child_envs("127.0.0.1", "8200")["PUBLIC_BASE_URL"] == "https://studio.example.com"


def test_settings_default_follows_port():
    """Outside the quick start (gunicorn with deploy/gunicorn.conf.py reads PORT too) the default follows PORT."""
    env = {k: v for k, v in os.environ.items() if k != "PUBLIC_BASE_URL"}
    env.update(PORT="8200", EMBEDDED_SERVICES="false", DJANGO_SETTINGS_MODULE="audioseal_site.settings")
    out = subprocess.run(
        [sys.executable, "-c", "from audioseal_site import settings; print(settings.PUBLIC_BASE_URL)"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "http://127.0.0.1:8200"
