"""Dashboard jobs pages and the session side of the jobs API: permissions, tenant isolation of every job URL
(pages, input and output downloads), filters and pagination, what each result kind renders, and the
session + CSRF path the New job page uses to POST to the API."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.tests.test_dashboard import ROLES, expected
from jobs.models import Job, JobKind, JobStatus
from testing.assertions import assert_error
from testing.factories import MODEL_BACKEND, client_for
from testing.uploads import FIXTURES, upload

pytestmark = pytest.mark.django_db


def make_job(
    tenant,
    *,
    kind=JobKind.WATERMARK_DETECT,
    status=JobStatus.SUCCEEDED,
    filename="speech.wav",
    result=None,
    output: bytes | None = None,
    **fields,
) -> Job:
    """A job row with a stored input (and output), as the worker leaves it; no queue involved."""
    job = Job(
        id=uuid.uuid4(),
        tenant=tenant,
        kind=kind,
        status=status,
        input={"filename": filename, "format": "wav", "size_bytes": 4, "duration_seconds": 2.0},
        result=result,
        progress=100 if status == JobStatus.SUCCEEDED else 0,
        **fields,
    )
    job.input_file = default_storage.save(
        f"inputs/{tenant.pk}/{job.id}/file-{filename}", ContentFile(b"RIFF")
    )
    if output is not None:
        job.output_file = default_storage.save(f"outputs/{tenant.pk}/{job.id}/out.wav", ContentFile(output))
        job.output_filename, job.output_content_type = "speech-watermarked.wav", "audio/wav"
    job.save(force_insert=True)
    return job


DETECT_RESULT = {
    "detected": True,
    "probability": 0.97,
    "confidence": "high",
    "message": "1A2B",
    "bits": [0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 1],
    "localization": {"hop_seconds": 0.01, "values": [0.1, 0.9, 0.95, 0.97]},
    "watermarked_seconds": 1.9,
}
EMOTION_RESULT = {
    "top": {"label": "happy", "score": 0.6},
    "scores": {
        k: (0.6 if k == "happy" else 0.05)
        for k in ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown")
    },
    "labels_raw": [],
    "frames": {"hop_seconds": 0.02, "labels": ["happy"], "scores": [[0.5], [0.7]]},
}


# --- permissions and isolation ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ROLES)
def test_job_detail_permissions(people, who):
    job = make_job(people.tenant)
    response = people.client(who).get(reverse("dashboard:job-detail", args=[job.pk]))
    assert response.status_code == expected(who, manage=False)


@pytest.mark.parametrize("who", ["member", "admin", "owner"])
def test_other_tenants_job_is_404_everywhere(people, who):
    theirs = make_job(people.other_tenant, output=b"RIFFdata", filename="their-secret.wav")
    client = people.client(who)
    for url in (
        reverse("dashboard:job-detail", args=[theirs.pk]),
        reverse("api:job-detail", args=[theirs.pk]),
        reverse("api:job-input", args=[theirs.pk]),
        reverse("api:job-output", args=[theirs.pk]),
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("api:job-cancel", args=[theirs.pk])).status_code in (403, 404)
    for name in ("dashboard:jobs", "dashboard:overview"):
        assert "their-secret.wav" not in client.get(reverse(name)).content.decode()
    assert "their-secret.wav" not in client.get(reverse("dashboard:jobs") + "?q=their").content.decode()


def test_staff_without_membership_sees_no_jobs(people):
    job = make_job(people.tenant, output=b"RIFF")
    client = people.client("staff")
    assert client.get(reverse("dashboard:job-detail", args=[job.pk])).status_code == 302
    assert client.get(reverse("api:job-detail", args=[job.pk])).status_code in (401, 403)
    assert client.get(reverse("api:job-input", args=[job.pk])).status_code in (401, 403)


# --- input download (session or API key, tenant-scoped like the output) -------------------------------------


def test_input_download_by_session_and_key(people):
    from accounts import services

    job = make_job(people.tenant, filename="talk.wav")
    response = people.client("member").get(reverse("api:job-input", args=[job.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"RIFF"
    assert response["Content-Type"] == "audio/wav" and "talk.wav" in response["Content-Disposition"]
    ours = client_for(services.issue_api_key(people.tenant, "k").secret)
    theirs = client_for(services.issue_api_key(people.other_tenant, "k").secret)
    assert ours.get(reverse("api:job-input", args=[job.pk])).status_code == 200
    assert_error(theirs.get(reverse("api:job-input", args=[job.pk])), 404, "NOT_FOUND")
    assert_error(Client().get(reverse("api:job-input", args=[job.pk])), 401, "UNAUTHENTICATED")


def test_input_download_roles_and_expiry(people):
    job = make_job(people.tenant, kind=JobKind.BEATSYNC, filename="dance.mp4")
    music = default_storage.save(f"inputs/{people.tenant.pk}/{job.id}/music-track.mp3", ContentFile(b"ID3x"))
    job.extra_inputs = {"music": {"file": music, "filename": "track.mp3", "format": "mp3"}}
    job.save()
    client = people.client("owner")
    response = client.get(reverse("api:job-input", args=[job.pk]) + "?role=music")
    assert response.status_code == 200 and response["Content-Type"] == "audio/mpeg"
    assert_error(client.get(reverse("api:job-input", args=[job.pk]) + "?role=nope"), 404, "FILE_NOT_FOUND")
    Job.objects.filter(pk=job.pk).update(files_expired_at=timezone.now())
    assert_error(client.get(reverse("api:job-input", args=[job.pk])), 410, "FILE_EXPIRED")


# --- jobs list ----------------------------------------------------------------------------------------------


def test_jobs_list_filters_search_and_pagination(people):
    for i in range(23):
        make_job(people.tenant, filename=f"clip-{i:02d}.wav")
    failed = make_job(
        people.tenant, status=JobStatus.FAILED, filename="broken.wav", error_code="INVALID_FORMAT"
    )
    make_job(people.tenant, kind=JobKind.EMOTION, status=JobStatus.RUNNING, filename="call.mp3")
    client = people.client("member")
    first = client.get(reverse("dashboard:jobs"))
    assert first.status_code == 200 and len(first.context["jobs"]) == 20
    assert first.context["page"].paginator.count == 25
    second = client.get(reverse("dashboard:jobs") + "?page=2")
    assert len(second.context["jobs"]) == 5
    only_failed = client.get(reverse("dashboard:jobs") + "?status=failed").context["jobs"]
    assert [j.pk for j in only_failed] == [failed.pk]
    emotion = client.get(reverse("dashboard:jobs") + "?kind=emotion").context["jobs"]
    assert [j.input["filename"] for j in emotion] == ["call.mp3"]
    assert [j.pk for j in client.get(reverse("dashboard:jobs") + "?q=BROKEN").context["jobs"]] == [failed.pk]
    assert [j.pk for j in client.get(reverse("dashboard:jobs") + f"?q={failed.pk}").context["jobs"]] == [
        failed.pk
    ]
    # Filters survive paging; the running row is marked for live updates.
    page = client.get(reverse("dashboard:jobs") + "?kind=watermark_detect").content.decode()
    assert "kind=watermark_detect&amp;page=2" in page
    assert 'data-status="running"' in client.get(reverse("dashboard:jobs")).content.decode()


# --- job detail: what each kind renders ---------------------------------------------------------------------


def test_detect_detail_renders_localisation_chart_data(people):
    job = make_job(people.tenant, result=DETECT_RESULT)
    response = people.client("member").get(reverse("dashboard:job-detail", args=[job.pk]))
    html = response.content.decode()
    assert 'data-chart="localization"' in html and "1A2B" in html
    data = json.loads(
        re.search(r'<script id="job-result" type="application/json">(.*?)</script>', html, re.S)[1]
    )
    assert data["localization"]["values"] == DETECT_RESULT["localization"]["values"]
    assert reverse("api:job-input", args=[job.pk]) in html  # the input player


def test_detect_detail_lists_regions_and_the_alignment(people):
    seg = {"start_seconds": 3.53, "end_seconds": 7.4, "probability": 0.99, "confidence": "high", "message": "C0DE",
           "bits": [1] * 16, "bit_probabilities": [1.0] * 16,
           "alignment": {"offset_samples": 48, "polarity": -1, "speed": 1.0}}
    result = {**DETECT_RESULT, "message": "C0DE", "summary": "Watermark found in 2 regions",
              "segments": [seg, {**seg, "start_seconds": 9.0, "end_seconds": 10.5, "message": "BEEF"}],
              "alignment": seg["alignment"]}
    job = make_job(people.tenant, result=result)
    html = people.client("member").get(reverse("dashboard:job-detail", args=[job.pk])).content.decode()
    assert "Watermark found in 2 regions" in html
    table = re.search(r"<table[^>]*data-result-segments.*?</table>", html, re.S)[0]
    assert "3.53–7.40 s" in table and "9.00–10.50 s" in table and "C0DE" in table and "BEEF" in table
    assert "a shift of 48 samples, polarity inversion" in html
    assert "2 watermarked regions shaded" in html  # the chart's text alternative says what it marks
    # A result from before regions existed still renders (no summary, no segments).
    old = make_job(people.tenant, result=DETECT_RESULT)
    html = people.client("member").get(reverse("dashboard:job-detail", args=[old.pk])).content.decode()
    assert "Watermark detected" in html and "data-result-segments" not in html


def test_embed_detail_has_players_downloads_and_verify(people):
    job = make_job(
        people.tenant,
        kind=JobKind.WATERMARK_EMBED,
        output=b"RIFFout",
        result={"message": "BEEF", "bits": [1] * 16, "snr_db": 31.2},
    )
    html = people.client("member").get(reverse("dashboard:job-detail", args=[job.pk])).content.decode()
    output = reverse("api:job-output", args=[job.pk])
    assert f'<audio controls preload="metadata" src="{output}"' in html
    assert "BEEF" in html and "data-verify-output" in html and "Download output" in html
    # One click to a robustness report of the output, with the input as its original and the message given.
    assert re.search(rf'data-detect-endpoint="{reverse("api:watermark-report")}"[^>]*data-verify-original=', html)


def _report_row(name: str, detected: bool, survived: bool) -> dict:
    return {"name": name, "family": "level", "description": f"{name} described", "detected": detected,
            "probability": 1.0 if detected else 0.0, "confidence": "high", "message": "1A2B" if survived else None,
            "message_survived": survived, "bit_accuracy": 1.0 if survived else 0.5, "regions": int(detected),
            "alignment": None, "error": None}


_REPORT_ROWS = [_report_row("gain_-10db", True, True), _report_row("lowpass_3k", False, False)]
REPORT_RESULT = {  # a two-attack report: one attack survived, one broke the watermark
    "battery": {"version": "2026-12-1", "attacks": 2}, "expected_message": "1A2B", "message_source": "detected",
    "reference": _REPORT_ROWS[0], "quality": {"snr_db": 22.04, "segmental_snr_db": 19.7, "offset_samples": 0,
                                              "compared_seconds": 2.0},
    "summary": {"attacks": 2, "detected": 1, "message_survived": 1, "detection_rate": 0.5, "message_rate": 0.5,
                "text": "Watermark detected after 1 of 2 attacks, message exact after 1"},
    "attacks": _REPORT_ROWS, "duration_seconds": 2.0, "compute_seconds": 3.1,
}


def test_report_detail_renders_the_attack_table_and_chart(people):
    job = make_job(people.tenant, kind=JobKind.WATERMARK_REPORT, result=REPORT_RESULT)
    html = people.client("member").get(reverse("dashboard:job-detail", args=[job.pk])).content.decode()
    assert 'data-chart="robustness"' in html and "Watermark detected after 1 of 2 attacks" in html
    table = re.search(r"<table[^>]*data-report-attacks.*?</table>", html, re.S)[0]
    assert re.search(r'data-attack="gain_-10db".*?survived', table, re.S)
    assert re.search(r'data-attack="lowpass_3k".*?broken', table, re.S)
    assert "22.0 dB (segmental 19.7 dB)" in html and "2026-12-1" in html
    data = json.loads(re.search(r'<script id="job-result" type="application/json">(.*?)</script>', html, re.S)[1])
    assert [r["name"] for r in data["attacks"]] == ["gain_-10db", "lowpass_3k"]  # what the chart draws


def test_new_job_page_offers_the_report_with_an_optional_original(people):
    html = people.client("member").get(reverse("dashboard:job-new") + "?kind=watermark_report").content.decode()
    assert 'data-kind-panel="watermark_report"' in html
    assert re.search(r'id="watermark_report-original"[^>]*data-optional', html)
    assert not re.search(r'id="watermark_report-file"[^>]*data-optional', html)


def test_emotion_detail_renders_bar_and_frame_charts(people):
    job = make_job(people.tenant, kind=JobKind.EMOTION, result=EMOTION_RESULT)
    html = people.client("member").get(reverse("dashboard:job-detail", args=[job.pk])).content.decode()
    assert 'data-chart="emotion"' in html and 'data-chart="emotion-frames"' in html
    assert "Happy · 60%" in html


def test_failed_detail_shows_code_and_message(people):
    job = make_job(
        people.tenant,
        status=JobStatus.FAILED,
        error_code="INVALID_FORMAT",
        error_message="The WAV file is truncated.",
    )
    html = people.client("member").get(reverse("dashboard:job-detail", args=[job.pk])).content.decode()
    assert "INVALID_FORMAT" in html and "The WAV file is truncated." in html
    assert "data-cancel" not in html


def test_active_detail_offers_cancel_and_live_progress(people):
    job = make_job(people.tenant, status=JobStatus.RUNNING, progress_message="Embedding watermark")
    html = people.client("member").get(reverse("dashboard:job-detail", args=[job.pk])).content.decode()
    assert f'data-cancel="{reverse("api:job-cancel", args=[job.pk])}"' in html
    assert f'data-api="{reverse("api:job-detail", args=[job.pk])}"' in html and "Embedding watermark" in html


# --- new job page and the session + CSRF path to the API ----------------------------------------------------


def test_new_job_page_carries_the_api_limits(people):
    from billing.selectors import limits_for

    response = people.client("member").get(reverse("dashboard:job-new"))
    html = response.content.decode()
    config = json.loads(
        re.search(r'<script id="upload-config" type="application/json">(.*?)</script>', html, re.S)[1]
    )
    assert config["maxBytes"] == limits_for(people.tenant).max_file_bytes
    assert config["kinds"]["watermark_embed"]["endpoint"] == reverse("api:watermark-embed")
    assert [f["name"] for f in config["kinds"]["beatsync"]["files"]] == ["video", "music"]
    for label in ("Embed watermark", "Detect watermark", "Speech emotion", "Beat-sync video"):
        assert label in html
    assert 'for="opt-message"' in html and 'for="opt-granularity"' in html  # labelled controls


def test_session_post_to_the_api_needs_the_csrf_token(people, redis_clean):
    client = Client(enforce_csrf_checks=True)
    client.force_login(people.users["member"], backend=MODEL_BACKEND)
    page = client.get(reverse("dashboard:job-new"))
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.content.decode())[1]
    data = {"file": upload("speech_16k_mono.wav"), "message": "1a2b"}
    refused = client.post(reverse("api:watermark-embed"), data)
    assert refused.status_code == 403
    data = {"file": upload("speech_16k_mono.wav"), "message": "1a2b"}
    accepted = client.post(reverse("api:watermark-embed"), data, HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 202, accepted.content
    job = Job.objects.get(pk=accepted.json()["id"])
    assert job.tenant == people.tenant and job.created_by == people.users["member"] and job.api_key is None


def test_client_side_messages_match_the_api(people, settings):
    """The page's size message is built from the same template the API uses; compare them for one file."""
    from billing.models import Subscription

    Subscription.objects.filter(tenant=people.tenant).update(max_file_bytes_override=1000)
    client = people.client("member")
    body = client.post(reverse("api:watermark-detect"), {"file": upload("speech_16k_mono.wav")}).json()
    assert body["error"]["code"] == "FILE_TOO_LARGE"
    size = (FIXTURES / "speech_16k_mono.wav").stat().st_size
    from core.units import human_bytes

    assert body["error"]["message"] == f"`file` is {human_bytes(size)}; the limit is 1000 bytes."
    js = (settings.BASE_DIR / "static" / "js" / "app.js").read_text()
    assert '"` is " + formatBytes(file.size) + "; the limit is " + formatBytes(config.maxBytes) + "."' in js
    assert client.get(reverse("dashboard:job-new")).context["upload_config"]["maxBytes"] == 1000
    from jobs.dashboard.views import AUDIO_TYPE_MESSAGE

    bad = client.post(reverse("api:watermark-detect"), {"file": upload("not_audio.wav")}).json()
    assert bad["error"]["code"] == "INVALID_FORMAT"
    assert bad["error"]["message"] == AUDIO_TYPE_MESSAGE


def test_overview_shows_plan_limit_and_status_counts(people):
    from billing.models import Subscription

    make_job(people.tenant, status=JobStatus.FAILED)
    make_job(people.tenant)
    client = people.client("member")
    context = client.get(reverse("dashboard:overview")).context
    counts = {row["status"]: row["count"] for row in context["status_counts"]}
    assert counts["failed"] == 1 and counts["succeeded"] == 1
    assert context["usage"]["included_minutes"] == 60  # the Free plan
    Subscription.objects.filter(tenant=people.tenant).update(included_minutes_override=250)
    html = client.get(reverse("dashboard:overview")).content.decode()
    assert re.search(r"data-usage-limit>250 min<", html)
