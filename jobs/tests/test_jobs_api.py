"""Job listing, reading, cancelling, ``?wait`` and tenant isolation."""

from __future__ import annotations

import time

import pytest

from jobs import services
from jobs.models import Job, JobStatus
from testing.assertions import assert_error
from testing.uploads import upload

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = "/api/v1/watermark/embed"
DETECT = "/api/v1/watermark/detect"


def _submit(client, url=EMBED) -> dict:
    response = client.post(url, {"file": upload("speech_16k_mono.wav")}, format="multipart")
    assert response.status_code == 202, response.json()
    return response.json()


def test_job_json_shape(api_client, redis_clean):
    job = _submit(api_client)
    for key in ("id", "kind", "status", "progress", "progress_message", "created_at", "started_at",
                "finished_at", "input", "params", "result", "output_url", "error", "model"):
        assert key in job
    assert job["input"]["filename"] == "speech_16k_mono.wav"
    assert job["input"]["sample_rate"] == 16000 and job["input"]["channels"] == 1
    assert job["input"]["duration_seconds"] > 1 and job["input"]["size_bytes"] > 1000
    assert job["output_url"] is None and job["error"] is None


def test_tenant_isolation(api_client, other_client, run_worker):
    mine = _submit(api_client)
    run_worker()
    theirs = _submit(other_client, DETECT)
    for path in (f"/api/v1/jobs/{mine['id']}", f"/api/v1/jobs/{mine['id']}/output"):
        assert_error(other_client.get(path), 404, "NOT_FOUND")
    assert_error(other_client.post(f"/api/v1/jobs/{mine['id']}/cancel"), 404, "NOT_FOUND")
    assert api_client.get(f"/api/v1/jobs/{mine['id']}/output").status_code == 200
    assert [j["id"] for j in other_client.get("/api/v1/jobs").json()["results"]] == [theirs["id"]]
    assert [j["id"] for j in api_client.get("/api/v1/jobs").json()["results"]] == [mine["id"]]


def test_list_is_newest_first_with_cursor_pagination_and_filters(api_client, redis_clean):
    ids = [_submit(api_client, EMBED if i % 2 else DETECT)["id"] for i in range(5)]
    page = api_client.get("/api/v1/jobs?page_size=2").json()
    assert [j["id"] for j in page["results"]] == ids[::-1][:2]
    page2 = api_client.get(page["next"]).json()
    assert [j["id"] for j in page2["results"]] == ids[::-1][2:4]
    embeds = api_client.get("/api/v1/jobs?kind=watermark_embed").json()["results"]
    assert {j["kind"] for j in embeds} == {"watermark_embed"} and len(embeds) == 2
    Job.objects.filter(pk=ids[0]).update(status=JobStatus.FAILED)
    failed = api_client.get("/api/v1/jobs?status=failed").json()["results"]
    assert [j["id"] for j in failed] == [ids[0]]
    assert_error(api_client.get("/api/v1/jobs?status=bogus"), 400, "VALIDATION_ERROR")


def test_next_cursor_reads_the_next_page(api_client, redis_clean):
    """A page carries the cursor of the next one, to pass back as `cursor` (no URL parsing in clients)."""
    ids = [_submit(api_client)["id"] for _ in range(3)]
    page = api_client.get("/api/v1/jobs?page_size=2").json()
    assert page["next_cursor"] and page["next_cursor"] in page["next"]
    last = api_client.get("/api/v1/jobs", {"page_size": 2, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in last["results"]] == ids[:1] and last["next_cursor"] is None


@pytest.mark.parametrize("query", ["kind=", "status=", "page_size=", "page_size=101"])
def test_empty_or_out_of_range_filters_are_refused_not_ignored(api_client, redis_clean, query):
    """What the schema calls invalid (an empty enum value, a page size outside 1-100) is a 400, not "any"."""
    assert_error(api_client.get(f"/api/v1/jobs?{query}"), 400, "VALIDATION_ERROR")


def test_an_input_role_the_job_lacks_is_not_found(api_client, redis_clean):
    job = _submit(api_client)
    assert api_client.get(f"/api/v1/jobs/{job['id']}/input").status_code == 200
    for role in ("music", ""):
        assert_error(api_client.get(f"/api/v1/jobs/{job['id']}/input?role={role}"), 404, "FILE_NOT_FOUND")


def test_a_job_without_callback_url_says_null(api_client, redis_clean):
    assert _submit(api_client)["callback_url"] is None


def test_cancel_queued_job_and_the_worker_skips_it(api_client, run_worker):
    job = _submit(api_client)
    response = api_client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    run_worker()
    row = Job.objects.get(pk=job["id"])
    assert row.status == JobStatus.CANCELED and row.started_at is None
    assert_error(api_client.post(f"/api/v1/jobs/{job['id']}/cancel"), 409, "INVALID_STATE")
    assert_error(api_client.get(f"/api/v1/jobs/{job['id']}/output"), 404, "FILE_NOT_FOUND")


def test_state_machine_refuses_illegal_transitions(api_client, redis_clean):
    job = Job.objects.get(pk=_submit(api_client)["id"])
    assert services.succeed(job, result={}) is False  # queued -> succeeded is not a transition
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    assert services.start(job.pk, "w1") is not None
    assert services.start(job.pk, "w2") is None  # only one worker can take a job
    assert services.fail(Job.objects.get(pk=job.pk), "X", "boom") is True
    assert services.succeed(Job.objects.get(pk=job.pk), result={}) is False  # final is final


def test_running_job_canceled_mid_way_discards_its_output(api_client, redis_clean, _isolated_media):
    job = Job.objects.get(pk=_submit(api_client)["id"])
    services.start(job.pk, "w1")
    job.refresh_from_db()
    services.cancel(job)
    with pytest.raises(services.JobCanceled):
        services.report_progress(Job.objects.get(pk=job.pk), 50, "halfway")


def test_wait_returns_when_the_job_finishes(api_client, worker_process):
    proc = worker_process("watermark")
    started = time.monotonic()
    response = api_client.post(f"{EMBED}?wait=30", {"file": upload("speech_16k_mono.wav")}, format="multipart")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "succeeded", (body, proc.poll())
    assert time.monotonic() - started < 30
    read = api_client.get(f"/api/v1/jobs/{body['id']}?wait=5").json()
    assert read["status"] == "succeeded" and read["output_url"].endswith("/output")


def test_wait_gives_up_after_n_seconds(api_client, redis_clean):
    started = time.monotonic()
    job = api_client.post(f"{EMBED}?wait=1", {"file": upload("speech_16k_mono.wav")}, format="multipart").json()
    assert job["status"] == "queued"  # no worker: the job stays queued
    assert 0.9 <= time.monotonic() - started


@pytest.mark.parametrize("wait", ["-1", "31", "abc"])
def test_wait_out_of_range(api_client, redis_clean, wait):
    response = api_client.post(f"{EMBED}?wait={wait}", {"file": upload("speech_16k_mono.wav")}, format="multipart")
    assert_error(response, 400, "VALIDATION_ERROR")
    assert Job.objects.count() == 0


def test_openapi_schema_and_docs(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ("/api/v1/watermark/embed", "/api/v1/watermark/detect", "/api/v1/jobs/{id}/output"):
        assert path in text
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
