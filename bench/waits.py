"""``waits`` section of ``make bench``: another tenant's latency while one API key holds N ``?wait=30`` requests.

For each configuration the production server config (``deploy/gunicorn.conf.py``, the same number of processes)
is started and, with no worker running (the job stays queued, so every wait holds its full 30 s):

1. baseline: another tenant's ``GET /api/v1/usage``, ``BENCH_WAIT_SAMPLES`` requests from 4 clients;
2. one Free-plan key opens N ``GET /api/v1/jobs/<id>?wait=30`` (inside its 300 reads/min); once the server
   holds as many as it can (its wait slots in Redis), the same usage requests again (timeout 90 s each), and
   the web processes' threads and database connections are counted;
3. the job is canceled, which answers every wait, and the waits' statuses are counted.

Configurations: the former gthread workers (5 x 4 threads, the incident: 40 waits made another tenant's
request take 28 s) and the uvicorn workers, both with the wait caps raised above N so that only the serving
model differs; then uvicorn with the default caps (``MAX_WAITS_PER_KEY=20``), where the extra waits are
refused with ``429 TOO_MANY_WAITS``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from bench.platform import Client, child_env, start_server

APP_NAME = "audioseal-bench-web"  # libpq's application_name for the server's connections (PGAPPNAME)


def percentiles(latencies: list[float]) -> dict[str, float | None]:
    import numpy as np

    if not latencies:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    values = np.array(latencies) * 1000
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p99_ms": round(float(np.percentile(values, 99)), 1),
        "max_ms": round(float(values.max()), 1),
    }


def other_tenant_requests(base_url: str, key: str, total: int, clients: int = 4, budget: float = 60.0
                          ) -> dict[str, Any]:
    """Up to ``total`` GET /api/v1/usage from ``clients`` keep-alive clients, none started after ``budget``
    seconds (a starved server would otherwise take ``total`` x 90 s); latencies, errors, wall time."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def run(count: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        for _ in range(count):
            if time.perf_counter() - began > budget:
                break
            started = time.perf_counter()
            try:
                response = session.get(f"{base_url}/api/v1/usage", timeout=90)
                error = None if response.status_code == 200 else f"{response.status_code}"
            except requests.RequestException as exc:
                error = type(exc).__name__
            with lock:
                latencies.append(time.perf_counter() - started)
                if error:
                    errors.append(error)

    began = time.perf_counter()
    threads = [threading.Thread(target=run, args=(total // clients,), daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"requests": len(latencies), "errors": len(errors), "error_kinds": sorted(set(errors)),
            "wall_seconds": round(time.perf_counter() - began, 2), **percentiles(latencies)}


def server_footprint(server_pid: int) -> dict[str, int]:
    """Threads of the web processes (master excluded) and the server's database connections: open (pooled
    ones included) and busy (not idle)."""
    from django.db import connection

    workers = psutil.Process(server_pid).children()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') FROM pg_stat_activity "
            "WHERE application_name = %s", [APP_NAME],
        )
        opened, busy = cursor.fetchone()
    return {"processes": len(workers), "threads": sum(p.num_threads() for p in workers),
            "db_connections": opened, "db_connections_busy": busy}


def run_config(run_dir: Path, log_dir: Path, *, serving: str, holds: int, raise_caps: bool, workers: int,
               threads: int, samples: int, wav: bytes, label: str) -> dict[str, Any]:
    from accounts import services as accounts
    from core.redis import client as redis_client
    from jobs import services
    from jobs.models import Job

    extra = {"PGAPPNAME": APP_NAME}
    if raise_caps:
        extra.update(MAX_WAITS_PER_KEY=str(holds + 10), MAX_WAITS_PER_TENANT=str(holds + 10))
    server, base_url = start_server(child_env(run_dir, **extra), log_dir, workers=workers, threads=threads,
                                    serving=serving, name=f"server-{label}")
    try:
        # Fresh Free-plan tenants: the waiter's 300 reads/min must hold N waits plus a few reads.
        waiter = accounts.issue_api_key(accounts.create_tenant(f"Waiter {label}"), "waits")
        other = accounts.issue_api_key(accounts.create_tenant(f"Other {label}"), "reads").secret
        job_id = Client(base_url, waiter.secret).submit("/api/v1/watermark/detect", "held.wav", wav)
        other_tenant_requests(base_url, other, 8)  # warm every process
        baseline = other_tenant_requests(base_url, other, samples)

        statuses: list[int | str] = []
        lock = threading.Lock()

        def wait() -> None:
            try:
                status = requests.get(f"{base_url}/api/v1/jobs/{job_id}?wait=30",
                                      headers={"Authorization": f"Bearer {waiter.secret}"}, timeout=300).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            with lock:
                statuses.append(status)

        slots = f"audioseal:waits:key:{waiter.api_key.pk}"
        capacity = holds if serving == "uvicorn" else min(holds, workers * threads)  # gthread: one per thread
        expected = capacity if raise_caps else min(capacity, 20)
        waiters = [threading.Thread(target=wait, daemon=True) for _ in range(holds)]
        opened = time.monotonic()
        for thread in waiters:
            thread.start()
        # Until the server holds what it can: all N, or (gthread) no new slot for 2 s; within 15 s, so the
        # measurement starts well inside the waits' 30 s.
        count, changed = 0, time.monotonic()
        while count < expected and time.monotonic() - opened < 15 and (not count or time.monotonic() - changed < 2):
            time.sleep(0.05)
            if (now := int(redis_client().zcard(slots))) != count:
                count, changed = now, time.monotonic()
        time.sleep(1.0)  # let refused or answered requests finish: count what the held waits cost
        held = int(redis_client().zcard(slots))
        footprint = server_footprint(server.pid)
        measured_at = time.monotonic() - opened
        during = other_tenant_requests(base_url, other, samples)
        held_after = int(redis_client().zcard(slots))
        services.cancel_if_active(Job.objects.get(pk=job_id))  # answers every wait
        for thread in waiters:
            thread.join(300)
        return {
            "label": label, "serving": serving, "workers": workers,
            "threads": threads if serving == "gthread" else None, "waits_opened": holds,
            "caps": "raised" if raise_caps else "default", "waits_held": held, "waits_held_after": held_after,
            "measured_seconds_after_opening": round(measured_at, 1), "server": footprint,
            "baseline": baseline, "during": during,
            "wait_statuses": {str(s): statuses.count(s) for s in sorted(set(statuses), key=str)},
        }
    finally:
        server.stop()


def section_waits(run_dir: Path, log_dir: Path, holds: list[int], samples: int, workers: int,
                  threads: int, log) -> list[dict[str, Any]]:
    from bench.clips import small_wav, speech_base

    wav = small_wav(0.5, 4242, speech_base())
    configs = [(serving, n, True) for n in holds for serving in ("gthread", "uvicorn")]
    configs.append(("uvicorn", holds[0], False))
    out = []
    for serving, n, raised in configs:
        label = f"{serving}-{n}-{'raised' if raised else 'default'}"
        log(f"waits: {label}")
        row = run_config(run_dir, log_dir, serving=serving, holds=n, raise_caps=raised, workers=workers,
                         threads=threads, samples=samples, wav=wav, label=label)
        log(f"waits: {label}: baseline p50 {row['baseline']['p50_ms']} ms p99 {row['baseline']['p99_ms']} ms; "
            f"with {row['waits_held']} held: p50 {row['during']['p50_ms']} ms p99 {row['during']['p99_ms']} ms, "
            f"{row['during']['errors']} errors; waits {row['wait_statuses']}")
        out.append(row)
    return out


def markdown(rows: list[dict[str, Any]], samples: int) -> list[str]:
    lines = [
        "",
        f"Another tenant's `GET /api/v1/usage` (up to {samples} requests from 4 clients, none started after "
        "60 s, timeout 90 s) while one Free key holds N `GET /api/v1/jobs/<id>?wait=30` (a queued job, no "
        "worker); gunicorn with `deploy/gunicorn.conf.py`; held = wait slots taken when the measurement starts "
        "(a gthread process holds one per thread, the rest queue in it); web threads and DB connections "
        "(open / busy) at that moment:",
        "",
        "| server | caps | N opened | held | usage p50 / p99 ms, no waits | usage p50 / p99 / max ms, waits held "
        "| requests (errors) | web threads | DB conns | waits answered |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        server = (f"gthread {r['workers']}x{r['threads']}" if r["serving"] == "gthread"
                  else f"uvicorn x{r['workers']}")
        b, d = r["baseline"], r["during"]
        lines.append(
            f"| {server} | {r['caps']} | {r['waits_opened']} | {r['waits_held']} | {b['p50_ms']} / {b['p99_ms']} | "
            f"{d['p50_ms']} / {d['p99_ms']} / {d['max_ms']} | {d['requests']} ({d['errors']}"
            f"{' ' + ' '.join(d['error_kinds']) if d['error_kinds'] else ''}) | "
            f"{r['server']['threads']} | {r['server']['db_connections']} / {r['server']['db_connections_busy']} | "
            f"{', '.join(f'{k}: {v}' for k, v in r['wait_statuses'].items())} |"
        )
    return lines
