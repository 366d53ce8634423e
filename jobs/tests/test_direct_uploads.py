"""Presigned direct uploads against a real S3-compatible server (moto): POST /uploads → PUT → a job from the
upload id, consumed once; refused uploads (not audio, over the plan limit) are deleted; unused ones expire
through retention; local storage says plainly that presigned uploads need S3."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from billing import services as billing_services
from billing.models import Reservation
from jobs.models import DirectUpload, Job, JobStatus
from jobs.upkeep import retention
from testing.assertions import assert_error
from testing.uploads import FIXTURES, tone_wav_bytes

pytestmark = pytest.mark.django_db(transaction=True)

UPLOADS = "/api/v1/uploads"
EMBED = "/api/v1/watermark/embed"
SPEECH = (FIXTURES / "speech_16k_mono.wav").read_bytes()


def keys(client, bucket: str, prefix: str = "") -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def start_upload(api_client, data: bytes, filename: str = "speech.wav", *, declare_size: bool = True) -> dict:
    form = {"filename": filename, **({"size_bytes": len(data)} if declare_size else {})}
    response = api_client.post(UPLOADS, form, format="json")
    assert response.status_code == 201, response.json()
    upload = response.json()
    put = requests.put(upload["upload_url"], data=data, headers=upload["headers"], timeout=10)
    assert put.status_code == 200, put.text
    return upload


def test_local_storage_refuses_with_a_clear_code(api_client):
    body = assert_error(api_client.post(UPLOADS, {"filename": "a.wav"}, format="json"), 409,
                        "PRESIGNED_UPLOADS_UNAVAILABLE")
    assert "S3" in body["error"]["message"]
    assert DirectUpload.objects.count() == 0


def test_put_then_create_a_job_from_the_upload_once(api_client, other_client, s3_bucket, run_worker):
    bucket, client = s3_bucket
    upload = start_upload(api_client, SPEECH)
    assert upload["method"] == "PUT" and upload["max_bytes"] > 0
    row = DirectUpload.objects.get(pk=upload["id"])
    assert keys(client, bucket, "uploads/") == [row.storage_name]

    # Another tenant cannot use it.
    assert_error(other_client.post(EMBED, {"upload_id": upload["id"]}, format="multipart"), 404, "UPLOAD_NOT_FOUND")

    response = api_client.post(EMBED, {"upload_id": upload["id"], "message": "1A2B"}, format="multipart")
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["id"])
    assert job.input_file == row.storage_name and job.input["filename"] == "speech.wav"  # used in place: no copy
    row.refresh_from_db()
    assert row.consumed_at is not None and row.job_id == job.pk
    assert_error(api_client.post(EMBED, {"upload_id": upload["id"]}, format="multipart"), 409,
                 "UPLOAD_ALREADY_USED")
    assert Job.objects.count() == 1

    run_worker(["watermark"])
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, (job.error_code, job.error_message)
    assert job.output_file in keys(client, bucket, "outputs/")


@pytest.mark.parametrize("case", ["not_audio", "over_plan_limit"])
def test_a_refused_upload_is_deleted_and_leaves_nothing(api_client, tenant, s3_bucket, case):
    bucket, client = s3_bucket
    if case == "not_audio":
        data, status, code = b"this is not audio at all\n" * 40, 415, "INVALID_FORMAT"
    else:
        data, status, code = tone_wav_bytes(4.0), 413, "FILE_TOO_LARGE"
    upload = start_upload(api_client, data, declare_size=False)
    if case == "over_plan_limit":  # the plan's limit drops after the upload was started
        billing_services.change_subscription(tenant, overrides={"max_file_bytes": 100_000})
    body = assert_error(api_client.post(EMBED, {"upload_id": upload["id"]}, format="multipart"), status, code)
    assert body["error"]["details"]["field"] == "upload_id"
    assert DirectUpload.objects.count() == 0 and Job.objects.count() == 0 and Reservation.objects.count() == 0
    assert keys(client, bucket) == []


def test_over_the_plan_limit_is_refused_before_signing(api_client, tenant, s3_bucket):
    billing_services.change_subscription(tenant, overrides={"max_file_bytes": 100_000})
    assert_error(api_client.post(UPLOADS, {"filename": "a.wav", "size_bytes": 200_000}, format="json"), 413,
                 "FILE_TOO_LARGE")
    assert DirectUpload.objects.count() == 0


def test_not_uploaded_yet_and_expired(api_client, s3_bucket):
    bucket, client = s3_bucket
    pending = api_client.post(UPLOADS, {"filename": "a.wav"}, format="json").json()
    assert_error(api_client.post(EMBED, {"upload_id": pending["id"]}, format="multipart"), 409, "UPLOAD_INCOMPLETE")
    used = start_upload(api_client, SPEECH, "used.wav")
    assert api_client.post(EMBED, {"upload_id": used["id"]}, format="multipart").status_code == 202
    stale = start_upload(api_client, SPEECH, "stale.wav")

    later = timezone.now() + timedelta(hours=2)
    DirectUpload.objects.filter(pk=stale["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(api_client.post(EMBED, {"upload_id": stale["id"]}, format="multipart"), 410, "UPLOAD_EXPIRED")
    DirectUpload.objects.update(expires_at=later - timedelta(hours=1))
    from jobs import direct_uploads

    assert direct_uploads.clean_expired(now=later) == 2  # the pending and the stale one; not the used one
    assert list(DirectUpload.objects.values_list("pk", flat=True)) == [DirectUpload.objects.get().pk]
    assert str(DirectUpload.objects.get().pk) == used["id"]
    assert [k.rsplit("/", 1)[-1] for k in keys(client, bucket, "uploads/")] == ["used.wav"]
    assert "uploads_expired" in retention.periodic()
