"""The production web server (``deploy/gunicorn.conf.py``: uvicorn workers, ASGI) serving ``?wait`` without a
thread per waiter: hundreds of held waits from one API key leave another tenant's requests answering, use
no thread and no database connection each, and all answer when the job becomes final; the middleware chain
never pins a thread; oversized bodies are refused without being read; downloads stream."""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path

import psutil
import pytest
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from django.utils.module_loading import import_string

from accounts import services as accounts
from bench.platform import start_server
from core.asgi import FileResponse, release_request_thread
from core.redis import client as redis_client
from testing.assertions import wait_until
from testing.servers import http, multipart
from testing.uploads import FIXTURES
from testing.workers import worker_env

WAITS = 200
SERVER_APP = "audioseal-test-web"


@pytest.fixture
def server(transactional_db, redis_clean, _isolated_media, tmp_path):
    """gunicorn + one uvicorn worker process on the test database, with a small connection pool."""
    env = {
        **worker_env(_isolated_media),
        "DATABASE_POOL_MAX_SIZE": "4",
        "MAX_WAITS_PER_KEY": str(WAITS + 10), "MAX_WAITS_PER_TENANT": str(WAITS + 10),
        "LOG_LEVEL": "WARNING",
        "PGAPPNAME": SERVER_APP,  # libpq names the server's connections in pg_stat_activity
    }
    child, url = start_server(env, tmp_path / "logs", workers=1)
    try:
        (worker,) = psutil.Process(child.pid).children()
        yield int(url.rsplit(":", 1)[1]), worker
    finally:
        child.stop(30)


def server_connections() -> int:
    """The web server's connections to the database (open ones, idle in its pool included)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [SERVER_APP])
            return cursor.fetchone()[0]
    finally:
        connection.close()


def test_held_waits_from_one_key_leave_other_tenants_answering(server, make_tenant):
    port, worker = server
    waiter_key = accounts.issue_api_key(make_tenant("Waiter"), "waits")  # a Free plan key: 300 reads/min
    other_key = accounts.issue_api_key(make_tenant("Other"), "other").secret
    slots = f"audioseal:waits:key:{waiter_key.api_key.pk}"
    body, content_type = multipart("file", "speech.wav", (FIXTURES / "speech_16k_mono.wav").read_bytes())

    async def scenario():
        status, _, created = await http(port, "POST", "/api/v1/watermark/embed", waiter_key.secret, body,
                                        {"Content-Type": content_type})
        assert status == 202, created
        job_id = json.loads(created)["id"]  # queued: no worker runs in this test
        waits = [
            asyncio.create_task(http(port, "GET", f"/api/v1/jobs/{job_id}?wait=30", waiter_key.secret))
            for _ in range(WAITS)
        ]
        while (held := await asyncio.to_thread(redis_client().zcard, slots)) < WAITS:
            assert not any(w.done() for w in waits), [w.result()[:2] for w in waits if w.done()][:3]
            await asyncio.sleep(0.1)
        threads = worker.num_threads()
        connections = await asyncio.to_thread(server_connections)
        # Another tenant, while all the waits are held: usage and job list, ten at a time.
        others = await asyncio.gather(*[
            http(port, "GET", path, other_key)
            for _ in range(10) for path in ("/api/v1/usage", "/api/v1/jobs?page_size=1")
        ])
        still_held = [not w.done() for w in waits]
        # Final: every wait answers with the final job.
        status, _, canceled = await http(port, "POST", f"/api/v1/jobs/{job_id}/cancel", waiter_key.secret)
        assert status == 200, canceled
        return held, threads, connections, others, still_held, await asyncio.gather(*waits)

    held, threads, connections, others, still_held, answers = asyncio.run(scenario())
    print(f"{held} waits held: {threads} threads in the worker, {connections} database connections")
    assert held == WAITS
    assert [status for status, _, _ in others] == [200] * 20, [o[2][:200] for o in others if o[0] != 200]
    assert all(still_held)  # the other tenant was answered while every wait was held
    assert threads < WAITS // 4, threads  # no thread per waiting request
    assert connections <= 4, connections  # no database connection per waiting request (pool of 4)
    for status, headers, content in answers:
        assert status == 200 and json.loads(content)["status"] == "canceled"
        assert headers["x-ratelimit-limit"] and headers["x-request-id"]
    wait_until(lambda: redis_client().zcard(slots) == 0, timeout=10, what="the wait slots to be released")


def test_a_client_that_hangs_up_frees_its_wait_slot(server, make_tenant):
    port, _ = server
    key = accounts.issue_api_key(make_tenant("Hangs up"), "k")
    slots = f"audioseal:waits:key:{key.api_key.pk}"
    body, content_type = multipart("file", "speech.wav", (FIXTURES / "speech_16k_mono.wav").read_bytes())

    async def scenario():
        _, _, created = await http(port, "POST", "/api/v1/watermark/embed", key.secret, body,
                                   {"Content-Type": content_type})
        job_id = json.loads(created)["id"]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /api/v1/jobs/{job_id}?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: Bearer {key.secret}\r\n\r\n".encode())
        await writer.drain()
        while await asyncio.to_thread(redis_client().zcard, slots) < 1:
            await asyncio.sleep(0.05)
        writer.close()  # the client gives up mid-wait

    asyncio.run(scenario())
    wait_until(lambda: redis_client().zcard(slots) == 0, timeout=20, what="the slot of the hung-up wait")


def test_an_oversized_body_is_refused_before_it_is_read(server, make_tenant):
    port, _ = server
    key = accounts.issue_api_key(make_tenant("Big"), "k").secret
    too_big = settings.MAX_UPLOAD_BYTES * 10
    status, headers, content = asyncio.run(http(
        port, "POST", "/api/v1/watermark/embed", key, b"x" * 1024,
        {"Content-Length": str(too_big), "Content-Type": "multipart/form-data; boundary=b"}, send_body=True,
    ))  # 1 KB sent of the 1 GB announced: answered anyway
    assert status == 413 and json.loads(content)["error"]["code"] == "FILE_TOO_LARGE"
    assert headers["x-request-id"] and headers["x-ratelimit-limit"]
    anonymous = asyncio.run(http(port, "POST", "/api/v1/watermark/embed", "", b"x",
                                 {"Content-Length": str(too_big)}))
    assert anonymous[0] == 401  # authentication first, as under WSGI


def test_every_middleware_serves_both_modes():
    """Under ASGI a sync-only middleware would run everything inside it, the ``?wait`` view included, on a
    thread held for the whole request (Django adapts it with async_to_sync)."""
    for path in settings.MIDDLEWARE:
        middleware = import_string(path)
        assert getattr(middleware, "async_capable", False), f"{path} is sync only"
        assert getattr(middleware, "sync_capable", True), f"{path} is async only"
        instance = middleware(_async_view)
        assert iscoroutinefunction(instance), path


async def _async_view(request):
    return HttpResponse()


def test_file_response_streams_chunk_by_chunk_under_asgi(tmp_path):
    path = Path(tmp_path / "big.bin")
    path.write_bytes(bytes(range(256)) * 4096)  # 1 MB

    async def consume() -> list[bytes]:
        response = FileResponse(path.open("rb"))
        response.block_size = 64 * 1024
        try:
            return [chunk async for chunk in response]
        finally:
            response.close()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Django warns when it must read a sync file whole
        chunks = asyncio.run(consume())
    assert len(chunks) == 16 and b"".join(chunks) == path.read_bytes()
    assert release_request_thread() is False  # outside an ASGI request there is no request thread
