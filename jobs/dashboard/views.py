"""The dashboard's jobs pages: overview, new job, the jobs list and a job's detail.

These views only read and render; creating, cancelling and reading live progress go through the REST API
(session + CSRF), so the browser exercises exactly the code API customers use and the limits, messages and
error codes are the API's own. Every query is scoped to the session's current tenant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.views.generic import TemplateView

from accounts.views import DashboardMixin
from billing.selectors import limits_for, usage_summary
from core.units import human_bytes
from jobs.api import serializers
from jobs.kinds import KINDS
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
            "files": [{"name": i.name, "label": i.label, **UPLOAD_TYPES[i.media]} for i in spec.inputs],
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
                    {"name": f["name"], "extensions": list(f["extensions"]), "typeMessage": f["type_message"]}
                    for f in k["files"]
                ]} for k in kinds
            },
            "jobUrl": reverse("dashboard:job-detail", kwargs={"pk": "00000000-0000-0000-0000-000000000000"}),
        }
        context["output_formats"] = OUTPUT_FORMATS
        context["emotion_demo"] = emotion_model_is_demo()
        return context


class JobDetailView(DashboardMixin, TemplateView):
    template_name = "dashboard/job_detail.html"
    nav = "jobs"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        job = get_object_or_404(Job, pk=self.kwargs["pk"], tenant=self.tenant)
        data = job_json(job, self.request)
        result = job.result or {}
        context.update(
            job=job,
            job_data=data,
            result=result,
            input_url=reverse("api:job-input", kwargs={"pk": job.pk}) if job.input_file else None,
            music_url=(
                reverse("api:job-input", kwargs={"pk": job.pk}) + "?role=music"
                if "music" in (job.extra_inputs or {}) else None
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


# --- what a job page shows, in words ------------------------------------------------------------------------

# The shipped emotion model (media_ops/demo_models/emotion2vec_demo, random weights, see its README): a job
# whose result names it gets a plain warning that its scores mean nothing.
DEMO_EMOTION_DIR = Path(settings.DEMO_MODELS_DIR) / "emotion2vec_demo"
DEMO_EMOTION_MODEL = DEMO_EMOTION_DIR.name


def emotion_model_is_demo() -> bool:
    """Whether new emotion jobs run on the demo model (``EMOTION_MODEL_DIR`` left at its default)."""
    try:
        return Path(settings.EMOTION_MODEL_DIR).resolve() == DEMO_EMOTION_DIR.resolve()
    except OSError:  # pragma: no cover - an unreadable path is not the demo
        return False


# A job's options as the New job page names them; values are mapped where the API's spelling is a code.
OPTION_LABELS = {
    "message": "Message",
    "output_format": "Output format",
    "granularity": "Granularity",
    "extract_embedding": "Speech embedding",
    "trim_silence": "Trim silence",
}
OPTION_VALUES = {
    "granularity": {"utterance": "Whole recording", "frame": "Over time (frame by frame)"},
    "output_format": {"": "Same as the input"},
}


def option_rows(job: Job) -> list[tuple[str, str]]:
    """``(label, value)`` for each option the job was created with: ``True`` reads "Yes", codes read as the
    New job page offered them."""
    rows = []
    for key, value in (job.params or {}).items():
        if key == "callback_url":
            continue  # shown on the webhook side; a URL is not an "option"
        if isinstance(value, bool):
            text = "Yes" if value else "No"
        elif value in (None, ""):
            text = OPTION_VALUES.get(key, {}).get("", "—")
        else:
            text = OPTION_VALUES.get(key, {}).get(value, str(value).upper() if key == "output_format" else str(value))
        rows.append((OPTION_LABELS.get(key, key.replace("_", " ").capitalize()), text))
    return rows


def cache_info(job: Job, tenant) -> dict[str, Any] | None:
    """For a job answered from the result cache (``result.cached``): the earlier job it reused, when that
    job still exists in this tenant, and whether it was billed (``RESULT_CACHE_CHARGE``)."""
    result = job.result or {}
    if not result.get("cached"):
        return None
    source = None
    source_id = result.get("cached_from_job") or ""
    if source_id:
        try:
            source = Job.objects.filter(tenant=tenant, pk=source_id).only("id", "input", "created_at").first()
        except (ValueError, TypeError):  # a malformed id in an old result
            source = None
    return {"source": source, "charged": bool(settings.RESULT_CACHE_CHARGE)}


def _seconds(value: Any, digits: int = 2) -> str:
    return "—" if value is None else f"{float(value):.{digits}f} s"


def _offset_sentence(offset: float) -> str:
    """The sign convention of ``media_ops.beatsync`` in words: music time t plays at video time t + offset."""
    if abs(offset) < 0.0005:
        return "The music starts with the video's first frame."
    if offset > 0:
        return f"The music starts {offset:.3f} s after the video's first frame."
    return f"The video starts {-offset:.3f} s into the music."


def _confidence_word(confidence: float) -> str:
    # media_ops.beatsync.alignment: below ~0.5 the match only just clears the acceptance bar.
    if confidence >= 0.8:
        return "high"
    if confidence >= 0.5:
        return "medium"
    return "low"


def _media_rows(info: dict[str, Any], *, picture: bool) -> list[tuple[str, str]]:
    rows = [("Duration", _seconds(info.get("duration_seconds")))]
    if picture:
        if info.get("width") and info.get("height"):
            rows.append(("Picture", f"{info['width']} × {info['height']}"))
        rows.append(("Frame rate", f"{float(info['fps']):.2f} fps" if info.get("fps") else "unknown"))
        if info.get("video_codec"):
            rows.append(("Video codec", str(info["video_codec"]).upper()))
    rows.append(("Has sound", "Yes" if info.get("has_audio") else "No"))
    if info.get("audio_codec"):
        rows.append(("Audio codec", str(info["audio_codec"]).upper()))
    if info.get("audio_sample_rate"):
        rows.append(("Sample rate", f"{info['audio_sample_rate']} Hz"))
    if info.get("audio_channels"):
        rows.append(("Channels", str(info["audio_channels"])))
    if info.get("size_bytes"):
        rows.append(("Size", human_bytes(info["size_bytes"])))
    return rows


def beatsync_summary(result: dict[str, Any]) -> dict[str, Any]:
    """A beat-sync result as short labelled facts (the page used to print its nested dicts as Python text):
    the offset in a sentence, the confidence in a word and a number, then one small table per file."""
    offset = float(result.get("offset_seconds") or 0.0)
    confidence = float(result.get("confidence") or 0.0)
    output = result.get("output") or {}
    output_rows = [("Duration", _seconds(output.get("duration_seconds")))]
    if "video_copied" in output:
        output_rows.append(("Picture", "copied unchanged" if output.get("video_copied") else "re-encoded (H.264)"))
    if output.get("audio_codec"):
        output_rows.append(("Audio", f"{str(output['audio_codec']).upper()} · {output.get('audio_sample_rate')} Hz"
                                     f" · {output.get('audio_channels')} ch"))
    output_rows.append(("Silence trimmed", "Yes" if output.get("trimmed") else "No"))
    if output.get("trimmed"):
        output_rows.append(("Kept", f"{_seconds(output.get('source_start_seconds'))} – "
                                    f"{_seconds(output.get('source_end_seconds'))} of the video"))
    alignment = result.get("alignment") or {}
    technical = [
        (label, f"{float(alignment[key]):.3f}" if isinstance(alignment.get(key), float) else str(alignment[key]))
        for key, label in (
            ("peak_ratio", "Peak ratio"), ("peak_zscore", "Peak z-score"),
            ("coarse_offset_seconds", "Coarse offset (s)"), ("coarse_peak_ratio", "Coarse peak ratio"),
            ("correlation", "Envelope correlation"), ("candidates_checked", "Candidates checked"),
        )
        if key in alignment
    ]
    return {
        "offset_seconds": offset,
        "offset_sentence": _offset_sentence(offset),
        "confidence_percent": round(confidence * 100),
        "confidence_word": _confidence_word(confidence),
        "overlap": _seconds(result.get("overlap_seconds"), 1),
        "files": [
            {"title": "Video", "rows": _media_rows(result.get("video") or {}, picture=True)},
            {"title": "Music", "rows": _media_rows(result.get("music") or {}, picture=False)},
            {"title": "Output", "rows": output_rows},
        ],
        "technical": technical,
    }


TIMELINE_POINTS = 120  # at most this many points on the "emotion over time" chart
TIMELINE_TOP = 3  # emotions drawn by name; the rest are summed into "other emotions"


def emotion_timeline(frames: dict[str, Any] | None) -> dict[str, Any] | None:
    """The frame scores (50 per second, nine labels: 684 × 9 lines for a 14 s clip) reduced to what a person
    can read: bucket means over at most ``TIMELINE_POINTS`` steps, the ``TIMELINE_TOP`` emotions with the
    highest mean by name and the others summed, drawn as stacked areas that add up to 1."""
    if not frames or not frames.get("scores"):
        return None
    scores = frames["scores"]
    labels = list(frames["labels"])
    hop = float(frames["hop_seconds"])
    count = len(scores)
    means = [sum(row[j] for row in scores) / count for j in range(len(labels))]
    top = sorted(range(len(labels)), key=lambda j: means[j], reverse=True)[:TIMELINE_TOP]
    rest = [j for j in range(len(labels)) if j not in top]
    size = max(1, -(-count // TIMELINE_POINTS))  # frames per bucket, rounded up
    seconds, series = [], {j: [] for j in top}
    other: list[float] = []
    for start in range(0, count, size):
        bucket = scores[start:start + size]
        seconds.append(round((start + len(bucket) / 2) * hop, 3))
        for j in top:
            series[j].append(round(sum(row[j] for row in bucket) / len(bucket), 4))
        other.append(round(sum(row[j] for row in bucket for j in rest) / len(bucket), 4))
    datasets = [{"label": labels[j], "values": series[j]} for j in top]
    if rest:
        datasets.append({"label": "other emotions", "values": other})
    return {
        "seconds": seconds, "datasets": datasets, "bucket_seconds": round(size * hop, 3),
        "named": len(top), "others_summed": bool(rest),
    }


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
]
