"""The developer console pages: the API request log, usage over time (chart and CSV) and quick-start snippets.

They live in jobs because they combine every layer below: accounts' request log and keys, billing's usage
ledger and plans, and jobs' own kinds and job rows (usage by API key goes through the job that was billed).
They only read; every query is inside the session's current tenant.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.views import View
from django.views.generic import TemplateView

from accounts import request_log
from accounts import selectors as account_selectors
from accounts.forms import RequestLogFilterForm
from accounts.models import ApiKey
from accounts.views import DashboardMixin
from billing import selectors as billing_selectors
from jobs.kinds import KINDS, KindSpec
from jobs.models import Job, JobKind

# --- request log --------------------------------------------------------------------------------------------


class RequestLogView(DashboardMixin, TemplateView):
    """Every API request made with the organisation's keys, refused ones included, newest first; filter by
    status, key, method, or search a request id (what an error body and ``X-Request-ID`` carry), a path or an
    error code. Members see it too: it holds no secret. The Redis buffer is drained first
    (``accounts.request_log``), so a request made a moment ago is listed."""

    template_name = "dashboard/requests.html"
    nav = "requests"
    page_size = 50

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        request_log.drain()
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        keys = list(account_selectors.tenant_keys(self.tenant))
        form = RequestLogFilterForm(self.request.GET or None, keys=keys)
        chosen = form.filters() if form.is_valid() else account_selectors.RequestFilters()
        rows = account_selectors.api_requests(self.tenant, chosen)
        page = Paginator(rows, self.page_size).get_page(self.request.GET.get("page"))
        query = self.request.GET.copy()
        query.pop("page", None)
        context.update(
            form=form, page=page, rows=list(page.object_list), query=query.urlencode(),
            filtered=chosen != account_selectors.RequestFilters(),
            retention_days=billing_selectors.request_log_days(self.tenant),
        )
        return context


# --- usage over time ----------------------------------------------------------------------------------------

RANGES = {"period": "This billing period", "90d": "Last 90 days"}
GROUPINGS = {"kind": "By job kind", "key": "By API key"}
NO_KEY = "Dashboard (no key)"


@dataclass(frozen=True)
class UsageQuery:
    """Which days and which series the Usage page (and its CSV) shows."""

    range: str
    by: str
    since: datetime
    until: datetime

    @classmethod
    def from_request(cls, request: HttpRequest, tenant) -> UsageQuery:
        wanted_range = request.GET.get("range", "period")
        wanted_range = wanted_range if wanted_range in RANGES else "period"
        by = request.GET.get("by", "kind")
        by = by if by in GROUPINGS else "kind"
        now = timezone.now()
        if wanted_range == "period":
            since, until = billing_selectors.period_bounds(billing_selectors.subscription_for(tenant), now)
            until = min(until, now)
        else:
            today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            since, until = today - timedelta(days=89), now
        return cls(range=wanted_range, by=by, since=since, until=until)

    def days(self) -> list[date]:
        first, last = self.since.astimezone(UTC).date(), self.until.astimezone(UTC).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def job_api_key():
    """The API key of the job a ledger row billed (null for dashboard jobs): usage by key, which billing's
    ledger does not carry, through the jobs table."""
    return Subquery(Job.objects.filter(pk=OuterRef("job_id")).values("api_key_id")[:1])


def usage_rows(tenant, query: UsageQuery) -> list[dict[str, Any]]:
    """The ledger's days × series for ``query``, each series named for people (kind label, key name)."""
    series = "kind" if query.by == "kind" else job_api_key()
    rows = billing_selectors.daily_usage(tenant, query.since, query.until, series=series)
    if query.by == "kind":
        names = dict(JobKind.choices)
    else:
        keys = ApiKey.objects.filter(tenant=tenant, pk__in={r["series"] for r in rows if r["series"]})
        names = {k.pk: f"{k.name} (ask_{k.prefix}_…)" for k in keys}
    return [{**row, "label": names.get(row["series"], NO_KEY if row["series"] is None else str(row["series"]))}
            for row in rows]


def usage_chart(query: UsageQuery, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Minutes per day per series, every day of the range present (0 when nothing was billed)."""
    days = query.days()
    index = {day: i for i, day in enumerate(days)}
    series: dict[str, list[float]] = {}
    for row in rows:
        values = series.setdefault(row["label"], [0.0] * len(days))
        if row["day"] in index:
            values[index[row["day"]]] += round(row["seconds"] / 60, 2)
    return {
        "labels": [day.isoformat() for day in days],
        "datasets": [{"label": label, "values": values} for label, values in sorted(series.items())],
    }


def usage_totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        total = totals.setdefault(row["label"], {"label": row["label"], "seconds": 0, "jobs": 0})
        total["seconds"] += row["seconds"]
        total["jobs"] += row["jobs"]
    return [{**t, "minutes": t["seconds"] / 60} for t in sorted(totals.values(), key=lambda t: -t["seconds"])]


class UsageView(DashboardMixin, TemplateView):
    """Billed audio minutes per day, by job kind or by API key, for the current period or the last 90 days:
    a stacked bar chart (``static/js/app.js``, data in a JSON script element: no inline script) over a table
    of the same numbers, and the CSV of them."""

    template_name = "dashboard/usage.html"
    nav = "usage"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        query = UsageQuery.from_request(self.request, self.tenant)
        rows = usage_rows(self.tenant, query)
        totals = usage_totals(rows)
        context.update(
            query=query, ranges=RANGES, groupings=GROUPINGS, grouping_label=GROUPINGS[query.by],
            chart=usage_chart(query, rows), totals=totals,
            total_minutes=sum(t["minutes"] for t in totals), total_jobs=sum(t["jobs"] for t in totals),
            csv_url=reverse("dashboard:usage-csv") + f"?range={query.range}&by={query.by}",
        )
        return context


class UsageCsvView(DashboardMixin, View):
    """The Usage page's numbers as CSV: one line per day and series that had usage."""

    def get(self, request: HttpRequest) -> HttpResponse:
        query = UsageQuery.from_request(request, self.tenant)
        rows = usage_rows(self.tenant, query)
        name = f"usage-{self.tenant.slug}-{query.range}-by-{query.by}.csv"
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        writer = csv.writer(response)
        writer.writerow(["date", "job_kind" if query.by == "kind" else "api_key", "jobs", "seconds", "minutes"])
        for row in rows:
            series = row["series"] if query.by == "kind" else row["label"]
            writer.writerow([row["day"].isoformat(), series, row["jobs"], row["seconds"], f"{row['seconds'] / 60:.2f}"])
        return response


# --- quick start --------------------------------------------------------------------------------------------

# Example values per kind: the file names a snippet uploads and the options worth showing.
EXAMPLES: dict[str, dict[str, Any]] = {
    JobKind.WATERMARK_EMBED: {"files": {"file": "speech.wav"}, "fields": {"message": "1A2B"},
                              "python": ('job = studio.embed("speech.wav", message="1A2B", wait=60)\n'
                                         "print(job.status, job.result.message)\n"
                                         'studio.download_output(job, "marked.wav")')},
    JobKind.WATERMARK_DETECT: {"files": {"file": "marked.wav"}, "fields": {},
                               "python": ('job = studio.detect("marked.wav", wait=60)\n'
                                          "print(job.status, job.result.detected, job.result.message)")},
    JobKind.WATERMARK_REPORT: {"files": {"file": "marked.wav", "original": "speech.wav"}, "fields": {},
                               "python": ('job = studio.robustness_report("marked.wav", original="speech.wav", '
                                          "wait=60)\n"
                                          'print(job.status, job.result["summary"]["text"])')},
    JobKind.EMOTION: {"files": {"file": "speech.wav"}, "fields": {"granularity": "utterance"},
                      "python": ('job = studio.analyze_emotion("speech.wav", granularity="utterance", wait=60)\n'
                                 "print(job.status, job.result)")},
    JobKind.BEATSYNC: {"files": {"video": "dance.mp4", "music": "music.mp3"}, "fields": {},
                       "python": ('job = studio.beatsync("dance.mp4", "music.mp3", wait=60)\n'
                                  'studio.download_output(job, "synced.mp4")')},
}


def snippets_for(spec: KindSpec, base_url: str, key_hint: str) -> list[dict[str, str]]:
    """curl, Python SDK and JavaScript ``fetch`` for one kind: real endpoint, real base URL, the key's prefix
    (the secret itself was shown once and is not known here: the snippets read it from the environment)."""
    example = EXAMPLES[spec.kind]
    url = base_url + reverse(f"api:{spec.url_name}")
    parts = [f"-F {name}=@{filename}" for name, filename in example["files"].items()]
    parts += [f"-F {name}={value}" for name, value in example["fields"].items()]
    curl = (f'export STUDIO_API_KEY="{key_hint}"  # the full key, shown once when it was created\n'
            'curl -H "Authorization: Bearer $STUDIO_API_KEY" \\\n     '
            + " ".join(parts) + f' \\\n     "{url}?wait=20"')
    python = ("# pip install audioseal-studio; export STUDIO_API_KEY=" + key_hint + "\n"
              "from audioseal_studio import Client\n\n"
              f'with Client(base_url="{base_url}") as studio:  # the key from $STUDIO_API_KEY\n'
              + "\n".join("    " + line for line in example["python"].splitlines()))
    appends = [f'form.append("{name}", await openAsBlob("{filename}"), "{filename}");'
               for name, filename in example["files"].items()]
    appends += [f'form.append("{name}", "{value}");' for name, value in example["fields"].items()]
    javascript = (
        '// Node 20+ (ES module); STUDIO_API_KEY="' + key_hint + '"\n'
        'import { openAsBlob } from "node:fs";\n\n'
        "const form = new FormData();\n" + "\n".join(appends) + "\n"
        f'const response = await fetch("{url}?wait=20", {{\n'
        '  method: "POST",\n'
        "  headers: { Authorization: `Bearer ${process.env.STUDIO_API_KEY}` },\n"
        "  body: form,\n"
        "});\n"
        "const job = await response.json();\n"
        "if (!response.ok) {\n"
        "  throw new Error(`${job.error.code}: ${job.error.message} (request ${job.error.request_id})`);\n"
        "}\n"
        "console.log(job.id, job.status, job.result);"
    )
    return [
        {"id": f"{spec.kind}-curl", "language": "curl", "code": curl},
        {"id": f"{spec.kind}-python", "language": "Python SDK", "code": python},
        {"id": f"{spec.kind}-js", "language": "JavaScript (fetch)", "code": javascript},
    ]


class QuickStartView(DashboardMixin, TemplateView):
    """Copyable snippets for every job kind, with one of the organisation's keys (by prefix: chosen with
    ``?key=``, else the newest usable one) and the base URL this page was served from."""

    template_name = "dashboard/quickstart.html"
    nav = "quickstart"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        keys = [k for k in account_selectors.tenant_keys(self.tenant) if not k.is_revoked and not k.is_expired]
        wanted = self.request.GET.get("key", "")
        key = next((k for k in keys if str(k.pk) == wanted), keys[0] if keys else None)
        key_hint = f"ask_{key.prefix}_…" if key else "ask_…"
        base_url = self.request.build_absolute_uri("/").rstrip("/")
        context.update(
            keys=keys, key=key, base_url=base_url,
            kinds=[{"spec": spec, "label": JobKind(spec.kind).label, "snippets": snippets_for(spec, base_url, key_hint)}
                   for spec in KINDS.values()],
        )
        return context


urlpatterns = [
    path("requests/", RequestLogView.as_view(), name="requests"),
    path("usage/", UsageView.as_view(), name="usage"),
    path("usage.csv", UsageCsvView.as_view(), name="usage-csv"),
    path("quickstart/", QuickStartView.as_view(), name="quickstart"),
]
