"""The Usage page (daily chart by kind and by API key, CSV) and the Quick start page (snippets per kind with
the key's prefix and the real base URL): numbers from the usage ledger, every tenant seeing only its own."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from html import unescape
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import services
from billing.models import UsageEvent
from jobs.kinds import KINDS
from jobs.models import Job, JobStatus

pytestmark = pytest.mark.django_db


def billed(tenant, kind: str, seconds: int, *, api_key=None, days_ago: int = 0) -> UsageEvent:
    """A succeeded job and its ledger row, written ``days_ago`` days ago (the ledger is append-only, down to a
    database trigger: the row is written with the clock turned back, as it would have been then)."""
    job = Job.objects.create(tenant=tenant, kind=kind, status=JobStatus.SUCCEEDED, api_key=api_key,
                             audio_seconds=seconds)
    then = timezone.now() - timedelta(days=days_ago)
    with mock.patch("django.utils.timezone.now", return_value=then):
        return UsageEvent.objects.create(
            tenant=tenant, job_id=job.pk, kind=kind, quantity=seconds,
            period_start=then - timedelta(days=1), period_end=then + timedelta(days=30),
        )


def chart_of(response) -> dict:
    match = re.search(r'<script id="usage-daily" type="application/json">(.*?)</script>', response.content.decode())
    return json.loads(match.group(1))


def test_usage_by_kind_for_the_last_90_days(people):
    billed(people.tenant, "watermark_embed", 120)
    billed(people.tenant, "watermark_embed", 60)
    billed(people.tenant, "emotion", 30, days_ago=40)
    billed(people.tenant, "emotion", 999, days_ago=120)  # outside the 90 days
    billed(people.other_tenant, "watermark_detect", 600)  # another tenant's
    response = people.client("member").get(reverse("dashboard:usage"), {"range": "90d", "by": "kind"})
    assert response.status_code == 200
    chart = chart_of(response)
    assert len(chart["labels"]) == 90 and chart["labels"][-1] == timezone.now().date().isoformat()
    series = {d["label"]: d["values"] for d in chart["datasets"]}
    assert set(series) == {"Watermark embed", "Emotion analysis"}
    assert series["Watermark embed"][-1] == 3.0 and sum(series["Watermark embed"]) == 3.0
    assert series["Emotion analysis"][-41] == 0.5 and sum(series["Emotion analysis"]) == 0.5
    assert "Watermark detect" not in response.content.decode()


def test_usage_by_api_key(people):
    ci = services.issue_api_key(people.tenant, "ci server").api_key
    laptop = services.issue_api_key(people.tenant, "laptop").api_key
    billed(people.tenant, "watermark_detect", 60, api_key=ci)
    billed(people.tenant, "watermark_detect", 120, api_key=laptop)
    billed(people.tenant, "emotion", 60)  # from the dashboard: no key
    response = people.client("owner").get(reverse("dashboard:usage"), {"by": "key"})
    series = {d["label"]: sum(d["values"]) for d in chart_of(response)["datasets"]}
    assert series == {
        f"ci server (ask_{ci.prefix}_…)": 1.0, f"laptop (ask_{laptop.prefix}_…)": 2.0, "Dashboard (no key)": 1.0
    }


def test_the_current_period_starts_at_the_subscriptions_period(people):
    billed(people.tenant, "watermark_embed", 60)
    response = people.client("owner").get(reverse("dashboard:usage"))
    chart = chart_of(response)
    assert chart["labels"][-1] == timezone.now().date().isoformat()
    assert chart["labels"][0] == people.tenant.subscription.current_period_start.date().isoformat()
    assert sum(chart["datasets"][0]["values"]) == 1.0


def test_usage_csv(people):
    key = services.issue_api_key(people.tenant, "ci").api_key
    billed(people.tenant, "watermark_embed", 90, api_key=key)
    billed(people.other_tenant, "watermark_embed", 600)
    response = people.client("owner").get(reverse("dashboard:usage-csv"), {"range": "90d", "by": "kind"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == [["date", "job_kind", "jobs", "seconds", "minutes"],
                    [timezone.now().date().isoformat(), "watermark_embed", "1", "90", "1.50"]]
    by_key = people.client("owner").get(reverse("dashboard:usage-csv"), {"by": "key"}).content.decode()
    assert f"ci (ask_{key.prefix}_…)" in by_key and "600" not in by_key


def test_usage_pages_need_a_session(people):
    for name in ("dashboard:usage", "dashboard:usage-csv", "dashboard:quickstart"):
        assert people.client("anonymous").get(reverse(name)).status_code == 302


def test_quick_start_has_every_kind_with_the_key_prefix_and_base_url(people, settings):
    settings.ALLOWED_HOSTS = ["studio.example.com"]  # the snippets use the address the page was served from
    issued = services.issue_api_key(people.tenant, "ci")
    theirs = services.issue_api_key(people.other_tenant, "theirs").api_key
    response = people.client("member").get(reverse("dashboard:quickstart"), HTTP_HOST="studio.example.com")
    html = unescape(response.content.decode())  # the snippets as the copy button copies them
    assert response.status_code == 200
    for spec in KINDS.values():
        assert f"http://studio.example.com{reverse(f'api:{spec.url_name}')}?wait=20" in html
        for language in ("curl", "python", "js"):
            assert f'id="{spec.kind}-{language}"' in html
    assert f"ask_{issued.api_key.prefix}_…" in html and issued.secret not in html
    assert "from audioseal_studio import Client" in html and 'base_url="http://studio.example.com"' in html
    assert "studio.analyze_emotion(" in html and "studio.beatsync(" in html
    assert theirs.prefix not in html
    # Another tenant's key id is not a choice here.
    chosen = people.client("member").get(reverse("dashboard:quickstart"), {"key": str(theirs.pk)})
    assert theirs.prefix not in chosen.content.decode()


def test_quick_start_skips_revoked_keys_and_says_when_there_is_none(people):
    key = services.issue_api_key(people.tenant, "old").api_key
    services.revoke_api_key(key)
    html = people.client("owner").get(reverse("dashboard:quickstart")).content.decode()
    assert key.prefix not in html and "create one" in html and "ask_…" in html
