"""The dashboard's side of batches and URL input: the New job page offers a multi-file drop, the session (with
its CSRF token) creates a batch and a job from a URL through the API, the batch page lists items and counts
and is tenant-scoped; bad input through the session leaves nothing stored."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from billing.models import Reservation
from jobs.models import Batch, Job
from testing.assertions import assert_error
from testing.factories import MODEL_BACKEND
from testing.https_files import Route
from testing.uploads import FIXTURES, stored_files, tone_wav_bytes, upload

pytestmark = pytest.mark.django_db(transaction=True)


def session_client(user) -> tuple[Client, str]:
    """A signed-in browser-like client that enforces CSRF, and the token the dashboard's pages carry."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user, backend=MODEL_BACKEND)
    page = client.get(reverse("dashboard:job-new"))
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.content.decode())[1]
    return client, token


def test_new_job_page_accepts_several_files_for_single_input_kinds(people):
    page = people.client("member").get(reverse("dashboard:job-new")).content.decode()
    assert 'id="watermark_embed-file"' in page
    embed_input = re.search(r'<input type="file" id="watermark_embed-file"[^>]*>', page, re.S)[0]
    assert "multiple" in embed_input
    beatsync_input = re.search(r'<input type="file" id="beatsync-video"[^>]*>', page, re.S)[0]
    assert "multiple" not in beatsync_input  # two inputs per job: not batchable
    assert '"batchEndpoint": "/api/v1/batches"' in page
    assert 'id="watermark_embed-file_url"' in page and 'id="beatsync-file_url"' not in page  # input by URL


def test_a_session_batch_with_a_bad_file_and_its_page(people, _isolated_media):
    client, token = session_client(people.users["member"])
    response = client.post(
        "/api/v1/batches",
        {"kind": "watermark_detect", "file": [upload("a.wav", content=tone_wav_bytes(0.5)),
                                              upload("notes.wav", content=b"not audio\n" * 50)]},
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 202, response.json()
    batch_id = response.json()["id"]
    page = client.get(reverse("dashboard:batch-detail", kwargs={"pk": batch_id}))
    assert page.status_code == 200
    html = page.content.decode()
    assert "a.wav" in html and "notes.wav" in html and "INVALID_FORMAT" in html
    assert 'data-batch-count="queued">1<' in html and 'data-batch-count="refused">1<' in html
    assert len(stored_files(_isolated_media)) == 1

    # Another organisation's member cannot see it.
    assert people.client("outsider").get(reverse("dashboard:batch-detail", kwargs={"pk": batch_id})).status_code == 404


def test_a_session_job_from_a_url_and_bad_urls_leave_nothing(people, https_files, _isolated_media):
    client, token = session_client(people.users["member"])
    https_files.routes["/speech.wav"] = Route(body=(FIXTURES / "speech_16k_mono.wav").read_bytes())
    ok = client.post("/api/v1/watermark/detect", {"file_url": https_files.url("/speech.wav")},
                     HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 202, ok.json()
    before = (Job.objects.count(), stored_files(_isolated_media), Reservation.objects.count())
    assert before[0] == 1 and len(before[1]) == 1 and before[2] == 1

    for url, status, code in [
        (f"https://127.0.0.1:{https_files.port}/speech.wav", 400, "URL_NOT_ALLOWED"),
        ("https://10.0.0.1/speech.wav", 400, "URL_NOT_ALLOWED"),
        (https_files.url("/missing.wav"), 422, "URL_FETCH_FAILED"),
    ]:
        assert_error(client.post("/api/v1/watermark/detect", {"file_url": url}, HTTP_X_CSRFTOKEN=token), status, code)
    assert (Job.objects.count(), stored_files(_isolated_media), Reservation.objects.count()) == before
    assert Batch.objects.count() == 0
