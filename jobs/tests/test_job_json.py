"""A job's JSON is written out field by field (``JobSerializer.to_representation``, the cost of DRF's generic
walk was a tenth of a submission's CPU): it must stay exactly what DRF's ``ModelSerializer`` gives, for jobs of
every kind and in every state, with and without a request (absolute or relative output URLs)."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from jobs.api.serializers import JobSerializer
from jobs.models import Job, JobKind, JobStatus
from testing.uploads import upload

pytestmark = pytest.mark.django_db(transaction=True)


def _states(job: Job) -> list[Job]:
    """The job as submitted, running, succeeded (result, output, model), failed, canceled with a callback."""
    now = timezone.now()
    running = Job.objects.get(pk=job.pk)
    running.status, running.progress, running.started_at = JobStatus.RUNNING, 40, now
    succeeded = Job.objects.get(pk=job.pk)
    succeeded.status, succeeded.progress, succeeded.progress_message = JobStatus.SUCCEEDED, 100, "Done"
    succeeded.started_at, succeeded.finished_at = now, now
    succeeded.result = {"detected": True, "message": "1A2B", "segments": [], "nested": {"x": [1, 2.5, None]}}
    succeeded.output_file, succeeded.model_name, succeeded.model_version = "outputs/x.wav", "audioseal", "v1"
    failed = Job.objects.get(pk=job.pk)
    failed.status, failed.error_code, failed.error_message = JobStatus.FAILED, "DECODE_FAILED", "Bad file."
    failed.finished_at = now.replace(microsecond=0)
    canceled = Job.objects.get(pk=job.pk)
    canceled.status, canceled.callback_url = JobStatus.CANCELED, "https://example.com/hook"
    canceled.extra_inputs = {"music": {"file": "inputs/m.mp3", "format": "mp3", "filename": "m.mp3"}}
    return [job, running, succeeded, failed, canceled]


@pytest.mark.parametrize("path,data", [
    ("/api/v1/watermark/detect", {}),
    ("/api/v1/watermark/embed", {"message": "1a2b"}),
    ("/api/v1/emotion/analyze", {"granularity": "frame"}),
])
def test_job_json_is_drf_s_generic_json(api_client, redis_clean, path, data):
    response = api_client.post(path, {"file": upload("speech_16k_mono.wav"), **data}, format="multipart")
    assert response.status_code == 202, response.json()
    fresh = Job.objects.get(pk=response.json()["id"])
    request = Request(APIRequestFactory().get("/api/v1/jobs"))
    for job in _states(fresh):
        for context in ({"request": request}, {}):
            serializer = JobSerializer(context=context)
            assert serializer.to_representation(job) == serializer.generic_representation(job), job.status
    listed = api_client.get("/api/v1/jobs").json()["results"]
    assert listed[0] == api_client.get(f"/api/v1/jobs/{fresh.pk}").json()
    assert fresh.kind in JobKind.values and listed[0]["kind"] == fresh.kind
