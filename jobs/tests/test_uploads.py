"""Upload validation shared by every audio endpoint: one set of cases, run against each endpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobs.models import Job
from testing.assertions import assert_error
from testing.uploads import BAD_AUDIO_CASES, bad_audio_upload, stored_files, upload

pytestmark = pytest.mark.django_db

AUDIO_ENDPOINTS = {
    "embed": ("/api/v1/watermark/embed", {}),
    "detect": ("/api/v1/watermark/detect", {}),
    "emotion": ("/api/v1/emotion/analyze", {"granularity": "utterance"}),
    "report": ("/api/v1/watermark/report", {}),
}


@pytest.mark.parametrize("case", sorted(BAD_AUDIO_CASES))
@pytest.mark.parametrize("endpoint", sorted(AUDIO_ENDPOINTS))
def test_bad_audio_is_refused_and_nothing_is_kept(api_client, _isolated_media, settings, endpoint, case):
    settings.MAX_AUDIO_SECONDS = 600
    url, extra = AUDIO_ENDPOINTS[endpoint]
    file, status, code = bad_audio_upload(case)
    assert_error(api_client.post(url, {"file": file, **extra}, format="multipart"), status, code)
    assert Job.objects.count() == 0
    assert stored_files(_isolated_media) == []


@pytest.mark.parametrize("endpoint", sorted(AUDIO_ENDPOINTS))
def test_size_and_duration_limits(api_client, _isolated_media, settings, endpoint):
    url, extra = AUDIO_ENDPOINTS[endpoint]
    settings.MAX_UPLOAD_BYTES = 10_000
    body = assert_error(api_client.post(url, {"file": upload("speech_16k_mono.wav"), **extra}, format="multipart"),
                        413, "FILE_TOO_LARGE")
    assert body["error"]["details"]["limit_bytes"] == 10_000
    settings.MAX_UPLOAD_BYTES = 10_000_000
    settings.MAX_AUDIO_SECONDS = 1.0
    assert_error(api_client.post(url, {"file": upload("speech.mp3"), **extra}, format="multipart"),
                 422, "AUDIO_TOO_LONG")
    assert Job.objects.count() == 0 and stored_files(_isolated_media) == []


@pytest.mark.parametrize("endpoint", sorted(AUDIO_ENDPOINTS))
def test_no_key_no_job(client, _isolated_media, endpoint):
    url, extra = AUDIO_ENDPOINTS[endpoint]
    assert_error(client.post(url, {"file": upload("speech_16k_mono.wav"), **extra}), 401, "UNAUTHENTICATED")
    assert Job.objects.count() == 0 and stored_files(_isolated_media) == []


def test_web_process_never_imports_torch_or_funasr():
    """Loading every URL, view and serializer and probing an upload must not pull in the ML stack."""
    code = (
        "import django, sys, os;"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'audioseal_site.settings');"
        "django.setup();"
        "from django.urls import get_resolver; get_resolver().url_patterns;"
        "import jobs.api.views, jobs.services, jobs.api.serializers, audioseal_site.urls;"
        "from jobs.kinds import probe_audio; from testing.uploads import FIXTURES;"
        "probe_audio(FIXTURES / 'speech.m4a', 60);"
        "from jobs.kinds import report_battery, report_seconds; report_battery();"
        "report_seconds({'file': {'duration_seconds': 3.0}}, 'file');"
        "print(sorted(m for m in ('torch', 'funasr', 'audioseal') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("endpoint", sorted(AUDIO_ENDPOINTS))
def test_two_file_parts_are_refused_not_silently_dropped(api_client, _isolated_media, endpoint):
    url, extra = AUDIO_ENDPOINTS[endpoint]
    two = [upload("speech_16k_mono.wav"), upload("speech.mp3")]
    body = assert_error(api_client.post(url, {"file": two, **extra}, format="multipart"), 400, "VALIDATION_ERROR")
    assert "file" in body["error"]["details"]["fields"]
    assert Job.objects.count() == 0 and stored_files(_isolated_media) == []
