"""gunicorn settings for the web process:
``gunicorn -c deploy/gunicorn.conf.py audioseal_site.asgi:application``.

Every value can be overridden from the environment (``GUNICORN_*``, ``PORT``, ``WEB_CONCURRENCY``).

* uvicorn workers (``audioseal_site.uvicorn_worker.UvicornWorker``: ``uvicorn_worker.UvicornWorker`` with
  uvicorn's proxy-header rewriting and lifespan off) serving Django's ASGI application. ``?wait=N`` holds a
  request up to 30 s on a Redis notification as a future in the event loop, not a thread
  (``jobs.api.waiting``), so waiting clients cannot starve other tenants' requests the way they took every
  thread of the former gthread workers (5 x 4 threads: 40 waits from one key made another tenant's request
  take 28 s). Sync code (DRF views, the ORM) runs on a thread per request only while it computes; database
  connections come from a bounded pool per process (``DATABASE_POOL_MAX_SIZE``). Model work never runs here
  (RQ workers do it).
* Prometheus multiprocess mode: each gunicorn process writes its HTTP metrics to files in
  ``PROMETHEUS_MULTIPROC_DIR`` and whichever process answers ``/metrics`` reports the sum. The directory is
  emptied when the master starts and a dead process's live gauges are dropped (``child_exit``).
* Temporary upload files left by a previous crash are removed when the master starts.
* The access log is written by ``audioseal_site.middleware`` (JSON in production, with the request id and
  tenant), so gunicorn's own access log is off.

The WSGI application (``audioseal_site.wsgi``, e.g. ``-k gthread --threads 4``) still works, with ``?wait``
blocking a thread per waiting request as before: ``make bench`` measures both.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

bind = f"{os.environ.get('GUNICORN_BIND_HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8)))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "audioseal_site.uvicorn_worker.UvicornWorker")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))  # gthread workers only (WSGI)
# Longer than the longest legitimate request: ?wait=30 plus a large upload on a slow link. uvicorn workers
# notify the master from the event loop: a worker whose loop is blocked this long is restarted.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle processes now and then (bounded memory growth), staggered so they don't all restart at once.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "200"))
# The ingress/load balancer sets X-Forwarded-*; trust it (Django reads X-Forwarded-Proto, see settings).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "*")
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
preload_app = False  # each process imports Django itself; no state shared through fork

_var = Path(os.environ.get("VAR_DIR", "var"))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_var / "prometheus"))
# gunicornc's socket: one per VAR_DIR and port (the default, one per user, is shared by every gunicorn started
# on the machine: the quick start's, the tests', the benchmark's).
control_socket = os.environ.get(
    "GUNICORN_CONTROL_SOCKET", str(_var.resolve() / "run" / f"gunicorn-{os.environ.get('PORT', '8000')}.ctl")
)


def on_starting(server) -> None:
    """Fresh metric files for this server generation; stale temporary uploads from a crash removed."""
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    uploads = os.environ.get("FILE_UPLOAD_TEMP_DIR")
    if uploads and Path(uploads).is_dir():
        import time

        max_age = float(os.environ.get("STALE_UPLOAD_SECONDS", 6 * 3600))
        for path in Path(uploads).glob("*.upload*"):
            try:
                if time.time() - path.stat().st_mtime > max_age:
                    path.unlink()
            except OSError:
                pass


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
