"""The dashboard's jobs pages: overview, new job, the jobs list and a job's detail.

These views only read and render; creating, cancelling and reading live progress go through the REST API
(session + CSRF), so the browser exercises exactly the code API customers use and the limits, messages and
error codes are the API's own. Every query is scoped to the session's current tenant.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.views.generic import TemplateView

from accounts.views import DashboardMixin
from billing.selectors import limits_for, usage_summary
from jobs import batch_selectors, batches
from jobs.api import serializers
from jobs.dashboard.presenters import (
    DEMO_EMOTION_MODEL,
    beatsync_summary,
    cache_info,
    emotion_model_is_demo,
    emotion_timeline,
    option_rows,
)
from jobs.kinds import KINDS, report_battery
from jobs.models import ACTIVE_STATUSES, Job, JobKind, JobStatus
from media_ops.audio import OUTPUT_FORMATS

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".mp4")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v")
MUSIC_EXTENSIONS = (".mp3", ".m4a", ".wav", ".flac", ".aac")
# The API's own wording (jobs.services / media_ops), so a refusal reads the same in the page and the API.
AUDIO_TYPE_MESSAGE = "The file is not a supported audio file; upload WAV, FLAC, Ogg, MP3 or M4A/AAC audio."
MEDIA_TYPE_MESSAGE = "Not a readable audio or video file."


def upload_limit_bytes(tenant) -> int:
    """The per-file limit the API enforces for this tenant: its plan's, capped by the global ceiling."""
    return int(limits_for(tenant).max_file_bytes)


# What each kind of upload accepts in the browser (a first check only: the API sniffs the bytes).
UPLOAD_TYPES: dict[str, dict[str, Any]] = {
    "audio": {"accept": ",".join(AUDIO_EXTENSIONS) + ",audio/*", "extensions": AUDIO_EXTENSIONS,
              "type_message": AUDIO_TYPE_MESSAGE, "hint": "WAV, FLAC, Ogg, MP3 or M4A/AAC"},
    "video": {"accept": ",".join(VIDEO_EXTENSIONS) + ",video/*", "extensions": VIDEO_EXTENSIONS,
              "type_message": MEDIA_TYPE_MESSAGE, "hint": "MP4 or MOV"},
    "music": {"accept": ",".join(MUSIC_EXTENSIONS) + ",audio/*", "extensions": MUSIC_EXTENSIONS,
              "type_message": MEDIA_TYPE_MESSAGE, "hint": "MP3, M4A, WAV or FLAC"},
}


def job_kinds(tenant) -> list[dict[str, Any]]:
    """What the New job page offers, read from ``jobs.kinds.KINDS`` (the one declaration of each kind)."""
    return [
        {
            "kind": spec.kind, "label": spec.action, "endpoint": reverse(f"api:{spec.url_name}"),
            "summary": spec.summary,
            "files": [
                {"name": i.name, "label": i.label, "required": i.required, **UPLOAD_TYPES[i.media]} for i in spec.inputs
            ],
        }
        for spec in KINDS.values()
    ]


def usage_overview(tenant) -> dict[str, Any]:
    """Minutes used this billing period against the plan (``billing.selectors.usage_summary``), for the
    overview's chart: the same numbers ``GET /api/v1/usage`` returns."""
    summary = usage_summary(tenant)
    minutes = summary["minutes"]
    return {
        "plan_name": summary["plan"]["name"],
        "used_minutes": minutes["used"],
        "reserved_minutes": minutes["reserved"],
        "included_minutes": minutes["included"],
        "granted_minutes": minutes["granted"],
        "over_limit": minutes["remaining"] <= 0 and minutes["included"] > 0,
        "period_start": summary["period"]["start"],
        "period_end": summary["period"]["end"],
        "subscription": summary["subscription"],
    }


def job_json(job: Job, request) -> dict[str, Any]:
    return serializers.JobSerializer(job, context={"request": request}).data


class OverviewView(DashboardMixin, TemplateView):
    """``/``: the signed-in tenant's overview; a signed-out visitor gets the landing page instead of being
    bounced to the sign-in form, so the site's address says what the product is."""

    template_name = "dashboard/overview.html"
    nav = "overview"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return render(request, "landing.html")
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        jobs = Job.objects.filter(tenant=self.tenant)
        usage = usage_overview(self.tenant)
        since = usage["period_start"]
        by_status = jobs.filter(created_at__gte=since).order_by().values("status").annotate(n=Count("id"))
        counts = {row["status"]: row["n"] for row in by_status}
        context["status_counts"] = [
            {"status": value, "label": label, "count": counts.get(value, 0)}
            for value, label in JobStatus.choices
        ]
        context["jobs_this_period"] = sum(counts.values())
        context["recent_jobs"] = list(jobs.order_by("-created_at")[:6])
        context["usage"] = usage
        context["usage_chart"] = {
            "used": usage["used_minutes"],
            "reserved": usage["reserved_minutes"],
            "included": usage["included_minutes"],
        }
        context["has_jobs"] = jobs.exists()
        return context


class JobListView(DashboardMixin, TemplateView):
    """Filterable, paginated list; active rows are refreshed in place from the API by static/js/app.js."""

    template_name = "dashboard/jobs.html"
    nav = "jobs"
    page_size = 20

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        params = self.request.GET
        status = params.get("status", "")
        kind = params.get("kind", "")
        query = params.get("q", "").strip()
        jobs = Job.objects.filter(tenant=self.tenant)
        if status in JobStatus.values:
            jobs = jobs.filter(status=status)
        if kind in JobKind.values:
            jobs = jobs.filter(kind=kind)
        if query:
            condition = Q(input__filename__icontains=query)
            try:
                import uuid

                condition |= Q(pk=uuid.UUID(query))
            except ValueError:
                pass
            jobs = jobs.filter(condition)
        page = Paginator(jobs.order_by("-created_at", "-id"), self.page_size).get_page(params.get("page"))
        keep = params.copy()
        keep.pop("page", None)
        context.update(
            page=page,
            jobs=list(page.object_list),
            filters={"status": status, "kind": kind, "q": query},
            status_choices=JobStatus.choices,
            kind_choices=JobKind.choices,
            query_string=keep.urlencode(),
            filtered=bool(status or kind or query),
            active_statuses=sorted(ACTIVE_STATUSES),
        )
        return context


class JobNewView(DashboardMixin, TemplateView):
    template_name = "dashboard/job_new.html"
    nav = "new"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        kinds = job_kinds(self.tenant)
        wanted = self.request.GET.get("kind")
        context["kinds"] = kinds
        context["selected_kind"] = wanted if wanted in JobKind.values else JobKind.WATERMARK_EMBED
        context["upload_config"] = {
            "maxBytes": upload_limit_bytes(self.tenant),
            "kinds": {
                k["kind"]: {"endpoint": k["endpoint"], "files": [
                    {"name": f["name"], "extensions": list(f["extensions"]), "typeMessage": f["type_message"],
                     "required": f["required"]}
                    for f in k["files"]
                ]} for k in kinds
            },
            "jobUrl": reverse("dashboard:job-detail", kwargs={"pk": "00000000-0000-0000-0000-000000000000"}),
            # Several files dropped on a single-input kind become one batch (POST /api/v1/batches).
            "batchEndpoint": reverse("api:batch-list"),
            "batchUrl": reverse("dashboard:batch-detail", kwargs={"pk": "00000000-0000-0000-0000-000000000000"}),
            "maxBatchItems": batches.max_items(),
        }
        context["output_formats"] = OUTPUT_FORMATS
        context["report_max_seconds"] = report_battery()["max_duration_seconds"]
        context["emotion_demo"] = emotion_model_is_demo()
        return context


class JobDetailView(DashboardMixin, TemplateView):
    template_name = "dashboard/job_detail.html"
    nav = "jobs"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        job = get_object_or_404(Job, pk=self.kwargs["pk"], tenant=self.tenant)
        data = job_json(job, self.request)
        result = data.get("result") or {}  # as the API shows it: a detection's regions carry your registry entries
        context.update(
            job=job,
            job_data=data,
            result=result,
            input_url=reverse("api:job-input", kwargs={"pk": job.pk}) if job.input_file else None,
            music_url=(
                reverse("api:job-input", kwargs={"pk": job.pk}) + "?role=music"
                if "music" in (job.extra_inputs or {}) else None
            ),
            original_url=(  # a robustness report's optional original
                reverse("api:job-input", kwargs={"pk": job.pk}) + "?role=original"
                if "original" in (job.extra_inputs or {}) else None
            ),
            output_url=reverse("api:job-output", kwargs={"pk": job.pk}) if job.output_file else None,
            output_media=media_kind(job.output_content_type),
            input_media="video" if job.kind == JobKind.BEATSYNC else "audio",
            files_expired=bool(job.files_expired_at),
            can_cancel=job.status in ACTIVE_STATUSES,
            option_rows=option_rows(job),
            cache=cache_info(job, self.tenant),
            beatsync=beatsync_summary(result) if job.kind == JobKind.BEATSYNC and result else None,
            emotion_scores=sorted(
                (result.get("scores") or {}).items(), key=lambda item: item[1], reverse=True
            ) if job.kind == JobKind.EMOTION else [],
            emotion_timeline=emotion_timeline(result.get("frames")) if job.kind == JobKind.EMOTION else None,
            demo_model=job.kind == JobKind.EMOTION and job.model_name == DEMO_EMOTION_MODEL,
        )
        return context


class BatchDetailView(DashboardMixin, TemplateView):
    """A batch: counts by status and every item (its job row, live like the jobs list, or why it was refused);
    ``static/js/app.js`` refreshes the counts from ``GET /api/v1/batches/<id>`` until the batch completes."""

    template_name = "dashboard/batch_detail.html"
    nav = "jobs"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        batch = get_object_or_404(batch_selectors.batches_for(self.tenant), pk=self.kwargs["pk"])
        counts = batch_selectors.batch_counts(batch)
        context.update(
            batch=batch,
            items=batch_selectors.batch_items(batch),
            counts=counts,
            status_counts=[
                {"status": value, "label": label, "count": counts[value]} for value, label in JobStatus.choices
            ],
            batch_api=reverse("api:batch-detail", kwargs={"pk": batch.pk}),
            active_statuses=sorted(ACTIVE_STATUSES),
        )
        return context


def media_kind(content_type: str) -> str:
    """Which player, if any, can show an output: audio, video or none (e.g. a .npy embedding)."""
    if content_type.startswith("audio/"):
        return "audio"
    if content_type.startswith("video/"):
        return "video"
    return ""


urlpatterns = [
    path("", OverviewView.as_view(), name="overview"),
    path("jobs/", JobListView.as_view(), name="jobs"),
    path("jobs/new/", JobNewView.as_view(), name="job-new"),
    path("jobs/<uuid:pk>/", JobDetailView.as_view(), name="job-detail"),
    path("jobs/batches/<uuid:pk>/", BatchDetailView.as_view(), name="batch-detail"),
]
