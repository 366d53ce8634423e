"""Helpers for the reliability, idempotency and webhook tests: real worker processes, bounded waits, a local
webhook receiver, and the billing facts (reservations, usage events) the tests assert on."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.conf import settings


class WorkerProcesses:
    """Real ``manage.py run_worker`` subprocesses against the test database, Redis and media directory.

    Output goes to a log file per process (never a pipe nobody reads); teardown stops what is still alive.
    """

    def __init__(self, media_root: Path, log_dir: Path) -> None:
        self.media_root = media_root
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, *queues: str, **env: object) -> subprocess.Popen:
        environment = worker_env(self.media_root)
        environment.update({"RECONCILE_IN_WORKER": "false", "WORKER_HEARTBEAT_SECONDS": "0.5"})
        environment.update({key: str(value) for key, value in env.items()})
        log = open(self.log_dir / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115 - closed at teardown
        proc = subprocess.Popen(
            [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "run_worker", *queues],
            env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
        proc.log = log  # type: ignore[attr-defined]
        proc.log_path = Path(log.name)  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen) -> str:
        proc.log.flush()  # type: ignore[attr-defined]
        return proc.log_path.read_text(errors="replace")[-4000:]  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            proc.log.close()  # type: ignore[attr-defined]


def open_reservations() -> int:
    from billing.models import Reservation, ReservationState

    return Reservation.objects.filter(state=ReservationState.RESERVED).count()


def reservations_for(job) -> list:
    from billing.models import Reservation

    return list(Reservation.objects.filter(job_id=job.pk))


def usage_events_for(job) -> int:
    from billing.models import UsageEvent

    return UsageEvent.objects.filter(job_id=job.pk).count()


def reserved_seconds(tenant) -> int:
    from billing.models import PeriodUsage

    return sum(PeriodUsage.objects.filter(tenant=tenant).values_list("reserved_seconds", flat=True))


class Receiver:
    """A local HTTP server that records each POST and answers with the next scripted status (last repeats)."""

    def __init__(self, statuses: list[int], headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.extra_headers = headers or {}
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                for name, value in receiver.extra_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST  # noqa: N815 - a followed redirect would arrive as a GET

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/audioseal"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def submit_upload(client, url: str = "/api/v1/watermark/embed") -> str:
    """POST the speech fixture to ``url`` (an upload endpoint); the new job's id (asserts 202)."""
    from testing.uploads import upload

    response = client.post(url, {"file": upload("speech_16k_mono.wav")}, format="multipart")
    assert response.status_code == 202, response.json()
    return response.json()["id"]


def assert_books_balance(tenant, job_ids, *, final: tuple[str, ...] | None = None) -> None:
    """Every job final (succeeded or failed with a code, unless ``final`` names other states); one usage event
    per success, none otherwise; nothing left reserved."""
    from jobs.models import Job, JobStatus

    allowed = final or (JobStatus.SUCCEEDED, JobStatus.FAILED)
    for row in Job.objects.filter(pk__in=job_ids):
        assert row.status in allowed, (row.pk, row.status)
        if row.status == JobStatus.FAILED:
            assert row.error_code, row.pk
        assert usage_events_for(row) == (1 if row.status == JobStatus.SUCCEEDED else 0), row.pk
    assert open_reservations() == 0
    assert reserved_seconds(tenant) == 0


def worker_env(media_root: Path) -> dict[str, str]:
    """Environment for a worker subprocess that must use this test session's database, Redis and media."""
    import os

    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@/{db['NAME']}?host={db['HOST']}",
        REDIS_URL=settings.REDIS_URL,
        MEDIA_ROOT=str(media_root),
        VAR_DIR=str(settings.VAR_DIR),
        EMBEDDED_SERVICES="false",
        MODEL_THREADS="1",
    )
    return env
