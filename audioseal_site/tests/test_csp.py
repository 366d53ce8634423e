"""The Content-Security-Policy (django-csp): every page gets it, it allows nothing inline, and the templates
give it nothing inline to refuse. The browser tests (jobs/tests/test_browser.py) fail on any violation the
pages actually cause; these checks need no browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"
INLINE = {
    "style attribute": re.compile(r"\sstyle\s*=", re.I),
    "style element": re.compile(r"<style[\s>]", re.I),
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
    "event handler attribute": re.compile(r"<[^>]*\son[a-z]+\s*=", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
}


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def test_pages_get_a_strict_policy(client):
    for url in ("/login/", "/signup/", "/api/docs/", f"/{settings.ADMIN_URL}login/"):
        policy = _policy(client.get(url))
        assert policy["default-src"] == ["'self'"], url
        assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"], url
        assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"], url


def test_the_api_docs_script_is_a_file(client):
    page = client.get("/api/docs/").content.decode()
    script = re.search(r'<script src="([^"]*\?script=[^"]*)"', page)
    assert script, page
    assert client.get(script.group(1).replace("&amp;", "&"))["Content-Type"].startswith("application/javascript")


def test_only_the_rq_dashboard_allows_inline(admin_client):
    assert "'unsafe-inline'" in admin_client.get(f"/{settings.ADMIN_URL}django-rq/")["Content-Security-Policy"]
    assert "'unsafe-inline'" not in admin_client.get(f"/{settings.ADMIN_URL}")["Content-Security-Policy"]


@pytest.mark.parametrize("what", sorted(INLINE))
def test_templates_have_nothing_inline(what):
    found = [
        f"{path.relative_to(TEMPLATES)}:{n}"
        for path in TEMPLATES.rglob("*.html")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if INLINE[what].search(re.sub(r"\{#.*?#\}", "", line))
    ]
    assert not found, f"{what} in {found}"
