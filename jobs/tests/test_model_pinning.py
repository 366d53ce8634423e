"""Model pinning: a request may name ``model_version``; unknown is 422 with the available list; every kind's
result says which model version ran, and it is the one the API lists; a worker never runs a pinned job on
another model."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs import model_versions
from jobs.models import Job, JobKind, JobStatus
from testing import media as media_factory
from testing.assertions import assert_error
from testing.uploads import stored_files, upload

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINTS = {
    JobKind.WATERMARK_EMBED: ("/api/v1/watermark/embed", {"message": "1A2B"}),
    JobKind.WATERMARK_DETECT: ("/api/v1/watermark/detect", {}),
    JobKind.EMOTION: ("/api/v1/emotion/analyze", {}),
}


@pytest.mark.parametrize("kind", sorted(ENDPOINTS))
def test_an_unknown_version_is_refused_with_the_available_list(api_client, kind, _isolated_media):
    url, extra = ENDPOINTS[kind]
    body = assert_error(
        api_client.post(url, {"file": upload("speech_16k_mono.wav"), "model_version": "v0-nope", **extra},
                        format="multipart"),
        422, "UNKNOWN_MODEL_VERSION",
    )
    available = body["error"]["details"]["available"]
    assert available == [ref.as_dict() for ref in model_versions.available(kind)] and available[0]["version"]
    assert Job.objects.count() == 0 and stored_files(_isolated_media) == []


def test_every_kind_records_the_version_that_ran_and_a_pin_is_kept(api_client, run_worker, tmp_path):
    ids = {}
    for kind, (url, extra) in ENDPOINTS.items():
        pin = model_versions.available(kind)[0].version
        response = api_client.post(url, {"file": upload("speech_16k_mono.wav"), "model_version": pin, **extra},
                                   format="multipart")
        assert response.status_code == 202, response.json()
        assert response.json()["params"]["model_version"] == pin
        ids[kind] = response.json()["id"]
    music = media_factory.make_music(tmp_path / "track.mp3", duration_s=4.0, seed=5)
    video = media_factory.make_dance_video(tmp_path / "dance.mp4", offset_s=0.5, music_duration_s=4.0,
                                           video_duration_s=3.0, seed=5)
    response = api_client.post("/api/v1/beatsync/align", {
        "video": SimpleUploadedFile(video.name, video.read_bytes()),
        "music": SimpleUploadedFile(music.name, music.read_bytes()),
    }, format="multipart")
    assert response.status_code == 202, response.json()
    ids[JobKind.BEATSYNC] = response.json()["id"]

    run_worker()
    for kind, job_id in ids.items():
        job = api_client.get(f"/api/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded", job
        assert job["model"] == model_versions.available(kind)[0].as_dict(), (kind, job["model"])


def test_a_worker_never_runs_a_pinned_job_on_another_model(api_client, run_worker):
    url, extra = ENDPOINTS[JobKind.WATERMARK_DETECT]
    response = api_client.post(url, {"file": upload("speech_16k_mono.wav")}, format="multipart")
    job = Job.objects.get(pk=response.json()["id"])
    # As if the deployment changed its detector between submission and run.
    Job.objects.filter(pk=job.pk).update(params={"model_version": "000000000000"})
    run_worker(["watermark"])
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "MODEL_VERSION_UNAVAILABLE"
    assert job.model_version == ""
