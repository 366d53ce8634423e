"""/healthz and /readyz against real dependencies: a private Redis the test stops and restarts, a real
``manage.py run_worker`` process whose presence heartbeat readiness reads, killed with -9."""

from __future__ import annotations

import signal

import pytest

from jobs.worker.presence import WorkerHeartbeat, live_workers
from testing.assertions import wait_until
from testing.servers import RedisServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def private_redis(tmp_path, settings):
    """A Redis only this test uses, so stopping it disturbs nobody; settings.REDIS_URL points at it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    settings.REDIS_URL = server.url
    yield server
    server.stop()


OPERATOR_TOKEN = "operator-token-for-tests"


@pytest.fixture(autouse=True)
def _metrics_token(settings):
    settings.METRICS_TOKEN = OPERATOR_TOKEN


def readyz(client, query: str = "", *, operator: bool = True):
    """/readyz as the monitoring sees it (with the metrics token: the details), or as anyone does."""
    headers = {"HTTP_AUTHORIZATION": f"Bearer {OPERATOR_TOKEN}"} if operator else {}
    response = client.get(f"/readyz{query}", **headers)
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def test_readyz_details_are_for_operators_only(client, settings, private_redis):
    settings.HEALTH_REQUIRED_QUEUES = ["media"]
    status, body = readyz(client, operator=False)
    assert status == 503 and body["status"] == "fail"
    assert body["checks"] == {name: {"status": c["status"]} for name, c in readyz(client)[1]["checks"].items()}
    assert body["checks"]["workers"] == {"status": "fail"}  # no queue names, hosts, models or error text


def test_healthz_touches_no_dependency(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_follows_redis_and_workers(client, settings, private_redis, worker_process, monkeypatch):
    settings.HEALTH_REQUIRED_QUEUES = ["media"]
    monkeypatch.setenv("WORKER_HEARTBEAT_SECONDS", "0.2")
    monkeypatch.setenv("WORKER_PRESENCE_TTL_SECONDS", "2")

    status, body = readyz(client)
    assert status == 503 and body["status"] == "fail"
    checks = body["checks"]
    assert {checks[n]["status"] for n in ("database", "redis", "storage")} == {"ok"}
    assert checks["workers"]["status"] == "fail" and "media" in checks["workers"]["error"]
    assert all(isinstance(c["latency_ms"], float) for c in checks.values())

    worker = worker_process("media")  # the real worker command, on the private Redis
    status, body = wait_until(
        lambda: (r := readyz(client))[0] == 200 and r, timeout=120, what="a live worker"
    )
    (seen,) = body["checks"]["workers"]["workers"]
    assert seen["queues"] == ["media"] and seen["models"] == [] and seen["device"] == "cpu"
    assert body["checks"]["workers"]["queues"] == {"media": 1}

    private_redis.stop()
    status, body = readyz(client)
    assert status == 503
    assert body["checks"]["redis"]["status"] == "fail" and body["checks"]["workers"]["status"] == "fail"
    assert body["checks"]["database"]["status"] == "ok"

    private_redis.start()  # empty: the worker must publish itself again
    wait_until(lambda: readyz(client)[0] == 200, timeout=60, what="readiness after Redis came back")
    assert worker.poll() is None

    worker.send_signal(signal.SIGKILL)  # no clean shutdown: the presence key must expire on its own
    worker.wait(10)
    status, body = wait_until(lambda: (r := readyz(client))[0] == 503 and r, timeout=30, what="worker gone")
    assert body["checks"]["workers"]["workers"] == [] and body["checks"]["redis"]["status"] == "ok"


def test_readyz_subset_for_the_web_probe(client, settings, private_redis):
    settings.HEALTH_REQUIRED_QUEUES = ["media"]  # no worker runs: the full check fails...
    assert readyz(client)[0] == 503
    status, body = readyz(client, "?checks=database,redis,storage")  # ...the web's own dependencies pass
    assert status == 200 and set(body["checks"]) == {"database", "redis", "storage"}
    status, body = client.get("/readyz?checks=bogus").status_code, client.get("/readyz?checks=bogus").json()
    assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR"


def test_heartbeat_lists_loaded_models_and_leaves_on_stop(settings, private_redis):
    import redis

    connection = redis.Redis.from_url(private_redis.url)
    state = {"families": ["watermark"]}
    beat = WorkerHeartbeat(
        connection, "w1", lambda: {"queues": ["watermark"], "pool": {"device": "cpu", **state}},
        interval=0.05, ttl=5,
    )
    beat.start()
    try:
        assert live_workers(connection)[0]["pool"]["families"] == ["watermark"]
        state["families"] = ["emotion", "watermark"]  # loaded later: the next beat says so
        wait_until(lambda: live_workers(connection)[0]["pool"]["families"] == ["emotion", "watermark"])
    finally:
        beat.stop()
    assert live_workers(connection) == []
