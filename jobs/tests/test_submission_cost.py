"""What one submission costs the database: counted, because it bounds how many submissions a web process can
take per second (issue: the subscription was read three times, the RQ id written in a second commit)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.models import Job
from testing.uploads import upload

pytestmark = pytest.mark.django_db(transaction=True)

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def test_a_submission_is_five_statements_and_one_commit(api_client, redis_clean):
    detect = "/api/v1/watermark/detect"
    api_client.post(detect, {"file": upload("speech_16k_mono.wav")}, format="multipart")  # the period row exists
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(detect, {"file": upload("speech_16k_mono.wav")}, format="multipart")
    assert response.status_code == 202, response.json()
    sql = [q["sql"].strip() for q in queries.captured_queries]
    statements = [s for s in sql if not s.upper().startswith(TRANSACTION_CONTROL)]
    assert len(statements) <= 5, "\n".join(s[:120] for s in statements)
    assert sum(s.upper() == "COMMIT" for s in sql) == 1
    job = Job.objects.get(pk=response.json()["id"])
    assert job.rq_job_id and job.enqueued_at  # written with the row, in the one transaction
    assert redis_clean.lpos("rq:queue:watermark", job.rq_job_id) is not None  # and pushed after it committed


def test_refused_submissions_still_leave_nothing(api_client, tenant, redis_clean, _isolated_media):
    """The one-statement reservation refuses exactly as before: over the concurrency limit, no row, no file."""
    from billing import services as billing
    from testing.uploads import stored_files

    billing.change_subscription(tenant, overrides={"max_concurrent_jobs": 1})
    first = api_client.post("/api/v1/watermark/detect", {"file": upload("speech_16k_mono.wav")}, format="multipart")
    assert first.status_code == 202
    refused = api_client.post("/api/v1/watermark/detect", {"file": upload("speech_16k_mono.wav")}, format="multipart")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "CONCURRENCY_LIMIT"
    assert refused.json()["error"]["details"] == {"limit": 1, "current": 1, "plan": "free"}
    assert Job.objects.count() == 1 and len(stored_files(_isolated_media)) == 1
