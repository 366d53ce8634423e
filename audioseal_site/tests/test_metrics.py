"""/metrics: the bearer token, job counters and histograms after a real job ran in the real worker, queue
depth, live workers and their models, and HTTP metrics summed over gunicorn processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from prometheus_client.parser import text_string_to_metric_families

from audioseal_site.embedded import _free_port
from testing.assertions import wait_until
from testing.uploads import upload
from testing.workers import worker_env

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-token-for-tests"
ANALYZE = "/api/v1/emotion/analyze"


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape(client) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


@pytest.fixture(autouse=True)
def _token(settings):
    settings.METRICS_TOKEN = TOKEN


def test_metrics_refuse_without_the_token(client, settings):
    response = client.get("/metrics")
    assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    settings.METRICS_TOKEN = ""  # no token configured: nobody may scrape, not everybody
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer").status_code == 401


def test_job_counters_and_histograms_after_a_job_runs(api_client, client, run_worker):
    before = scrape(client)
    posted = api_client.post(ANALYZE, {"file": upload("speech_16k_mono.wav")}, format="multipart")
    assert posted.status_code == 202

    queued = scrape(client)
    assert value(queued, "audioseal_queue_depth", queue="emotion") == 1
    assert value(queued, "audioseal_queue_oldest_job_age_seconds", queue="emotion") >= 0
    assert value(queued, "audioseal_jobs_active", kind="emotion", status="queued") == 1
    assert value(queued, "audioseal_jobs_created_total", kind="emotion") == 1
    assert value(queued, "audioseal_jobs_finished_total", kind="emotion", status="succeeded") == 0

    run_worker(["emotion"])  # the real worker: the histograms travel through Redis, not process memory
    after = scrape(client)
    assert value(after, "audioseal_queue_depth", queue="emotion") == 0
    assert value(after, "audioseal_jobs_active", kind="emotion", status="queued") == 0
    assert value(after, "audioseal_jobs_finished_total", kind="emotion", status="succeeded") == 1
    assert value(after, "audioseal_jobs_finished_total", kind="watermark_embed", status="failed") == 0
    assert value(after, "audioseal_job_duration_seconds_count", kind="emotion", status="succeeded") == 1
    assert value(after, "audioseal_job_duration_seconds_sum", kind="emotion", status="succeeded") > 0
    assert value(
        after, "audioseal_job_duration_seconds_bucket", kind="emotion", status="succeeded", le="+Inf"
    ) == 1
    assert value(after, "audioseal_model_inference_seconds_count", kind="emotion", family="emotion") == 1
    route = dict(method="POST", route="/api/v1/emotion/analyze", status="202")
    assert value(after, "audioseal_http_requests_total", **route) == (
        value(before, "audioseal_http_requests_total", **route) or 0
    ) + 1
    assert value(after, "audioseal_redis_up") == 1


def test_live_workers_and_their_models(client, redis_clean):
    from jobs.worker.presence import WorkerHeartbeat, worker_document
    from jobs.worker.rq_worker import build_worker

    worker = build_worker(["emotion"])  # loads the demo emotion model
    beat = WorkerHeartbeat(worker.connection, worker.name, lambda: worker_document(worker), interval=60)
    beat.start()
    try:
        samples = scrape(client)
        assert value(samples, "audioseal_workers_live", queue="emotion") == 1
        assert value(samples, "audioseal_workers_live", queue="watermark") == 0
        assert value(samples, "audioseal_worker_model_loaded", worker=worker.name, family="emotion",
                     device="cpu") == 1
    finally:
        beat.stop()
    assert value(scrape(client), "audioseal_workers_live", queue="emotion") == 0


def test_a_scrape_during_a_redis_outage_still_answers(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    samples = scrape(client)
    assert value(samples, "audioseal_redis_up") == 0 and value(samples, "audioseal_database_up") == 1
    assert value(samples, "audioseal_jobs_created_total", kind="emotion") == 0


def test_shared_counter_for_webhook_failures(client, redis_clean):
    from core import metrics

    metrics.inc("audioseal_webhook_failures_total", target="stripe")
    metrics.inc("audioseal_webhook_failures_total", target="stripe")
    assert value(scrape(client), "audioseal_webhook_failures_total", target="stripe") == 2
    with pytest.raises(ValueError):
        metrics.inc("audioseal_webhook_failures_total", endpoint="x")


def test_http_metrics_are_summed_over_gunicorn_processes(tmp_path, _isolated_media):
    """Several gunicorn processes answer; whichever one serves /metrics reports the requests of all."""
    port = _free_port()
    env = {
        **worker_env(_isolated_media), "PORT": str(port), "GUNICORN_BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "2", "METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "VAR_DIR": str(tmp_path / "var"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "audioseal_site.asgi:application"],
        cwd=django_settings.BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:  # a long read timeout: a request that reached gunicorn is answered (and counted) exactly once
                return requests.get(f"{base}/healthz", timeout=90).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up, timeout=90, what="gunicorn")
        for _ in range(20):
            requests.get(f"{base}/healthz", timeout=5)
        files = list(Path(env["PROMETHEUS_MULTIPROC_DIR"]).glob("counter_*.db"))
        text = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).text
        samples = parse(text)
        healthz = dict(method="GET", route="/healthz", status="200")
        assert value(samples, "audioseal_http_requests_total", **healthz) == 21
        assert files  # the processes wrote their counters to the shared directory
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.stderr.close()
