"""Structured logs: request id and tenant id on request lines, job id and tenant id on job lines, JSON in
production and readable lines in development, through the handler that settings.LOGGING configures."""

from __future__ import annotations

import io
import json
import logging

import pytest

from core import log
from core.log import ContextFilter, JsonFormatter
from testing.uploads import upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def json_lines():
    """Records as the production handler writes them: the configured handler's filter, a JSON formatter."""
    (handler,) = [h for h in logging.getLogger().handlers if any(isinstance(f, ContextFilter) for f in h.filters)]
    stream = io.StringIO()
    old_stream, old_formatter = handler.setStream(stream), handler.formatter
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]

    yield lines
    handler.setStream(old_stream)
    handler.setFormatter(old_formatter)
    root.setLevel(old_level)


def test_request_lines_carry_request_and_tenant_ids(api_client, tenant, json_lines, redis_clean):
    response = api_client.get("/api/v1/jobs", HTTP_X_REQUEST_ID="req-0123456789abcdef")
    assert response.status_code == 200 and response["X-Request-ID"] == "req-0123456789abcdef"
    (line,) = [x for x in json_lines() if x["logger"] == "audioseal.request"]
    assert line["request_id"] == "req-0123456789abcdef" and line["tenant_id"] == str(tenant.pk)
    assert line["status"] == 200 and line["route"] == "/api/v1/jobs" and line["level"] == "INFO"
    assert line["time"].endswith("+00:00")

    bad = api_client.get("/api/v1/jobs", HTTP_X_REQUEST_ID="bad id\nwith newline")
    generated = bad["X-Request-ID"]
    assert generated != "bad id\nwith newline" and len(generated) == 32


def test_job_lines_carry_job_and_tenant_ids(api_client, tenant, run_worker, json_lines):
    job = api_client.post("/api/v1/emotion/analyze", {"file": upload("speech_16k_mono.wav")}, format="multipart")
    job_id = job.json()["id"]
    run_worker(["emotion"])
    ended = [x for x in json_lines() if x["logger"] == "jobs.worker.runner" and x.get("outcome")]
    assert ended and ended[-1]["job_id"] == job_id and ended[-1]["tenant_id"] == str(tenant.pk)
    assert ended[-1]["outcome"] == "succeeded"
    # lines outside any job or request carry no stale ids
    logging.getLogger("audioseal.test").warning("outside")
    outside = [x for x in json_lines() if x["message"] == "outside"][-1]
    assert "job_id" not in outside and "request_id" not in outside


def test_console_format_is_readable_with_the_ids():
    from core.log import ConsoleFormatter

    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(ContextFilter())
    handler.setFormatter(ConsoleFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("audioseal.console-test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with log.context(request_id="r1", job_id="j1"):
            logger.warning("hello")
        logger.warning("bye")
    finally:
        logger.removeHandler(handler)
    assert handler.stream.getvalue().splitlines() == [
        "WARNING audioseal.console-test: hello [request_id=r1 job_id=j1]",
        "WARNING audioseal.console-test: bye",
    ]
