"""S3 storage through the production code path against a real S3-compatible HTTP server (moto, subprocess):
upload -> job -> output in the bucket -> download redirects to a presigned URL the server serves; retention
deletes the objects; uploads are streamed in parts; objects stay private."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from jobs.models import Job, JobStatus
from testing.assertions import assert_error
from testing.servers import MotoS3Server

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture(scope="module")
def s3_server():
    server = MotoS3Server()
    server.start()
    yield server
    server.stop()


def s3_options(server: MotoS3Server, bucket: str, **extra) -> dict:
    return {
        "bucket_name": bucket,
        "endpoint_url": server.endpoint,
        "region_name": "us-east-1",
        "access_key": "testing",
        "secret_key": "testing",
        "querystring_expire": 120,
        "multipart_chunksize": 5 * MB,  # S3's smallest part: a 6 MB upload goes up in two parts
        **extra,
    }


@pytest.fixture
def bucket(s3_server, settings):
    """A fresh private bucket, made the default storage exactly as settings.py does for STORAGE_BUCKET."""
    name = f"audioseal-{uuid.uuid4().hex[:10]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "audioseal_site.storage.PrivateS3Storage", "OPTIONS": s3_options(s3_server, name)
        },
    }
    yield name, client


def keys(client, bucket: str, prefix: str = "") -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def float_wav(seconds: float, rate: int = 44_100, channels: int = 2) -> bytes:
    """A 32-bit float WAV (about 350 KB per second at 44.1 kHz stereo): big enough for a multipart upload."""
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([tone] * channels, axis=1), rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def conforms_to_the_schema(api_key, operation_path: str, job_id: str) -> None:
    """The download's answer (302 under S3, 410 once expired) is one the schema documents: status, headers
    (``Location`` on the 302) and content type, checked by schemathesis against the live schema."""
    import schemathesis

    from audioseal_site.wsgi import application

    operation = schemathesis.openapi.from_wsgi("/api/schema/", application)[operation_path]["GET"]
    operation.Case(path_parameters={"id": job_id}).call_and_validate(
        headers={"Authorization": f"Bearer {api_key.secret}"}
    )


def test_upload_job_output_presigned_download_and_retention(api_client, api_key, run_worker, bucket, s3_server):
    name, client = bucket
    audio = float_wav(18.0)
    assert len(audio) > 6 * MB
    response = api_client.post(
        "/api/v1/emotion/analyze",
        {"file": SimpleUploadedFile("long take.wav", audio), "extract_embedding": "true"},
        format="multipart",
    )
    assert response.status_code == 202, response.json()
    job_id = response.json()["id"]
    job = Job.objects.get(pk=job_id)

    # The upload is in the bucket, streamed in parts, and private.
    assert keys(client, name, f"inputs/{job.tenant_id}/{job_id}/") == [job.input_file]
    head = client.head_object(Bucket=name, Key=job.input_file)
    assert head["ContentLength"] == len(audio)
    assert head["ETag"].strip('"').endswith("-2"), head["ETag"]  # multipart: two 5 MB-or-less parts

    # The worker downloads the input from the bucket and stores the output there.
    run_worker(["emotion"])
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, (job.error_code, job.error_message)
    assert job.output_file.startswith(f"outputs/{job.tenant_id}/{job_id}/")
    stored = client.get_object(Bucket=name, Key=job.output_file)["Body"].read()
    assert np.load(io.BytesIO(stored)).ndim == 1
    # Private: only the owner is granted anything (moto cannot read the ACL of a multipart object, so the
    # single-part output is the one checked).
    grants = client.get_object_acl(Bucket=name, Key=job.output_file)["Grants"]
    assert grants and all(g["Grantee"].get("URI") != ALL_USERS for g in grants)
    assert all(g["Grantee"]["Type"] == "CanonicalUser" for g in grants)

    # The download is a redirect to a short-lived presigned URL that the S3 server serves.
    response = api_client.get(f"/api/v1/jobs/{job_id}/output")
    assert response.status_code == 302
    location = response["Location"]
    url = urlparse(location)
    assert f"{url.scheme}://{url.netloc}" == s3_server.endpoint and url.path == f"/{name}/{job.output_file}"
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["120"] and query["X-Amz-Signature"]
    served = requests.get(location, timeout=10)
    assert served.status_code == 200 and served.content == stored
    assert served.headers["Content-Disposition"] == f'attachment; filename="{job.output_filename}"'
    conforms_to_the_schema(api_key, "/api/v1/jobs/{id}/output", job_id)
    conforms_to_the_schema(api_key, "/api/v1/jobs/{id}/input", job_id)

    # Retention: past the tenant's retention the objects go, the row stays, downloads answer 410.
    from jobs.upkeep.retention import expire_files

    Job.objects.filter(pk=job_id).update(created_at=timezone.now() - timedelta(days=400))
    report = expire_files()
    assert report.jobs_expired == 1 and report.files_deleted == 2 and not report.errors
    assert keys(client, name, "inputs/") == [] and keys(client, name, "outputs/") == []
    assert_error(api_client.get(f"/api/v1/jobs/{job_id}/output"), 410, "FILE_EXPIRED")
    conforms_to_the_schema(api_key, "/api/v1/jobs/{id}/output", job_id)
    detail = api_client.get(f"/api/v1/jobs/{job_id}")
    assert detail.status_code == 200 and detail.json()["status"] == "succeeded"
    assert detail.json()["result"]["embedding_shape"]


def test_large_files_are_streamed_in_parts_both_ways(bucket, tmp_path):
    name, client = bucket
    source = tmp_path / "big.bin"
    chunk = np.random.default_rng(1).integers(0, 256, MB, dtype=np.uint8).tobytes()
    with open(source, "wb") as fh:
        for _ in range(11):
            fh.write(chunk)
    with open(source, "rb") as fh:
        saved = default_storage.save("inputs/t/j/big.bin", File(fh))
    assert client.head_object(Bucket=name, Key=saved)["ETag"].strip('"').endswith("-3")
    dest = default_storage.download_to(saved, tmp_path / "back.bin")
    assert dest.read_bytes() == source.read_bytes()


def test_presigned_urls_use_the_public_endpoint_when_set(bucket, s3_server, settings):
    name, client = bucket
    public = s3_server.endpoint.replace("127.0.0.1", "localhost")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "audioseal_site.storage.PrivateS3Storage",
            "OPTIONS": s3_options(s3_server, name, public_endpoint_url=public),
        },
    }
    saved = default_storage.save("outputs/t/j/x.txt", io.BytesIO(b"hello"))
    url = default_storage.url(saved)
    assert url.startswith(f"{public}/{name}/outputs/t/j/x.txt?")
    assert requests.get(url, timeout=10).content == b"hello"


def test_public_acl_and_unsigned_urls_are_refused(s3_server):
    from audioseal_site.storage import PrivateS3Storage

    with pytest.raises(ImproperlyConfigured):
        PrivateS3Storage(**s3_options(s3_server, "b", default_acl="public-read"))
    with pytest.raises(ImproperlyConfigured):
        PrivateS3Storage(**s3_options(s3_server, "b", querystring_auth=False))


def test_storage_readiness_check_writes_reads_and_deletes_in_the_bucket(bucket):
    from audioseal_site.health import readiness

    name, client = bucket
    ready, body = readiness(["storage"])
    assert ready, body
    assert body["checks"]["storage"]["backend"] == "PrivateS3Storage"
    assert keys(client, name) == []  # the probe object was deleted


def test_settings_select_s3_when_a_bucket_is_configured(tmp_path):
    """settings.py itself (not a test override) builds the S3 backend from STORAGE_* variables."""
    import os
    import subprocess
    import sys

    from django.conf import settings as django_settings

    env = {
        **os.environ, "EMBEDDED_SERVICES": "false", "DATABASE_URL": "sqlite://:memory:", "REDIS_URL": "redis://x",
        "STORAGE_BUCKET": "media-bucket", "STORAGE_ENDPOINT_URL": "http://s3.internal:9000",
        "STORAGE_PUBLIC_ENDPOINT_URL": "https://files.example.com", "STORAGE_URL_EXPIRY_SECONDS": "90",
    }
    code = (
        "import django; django.setup();"
        "from django.core.files.storage import default_storage as s;"
        "b = s.bucket_name;"
        "print(type(s._wrapped).__name__, b, s.endpoint_url, s.public_endpoint_url,"
        " s.querystring_expire, s.default_acl)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=django_settings.BASE_DIR, capture_output=True, text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "PrivateS3Storage", "media-bucket", "http://s3.internal:9000", "https://files.example.com", "90",
        "None",
    ]
