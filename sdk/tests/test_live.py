"""The SDK and the ``studio`` CLI against a live server (Django's live server thread on the test session's
PostgreSQL and Redis) and a real ``manage.py run_worker`` process: embed → wait → download → detect with the
message; a real rate limit's ``Retry-After`` waited out; a lost answer retried with the same idempotency key
making one job; the CLI's directory mode with one bad file among three."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest
from audioseal_studio import Client, DetectionResult, EmbedResult, RateLimitError, RetryPolicy
from audioseal_studio.cli import app
from django.conf import settings as django_settings
from typer.testing import CliRunner

from accounts import services as accounts
from billing.models import Subscription
from core.redis import client as redis_client
from jobs.models import Job
from testing.servers import MotoS3Server
from testing.uploads import FIXTURES
from testing.workers import open_reservations

pytestmark = pytest.mark.django_db(transaction=True)

JOB_WAIT = 120  # seconds; a deadline for the worker (it loads its models first), not a timing goal


@pytest.fixture
def secret(tenant) -> str:
    return accounts.issue_api_key(tenant, "sdk").secret


@pytest.fixture
def studio(live_server, secret, redis_clean):
    with Client(secret, base_url=live_server.url) as client:
        yield client


@pytest.mark.slow
def test_embed_wait_download_detect_list_usage(studio, live_server, worker_process, tmp_path, monkeypatch, capsys):
    worker_process("watermark")
    embedded = studio.embed(FIXTURES / "speech_16k_mono.wav", message="1A2B", wait=JOB_WAIT)
    assert embedded.succeeded, embedded
    assert isinstance(embedded.result, EmbedResult) and embedded.result.message == "1A2B"
    assert embedded.model and embedded.model.version

    marked = studio.download_output(embedded, tmp_path)
    assert marked == tmp_path / "speech_16k_mono-watermarked.wav"
    assert marked.read_bytes()[:4] == b"RIFF"
    assert studio.read_output(embedded) == marked.read_bytes()
    original = studio.download_input(embedded, tmp_path / "original.wav")
    assert original.read_bytes() == (FIXTURES / "speech_16k_mono.wav").read_bytes()

    found = studio.detect(marked, wait=JOB_WAIT)
    assert found.succeeded, found
    assert isinstance(found.result, DetectionResult)
    assert found.result.detected and found.result.message == "1A2B"
    assert found.result.segments and found.result.segments[0].message == "1A2B"

    assert [job.id for job in studio.iter_jobs(page_size=1)] == [found.id, embedded.id]  # two pages
    assert [job.id for job in studio.iter_jobs(kind="watermark_embed")] == [embedded.id]
    usage = studio.usage()
    assert usage.minutes.used > 0 and usage.active_jobs == 0
    assert {row.kind: row.jobs for row in usage.by_kind}.get("watermark_embed") == 1

    # The README's example runs as written (with this server's key and URL), in a directory with speech.wav.
    readme = (Path(django_settings.BASE_DIR) / "README.md").read_text()
    example = readme.split("## SDK and CLI", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    example = example.replace('"ask_..."', repr(studio.api_key)).replace('"http://127.0.0.1:8000"',
                                                                         repr(live_server.url))
    shutil.copy(FIXTURES / "speech_16k_mono.wav", tmp_path / "speech.wav")
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md (SDK and CLI)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("succeeded 1A2B ") and printed[1].startswith("True 1A2B [(")
    assert (tmp_path / "marked.wav").exists()


class Recording(httpx.BaseTransport):
    """Sends each request on and keeps each answer's status and headers, and the request it answered."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.answers: list[tuple[int, httpx.Headers]] = []
        self.exchanges: list[tuple[int, httpx.Request]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.answers.append((response.status_code, response.headers))
        self.exchanges.append((response.status_code, request))
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_rate_limit_is_waited_out_for_as_long_as_retry_after_says(live_server, secret, tenant, redis_clean):
    Subscription.objects.filter(tenant=tenant).update(rate_limits_override={"read": 1})
    recording, sleeps = Recording(), []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    with Client(secret, base_url=live_server.url, transport=recording) as studio:
        studio.sleep = sleep
        studio.list_jobs()  # the one request of this minute
        # End the server's window in 4 s, so that its Retry-After says a few seconds rather than ~60.
        redis = redis_client()
        for key in redis.scan_iter("audioseal:ratelimit:*"):
            redis.pexpire(key, 4000)
        with Client(secret, base_url=live_server.url, retry=RetryPolicy(max_retries=0)) as impatient:
            with pytest.raises(RateLimitError) as raised:
                impatient.list_jobs()
        assert raised.value.code == "RATE_LIMITED" and 1 <= raised.value.retry_after <= 4
        assert raised.value.request_id

        page = studio.list_jobs()  # refused once, then answered after the wait the server asked for
    assert page.results == []
    statuses = [status for status, _ in recording.answers]
    assert statuses == [200, 429, 200]
    assert sleeps == [float(recording.answers[1][1]["Retry-After"])]


class LoseFirstAnswer(httpx.BaseTransport):
    """Sends each request to the server, but drops the answer to the first job creation as a reset
    connection would: the job exists on the server, the client does not know it."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.creations: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/watermark/embed"):
            self.creations.append(request)
            if len(self.creations) == 1:
                response.read()
                response.close()
                raise httpx.ReadError("connection reset by peer")
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_retried_creation_reuses_its_idempotency_key_and_makes_one_job(live_server, secret, redis_clean):
    transport = LoseFirstAnswer()
    with Client(secret, base_url=live_server.url, transport=transport) as client:
        client.sleep = lambda seconds: None
        job = client.embed(FIXTURES / "speech_16k_mono.wav", message="1A2B")
    first, second = transport.creations
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] != ""
    assert list(Job.objects.values_list("id", flat=True)) == [uuid.UUID(job.id)]
    assert Job.objects.get().idempotency_key == first.headers["Idempotency-Key"]
    assert open_reservations() == 1  # one job, reserved once


@pytest.fixture
def s3_storage(settings):
    """The production S3 storage against moto's S3 server (a subprocess) and a fresh private bucket."""
    server = MotoS3Server()
    server.start()
    bucket = f"sdk-{uuid.uuid4().hex[:10]}"
    server.client().create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "audioseal_site.storage.PrivateS3Storage", "OPTIONS": {
            "bucket_name": bucket, "endpoint_url": server.endpoint, "region_name": "us-east-1",
            "access_key": "testing", "secret_key": "testing",
        }},
    }
    try:
        yield server
    finally:
        server.stop()


def test_a_download_follows_the_redirect_to_object_storage(live_server, secret, redis_clean, s3_storage, tmp_path):
    recording = Recording()
    with Client(secret, base_url=live_server.url, transport=recording) as studio:
        job = studio.embed(FIXTURES / "speech_16k_mono.wav", message="1A2B")  # queued; its input is in S3
        saved = studio.download_input(job, tmp_path)
    assert saved == tmp_path / "speech_16k_mono.wav"
    assert saved.read_bytes() == (FIXTURES / "speech_16k_mono.wav").read_bytes()
    (api, api_request), (storage, storage_request) = recording.exchanges[-2:]
    assert api == 302 and storage == 200
    assert storage_request.url.port == int(s3_storage.endpoint.rsplit(":", 1)[1])
    assert "X-Amz-Signature" in str(storage_request.url)
    assert "Authorization" in api_request.headers and "Authorization" not in storage_request.headers


@pytest.mark.slow
def test_cli_directory_mode_reports_the_bad_file_and_processes_the_others(
    live_server, secret, worker_process, tmp_path
):
    worker_process("watermark")
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name in ("speech_16k_mono.wav", "speech2_16k_mono.wav", "not_audio.wav"):
        shutil.copy(FIXTURES / name, inputs / name)
    config = ["--api-key", secret, "--base-url", live_server.url]
    runner = CliRunner()

    result = runner.invoke(
        app, ["embed", str(inputs), "--message", "1A2B", "--concurrency", "3", "--out", str(outputs),
              "--timeout", str(JOB_WAIT), *config],
    )
    assert result.exit_code == 1, result.output
    assert sorted(p.name for p in outputs.iterdir()) == [
        "speech2_16k_mono-watermarked.wav", "speech_16k_mono-watermarked.wav"]
    assert "not_audio.wav: INVALID_FORMAT" in result.stderr
    assert "2 succeeded, 1 failed" in result.stderr
    assert "3/3" in result.stderr  # the progress bar's final state
    assert "✓ speech_16k_mono.wav: message 1A2B" in result.stdout

    detected = runner.invoke(app, ["detect", str(outputs), "--json", *config])
    assert detected.exit_code == 0, detected.output
    rows = json.loads(detected.stdout)
    assert [(row["ok"], row["job"]["result"]["message"]) for row in rows] == [(True, "1A2B"), (True, "1A2B")]

    single = runner.invoke(app, ["embed", str(inputs / "speech_16k_mono.wav"), "-m", "00FF", "--out",
                                 str(tmp_path / "one.wav"), "--json", *config])
    assert single.exit_code == 0, single.output
    assert json.loads(single.stdout)["job"]["result"]["message"] == "00FF" and (tmp_path / "one.wav").exists()
    refused = runner.invoke(app, ["detect", str(inputs / "not_audio.wav"), *config])
    assert refused.exit_code == 1 and "not_audio.wav: INVALID_FORMAT" in refused.stderr

    listed = runner.invoke(app, ["jobs", "--json", "--status", "succeeded", *config])
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.stdout)) == 5  # 3 embeds, 2 detections; the refused files made no job
    usage = runner.invoke(app, ["usage", "--json", *config])
    assert usage.exit_code == 0 and json.loads(usage.stdout)["minutes"]["used"] > 0
