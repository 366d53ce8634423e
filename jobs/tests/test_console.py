"""The job pages in words (issue 19's defects, checked on the rendered HTML): beat-sync results as labelled
facts, the emotion-over-time chart reduced and demo-model scores labelled as such, cached results labelled,
options and times without Python's or the API's spelling, upload limits in human units, and the landing page
that signed-out visitors get at ``/``."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.dashboard.presenters import DEMO_EMOTION_MODEL, TIMELINE_POINTS, emotion_timeline
from jobs.models import JobKind, JobStatus
from jobs.tests.test_dashboard import EMOTION_RESULT, make_job
from testing.uploads import FIXTURES, upload

pytestmark = pytest.mark.django_db

BEATSYNC_RESULT = {
    "offset_seconds": 1.2345,
    "confidence": 0.91,
    "overlap_seconds": 9.5,
    "video_duration_seconds": 10.0,
    "music_duration_seconds": 30.0,
    "alignment": {"offset_seconds": 1.2345, "confidence": 0.91, "peak_ratio": 4.2, "peak_zscore": 31.0,
                  "coarse_offset_seconds": 1.23, "coarse_peak_ratio": 2.5, "coarse_peak_zscore": 12.0,
                  "correlation": 0.7, "candidates_checked": 3, "video_audio_seconds": 10.0, "music_seconds": 30.0},
    "video": {"container": "MP4", "format_name": "mov,mp4", "size_bytes": 2_400_000, "duration_seconds": 10.0,
              "has_video": True, "has_audio": True, "video_codec": "h264", "width": 1280, "height": 720,
              "fps": None, "audio_codec": "aac", "audio_sample_rate": 44100, "audio_channels": 2},
    "music": {"container": "MP3", "format_name": "mp3", "size_bytes": 480_000, "duration_seconds": 30.0,
              "has_video": False, "has_audio": True, "audio_codec": "mp3", "audio_sample_rate": 44100,
              "audio_channels": 2},
    "output": {"duration_seconds": 10.0, "size_bytes": 2_500_000, "video_codec": "h264", "video_copied": True,
               "audio_codec": "aac", "audio_sample_rate": 48000, "audio_channels": 2, "source_start_seconds": 0.0,
               "source_end_seconds": 10.0, "trimmed": False, "silence_span_seconds": None},
}
LABELS = ["angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"]


def page(people, job, who: str = "member") -> str:
    return people.client(who).get(reverse("dashboard:job-detail", args=[job.pk])).content.decode()


def visible_text(html: str) -> str:
    """The page without its JSON data blocks, scripts and tags: what a person reads."""
    html = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", html)).replace("\xa0", " ")


# --- defect 1: beat-sync results ----------------------------------------------------------------------------


def test_beatsync_result_is_a_readable_summary_not_python_dicts(people):
    job = make_job(people.tenant, kind=JobKind.BEATSYNC, result=BEATSYNC_RESULT, filename="dance.mp4")
    html = page(people, job)
    text = visible_text(html)
    assert "{'" not in text and "None" not in text and "True" not in text and "False" not in text
    assert "The music starts 1.234 s after the video's first frame." in text
    assert "91 % (high)" in text and "High confidence" in text
    summary = re.search(r"data-beatsync-summary.*?</section>", html, re.S)[0]
    assert "1280 × 720" in summary and "unknown" in summary  # the frame rate the probe did not find
    assert re.search(r"Has sound</dt><dd>Yes", summary)
    assert re.search(r"Silence trimmed</dt><dd>No", summary)
    assert "copied unchanged" in summary and "AAC · 48000 Hz · 2 ch" in summary
    assert "2.3 MB" in summary  # the video's size in human units


def test_beatsync_negative_offset_reads_as_the_video_starting_into_the_music(people):
    job = make_job(people.tenant, kind=JobKind.BEATSYNC, result={**BEATSYNC_RESULT, "offset_seconds": -2.5,
                                                                   "confidence": 0.3})
    text = visible_text(page(people, job))
    assert "The video starts 2.500 s into the music." in text and "30 % (low)" in text


# --- defect 6: the emotion chart and the demo model ---------------------------------------------------------


def test_emotion_timeline_keeps_the_top_emotions_and_at_most_the_point_budget():
    frames = {"hop_seconds": 0.02, "labels": LABELS,
              "scores": [[(0.5 if j == 6 else 0.3 if j == 0 else 0.2 / 7) for j in range(9)] for _ in range(684)]}
    timeline = emotion_timeline(frames)
    assert [d["label"] for d in timeline["datasets"]] == ["sad", "angry", LABELS[1], "other emotions"]
    assert all(len(d["values"]) <= TIMELINE_POINTS for d in timeline["datasets"])
    assert len(timeline["seconds"]) == len(timeline["datasets"][0]["values"]) > 50
    # The bands still add up to 1 in every step (stacked areas).
    for step in range(len(timeline["seconds"])):
        assert sum(d["values"][step] for d in timeline["datasets"]) == pytest.approx(1, abs=1e-3)
    assert timeline["seconds"][-1] == pytest.approx(684 * 0.02, abs=0.2)


def test_emotion_page_sends_the_reduced_timeline_and_labels_the_demo_model(people):
    frames = {"hop_seconds": 0.02, "labels": LABELS, "scores": [[1 / 9] * 9 for _ in range(684)]}
    job = make_job(people.tenant, kind=JobKind.EMOTION, result={**EMOTION_RESULT, "frames": frames},
                   model_name=DEMO_EMOTION_MODEL, model_version="abc123")
    html = page(people, job)
    data = json.loads(re.search(r'<script id="emotion-timeline" type="application/json">(.*?)</script>', html,
                                re.S)[1])
    assert len(data["datasets"]) == 4 and len(data["seconds"]) <= TIMELINE_POINTS
    assert 'data-source="emotion-timeline"' in html
    assert "These scores are not real results." in html and "Demo model: Happy" in html

    real = make_job(people.tenant, kind=JobKind.EMOTION, result=EMOTION_RESULT,
                    model_name="emotion2vec_plus_large", model_version="def456")
    assert "not real results" not in page(people, real)


def test_new_job_page_says_the_emotion_model_is_the_demo(people, settings):
    url = reverse("dashboard:job-new")
    assert "data-demo-model" in people.client("member").get(url).content.decode()  # the default model dir
    settings.EMOTION_MODEL_DIR = "/models/emotion2vec_plus_large"
    assert "data-demo-model" not in people.client("member").get(url).content.decode()


# --- defect 11: cached jobs, raw codes and times ------------------------------------------------------------


def test_cached_job_is_labelled_and_links_the_job_it_reused(people):
    first = make_job(people.tenant, kind=JobKind.EMOTION, result={**EMOTION_RESULT, "cached": False})
    repeat = make_job(people.tenant, kind=JobKind.EMOTION,
                      result={**EMOTION_RESULT, "cached": True, "cached_from_job": str(first.pk)})
    html = page(people, repeat)
    assert "data-cached" in html and "Cached result" in html and "Nothing was billed for it." in html
    assert reverse("dashboard:job-detail", args=[first.pk]) in html
    assert "Cached result" not in page(people, first)
    # Another tenant's job id in the result (impossible by construction, but never linked).
    theirs = make_job(people.other_tenant, kind=JobKind.EMOTION, result=EMOTION_RESULT)
    odd = make_job(people.tenant, kind=JobKind.EMOTION,
                   result={**EMOTION_RESULT, "cached": True, "cached_from_job": str(theirs.pk)})
    assert reverse("dashboard:job-detail", args=[theirs.pk]) not in page(people, odd)


def test_options_read_as_words_not_python_values(people):
    job = make_job(people.tenant, kind=JobKind.EMOTION, result=EMOTION_RESULT,
                   params={"granularity": "frame", "extract_embedding": True})
    text = visible_text(page(people, job))
    assert "True" not in text and "extract_embedding" not in text and "granularity=" not in text
    assert re.search(r"Granularity\s+Over time \(frame by frame\)", text)
    assert re.search(r"Speech embedding\s+Yes", text)
    beat = make_job(people.tenant, kind=JobKind.BEATSYNC, result=BEATSYNC_RESULT, params={"trim_silence": False})
    assert re.search(r"Trim silence\s+No", visible_text(page(people, beat)))


def test_canceled_just_now_not_zero_minutes_ago(people):
    job = make_job(people.tenant, status=JobStatus.CANCELED, finished_at=timezone.now())
    html = page(people, job)
    assert "canceled just now" in html and "0 minutes" not in html
    older = make_job(people.tenant, status=JobStatus.CANCELED, finished_at=timezone.now() - timedelta(hours=2))
    assert "canceled 2 hours ago" in visible_text(page(people, older))


def test_failed_job_leads_with_the_message(people):
    job = make_job(people.tenant, status=JobStatus.FAILED, error_code="INVALID_FORMAT",
                   error_message="The WAV file is truncated.")
    html = page(people, job)
    assert html.index("The WAV file is truncated.") < html.index("INVALID_FORMAT")


def test_billing_page_shows_kind_labels_and_refusal_in_words(people):
    from billing.models import UsageEvent
    from billing.selectors import period_bounds, subscription_for

    start, end = period_bounds(subscription_for(people.tenant))
    UsageEvent.objects.create(tenant=people.tenant, job_id=make_job(people.tenant).pk, kind="watermark_embed",
                              quantity=60, period_start=start, period_end=end)
    text = visible_text(people.client("owner").get(reverse("dashboard:billing")).content.decode())
    assert "watermark_embed" not in text and "Watermark embed" in text
    assert "QUOTA_EXCEEDED" not in text and "new jobs are refused until the next period" in text
    assert "MB" in text and "bytes" not in text


# --- defect 7: sizes in human units, the same in the API and on the page ------------------------------------


def test_size_refusal_is_in_the_units_the_page_shows(people, settings):
    from billing.models import Subscription

    Subscription.objects.filter(tenant=people.tenant).update(max_file_bytes_override=25 * 1024 * 1024)
    client = people.client("member")
    assert "up to 25 MB per file" in client.get(reverse("dashboard:job-new")).content.decode()
    Subscription.objects.filter(tenant=people.tenant).update(max_file_bytes_override=20_000)
    body = client.post(reverse("api:watermark-detect"), {"file": upload("speech_16k_mono.wav")}).json()
    size = (FIXTURES / "speech_16k_mono.wav").stat().st_size
    assert body["error"]["code"] == "FILE_TOO_LARGE"
    assert re.fullmatch(r"`file` is [\d.]+ KB; the limit is 19.5 KB\.", body["error"]["message"])
    assert body["error"]["details"] == {"field": "file", "size_bytes": size, "limit_bytes": 20_000}


# --- the landing page ---------------------------------------------------------------------------------------


def test_signed_out_visitors_get_the_landing_page(people):
    response = Client().get(reverse("dashboard:overview"))
    assert response.status_code == 200
    html = response.content.decode()
    text = visible_text(html)
    for words in ("watermark", "region", "emotion", "Beat-sync", "API"):
        assert words.lower() in text.lower(), words
    assert f'href="{reverse("dashboard:signup")}"' in html and f'href="{reverse("dashboard:login")}"' in html
    signed_in = people.client("member").get(reverse("dashboard:overview"))
    assert signed_in.status_code == 200 and "Usage this period" in signed_in.content.decode()
