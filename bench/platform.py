"""The platform under test: a real web server and a real worker process, driven over loopback HTTP.

The benchmark process has Django set up against its own embedded PostgreSQL and Redis (``VAR_DIR`` under
``var/bench``); the server (gunicorn) and the worker (``manage.py run_worker``) are child processes that get
the same ``DATABASE_URL``/``REDIS_URL``. Jobs are submitted through the HTTP API exactly as a customer would;
completion is read from the database (``Job.finished_at``), which costs the machine less than polling the API
and gives the exact completion time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of the server and worker: this run's services, no embedded start, production-like."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=os.environ["DATABASE_URL"],
        REDIS_URL=os.environ["REDIS_URL"],
        EMBEDDED_SERVICES="false",
        VAR_DIR=str(var_dir),
        # DEBUG keeps every SQL query in memory (up to 9,000 per connection): not what production runs, and
        # it would show up as worker memory growth.
        DEBUG="false",
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        NO_TORCH_COMPILE="1",
    )
    env.update(extra)
    return env


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_path: Path
    log_file: Any = field(repr=False, default=None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


def _spawn(name: str, cmd: list[str], env: dict[str, str], log_dir: Path) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log_file = open(log_path, "ab")  # noqa: SIM115 - closed by Child.stop
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=log_file, stderr=subprocess.STDOUT)
    return Child(name, proc, log_path, log_file)


SERVINGS = {
    # The production config (deploy/gunicorn.conf.py): uvicorn workers on the ASGI application.
    "uvicorn": ["audioseal_site.asgi:application"],
    # The former production config: gthread workers on the WSGI application (threads from the caller).
    "gthread": ["audioseal_site.wsgi:application", "--worker-class", "gthread"],
}


def start_server(
    env: dict[str, str], log_dir: Path, *, workers: int, threads: int = 4, serving: str = "uvicorn",
    name: str = "server",
) -> tuple[Child, str]:
    """gunicorn with ``deploy/gunicorn.conf.py`` on a free loopback port; returns once /healthz answers.

    ``serving``: ``"uvicorn"`` (production) or ``"gthread"`` (``threads`` threads per process)."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "gunicorn", "-c", str(REPO / "deploy" / "gunicorn.conf.py"), *SERVINGS[serving],
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
        "--backlog", "2048", "--keep-alive", "30",
    ]
    child = _spawn(name, cmd, env, log_dir)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"server exited:\n{child.log_tail()}")
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return child, url
        except requests.RequestException:
            pass
        time.sleep(0.25)
    child.stop()
    raise RuntimeError(f"server did not start:\n{child.log_tail()}")


def start_worker(
    env: dict[str, str], log_dir: Path, name: str, queues: tuple[str, ...] = ("watermark",)
) -> Child:
    """``manage.py run_worker`` (the pool loads and warms before the first job); returns once it is live."""
    from jobs.worker.presence import live_workers

    cmd = [sys.executable, str(REPO / "manage.py"), "run_worker", *queues, "--name", name]
    child = _spawn(name, cmd, env, log_dir)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"worker exited:\n{child.log_tail()}")
        if any(w.get("name") == name for w in live_workers()):
            return child
        time.sleep(0.25)
    child.stop()
    raise RuntimeError(f"worker did not become live:\n{child.log_tail()}")


def rss_bytes(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


# --- tenant and client --------------------------------------------------------------------------------------


def make_tenant(slug: str) -> str:
    """A tenant whose plan limits never get in the way of the benchmark (the limit checks still run)."""
    from accounts import services as accounts
    from billing import services as billing

    tenant = accounts.create_tenant(f"Bench {slug}", slug=slug)
    unlimited = 10**9
    billing.change_subscription(tenant, overrides={
        "included_minutes": 10**8,
        "overage_allowed": True,
        "max_concurrent_jobs": 10**6,
        "max_audio_seconds": 3600.0,
        "rate_limits": {f: unlimited for f in ("watermark", "emotion", "media", "read", "default")},
    })
    return accounts.issue_api_key(tenant, "bench").secret


class Client:
    """A keep-alive HTTP client for one simulated customer; multipart bodies are built once and re-sent."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def prepare_upload(self, path: str, filename: str, content: bytes, data: dict[str, str] | None = None):
        request = requests.Request(
            "POST", f"{self.base_url}{path}", files={"file": (filename, content, "audio/wav")},
            data=data or {},
        )
        return self.session.prepare_request(request)

    def prepare_get(self, path: str):
        return self.session.prepare_request(requests.Request("GET", f"{self.base_url}{path}"))

    def send(self, prepared) -> requests.Response:
        return self.session.send(prepared, timeout=300)

    def submit(self, path: str, filename: str, content: bytes, data: dict[str, str] | None = None) -> str:
        response = self.send(self.prepare_upload(path, filename, content, data))
        if response.status_code != 202:
            raise RuntimeError(f"submit {path}: {response.status_code} {response.text[:500]}")
        return response.json()["id"]


def wait_final(ids: list[str], timeout: float, poll: float = 0.05) -> list[dict[str, Any]]:
    """Wait until every job is final; returns their rows (status, error, timings)."""
    from django.db import close_old_connections

    from jobs.models import FINAL_STATUSES, Job

    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        done = Job.objects.filter(pk__in=ids, status__in=FINAL_STATUSES).count()
        if done == len(ids):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ids) - done} of {len(ids)} jobs not final after {timeout:.0f} s")
        time.sleep(poll)
    return list(
        Job.objects.filter(pk__in=ids).values(
            "id", "status", "error_code", "error_message", "created_at", "started_at", "finished_at",
            "audio_seconds",
        )
    )


def concurrent_requests(
    make_client, prepare, *, clients: int, per_client: int, warmup: int = 2
) -> dict[str, Any]:
    """``clients`` threads, each sending ``per_client`` requests back to back after ``warmup`` untimed ones.

    ``prepare(client, i)`` returns the prepared request; latencies are per request, the throughput is all
    timed requests over the wall time from the common start to the last answer.
    """
    import numpy as np

    barrier = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    ends: list[float] = [0.0] * clients

    def run(index: int) -> None:
        client = make_client()
        try:
            for i in range(warmup):
                client.send(prepare(client, -1 - i))
            prepared = [prepare(client, index * per_client + i) for i in range(per_client)]
        finally:
            barrier.wait()
        for req in prepared:
            t0 = time.perf_counter()
            try:
                response = client.send(req)
                ok = response.status_code < 300
                if not ok:
                    errors.append(f"{response.status_code} {response.text[:200]}")
            except requests.RequestException as exc:
                errors.append(repr(exc))
            latencies[index].append(time.perf_counter() - t0)
        ends[index] = time.perf_counter()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = max(ends) - started
    flat = np.array([x for lst in latencies for x in lst])
    return {
        "clients": clients,
        "requests": int(flat.size),
        "errors": len(errors),
        "first_errors": errors[:3],
        "wall_seconds": round(wall, 3),
        "requests_per_second": round(flat.size / wall, 2) if wall > 0 else None,
        "p50_ms": round(float(np.percentile(flat, 50)) * 1000, 1),
        "p90_ms": round(float(np.percentile(flat, 90)) * 1000, 1),
        "p99_ms": round(float(np.percentile(flat, 99)) * 1000, 1),
        "max_ms": round(float(flat.max()) * 1000, 1),
    }
