"""Where a submission's CPU goes: the WSGI application driven in-process, as gunicorn would call it.

    python -m bench.submit_profile [--requests 200] [--rounds 3] [--no-stages] [--top N]

Starts its own PostgreSQL and Redis under ``var/bench/profile-<time>`` (``bench.run.setup_django``; removed at
the end) and one tenant whose limits never refuse (``bench.platform.make_tenant``). Each round, alternating so
machine load hits both alike: ``--requests`` trivial authenticated ``GET /api/v1/jobs?page_size=1`` and as many
submissions (``POST /api/v1/watermark/detect``, a 0.5 s WAV, every file different: the latency section's
request), each a prebuilt multipart body fed to ``audioseal_site.wsgi.application``. Reported: this
process's CPU milliseconds per request (``time.process_time``, fastest round, so other work on the machine
counts less than in wall time), the PostgreSQL and Redis servers' CPU per request, the ratios (trivial over
submission: what bounds the HTTP throughput ratio of ``bench.run --sections latency``, where HTTP parsing and
the client cost both about alike), and each stage's CPU (``StageTimer``: this thread's CPU inside named
functions, no per-call profiler hook). ``--top N``: also a cProfile of the submissions. No worker runs; jobs
stay queued. Not a test.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import io
import json
import pstats
import shutil
import statistics
import time
from typing import Any

from bench.models import REPO

# Stage -> (module, attribute path) of a callable whose inclusive CPU time (this thread's) is the stage's.
# Stages nest (the transaction includes the reservation and the storage write; the enqueue runs in its commit).
STAGES = {
    "authentication (API key)": ("accounts.authentication", "ApiKeyAuthentication.authenticate"),
    "throttle (standing + Redis script)": ("billing.ratelimit", "PlanRateThrottle.allow_request"),
    "multipart parse": ("rest_framework.request", "Request._load_data_and_files"),
    "request serializer": ("rest_framework.serializers", "BaseSerializer.is_valid"),
    "probe": ("jobs.services", "probe_upload"),
    "submit: whole transaction": ("jobs.services", "submit"),
    "submit: job INSERT": ("django.db.models.base", "Model.save"),
    "submit: storage write": ("django.core.files.storage.base", "Storage.save"),
    "submit: reservation": ("billing.services", "reserve"),
    "submit: commit + enqueue": ("django.db.transaction", "Atomic.__exit__"),
    "enqueue (RQ push)": ("jobs.services", "_push"),
    "response (serializer)": ("jobs.api.waiting", "respond"),
    "render JSON": ("rest_framework.response", "Response.rendered_content"),
    "request log": ("accounts.request_log", "record"),
    "view (post)": ("jobs.api.views", "JobCreateView.post"),
    "whole request (WSGI)": ("django.core.handlers.wsgi", "WSGIHandler.__call__"),
}


class StageTimer:
    """Wraps each stage's callable to add up this thread's CPU (``time.thread_time``) spent inside it: a few
    wrappers per request instead of cProfile's hook on every call, so the figures are not inflated."""

    def __init__(self) -> None:
        self.totals = dict.fromkeys(STAGES, 0.0)
        self.active = False
        self._undo: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        import importlib

        for stage, (module_name, path) in STAGES.items():
            owner: Any = importlib.import_module(module_name)
            *parents, attr = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            original = owner.__dict__[attr]
            self._undo.append((owner, attr, original))
            if isinstance(original, property):
                setattr(owner, attr, property(self._wrap(stage, original.fget)))
            else:
                setattr(owner, attr, self._wrap(stage, original))

    def _wrap(self, stage: str, original):
        import functools

        timer = self
        depth = {"n": 0}  # a stage entered again inside itself (super().post) counts once

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if not timer.active or depth["n"]:
                depth["n"] += 1
                try:
                    return original(*args, **kwargs)
                finally:
                    depth["n"] -= 1
            depth["n"] += 1
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                timer.totals[stage] += time.thread_time() - started
                depth["n"] -= 1

        return wrapper

    def per_request(self, count: int) -> dict[str, float]:
        return {stage: round(1000 * total / count, 2) for stage, total in self.totals.items()}


def environ(method: str, path: str, api_key: str, body: bytes = b"", content_type: str = "") -> dict[str, Any]:
    path_info, _, query = path.partition("?")
    env = {
        "REQUEST_METHOD": method, "PATH_INFO": path_info, "QUERY_STRING": query, "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8000", "HTTP_AUTHORIZATION": f"Bearer {api_key}",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
        "CONTENT_LENGTH": str(len(body)),
    }
    if content_type:
        env["CONTENT_TYPE"] = content_type
    return env


def service_processes() -> dict[str, list]:
    """The PostgreSQL processes (the postmaster's children: backends, WAL writer…) and the Redis server."""
    import psutil
    from django.db import connection

    from core.redis import client as redis_client

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = psutil.Process(cursor.fetchone()[0])
    postmaster = backend.parent()
    redis_pid = int(redis_client().info("server")["process_id"])
    return {"postgres": [postmaster, *postmaster.children()], "redis": [psutil.Process(redis_pid)]}


def cpu_seconds(processes: list) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except Exception:  # noqa: BLE001 - a backend that exited meanwhile
            continue
        total += times.user + times.system
    return total


def call(app, env: dict[str, Any], expect: int) -> None:
    status: list[str] = []
    result = app(env, lambda s, headers, exc_info=None: status.append(s))
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    if not status or not status[0].startswith(str(expect)):
        raise RuntimeError(f"{env['REQUEST_METHOD']} {env['PATH_INFO']}: {status} {body[:300]!r}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-stages", action="store_true", help="no stage timers: only the per-request CPU")
    parser.add_argument("--top", type=int, default=0,
                        help="also cProfile the submissions and print the N costliest functions (tottime)")
    parser.add_argument("--dump", default="", help="cProfile the submissions into this file (pstats)")
    args = parser.parse_args(argv)

    from bench.run import machine_info, setup_django

    run_dir = REPO / "var" / "bench" / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    atexit.register(shutil.rmtree, run_dir, True)  # before the services start: runs after their own stop (LIFO)
    setup_django(run_dir)

    from audioseal_site.wsgi import application
    from bench.clips import small_wav, speech_base
    from bench.platform import make_tenant
    from jobs.queues import get_queue
    from testing.servers import multipart

    api_key = make_tenant(f"profile-{int(time.time())}")
    base = speech_base()
    total = args.requests * args.rounds
    bodies = [multipart("file", f"small-{i}.wav", small_wav(0.5, 900_000 + i, base)) for i in range(total + 4)]
    get_path = "/api/v1/jobs?page_size=1"
    post_path = "/api/v1/watermark/detect"
    for i in range(4):  # warm-up: imports, connections, the period row
        call(application, environ("POST", post_path, api_key, *bodies[total + i]), 202)
        call(application, environ("GET", get_path, api_key), 200)

    rounds: dict[str, list[float]] = {"get": [], "submit": []}
    services_cpu: dict[str, dict[str, float]] = {"get": {}, "submit": {}}
    processes = service_processes()
    timer = StageTimer()
    timer.install()
    stages: dict[str, dict[str, float]] = {}
    profile = cProfile.Profile() if args.top or args.dump else None
    for r in range(args.rounds):
        for name in ("get", "submit"):
            if name == "get":
                envs = [environ("GET", get_path, api_key) for _ in range(args.requests)]
            else:
                envs = [environ("POST", post_path, api_key, *bodies[r * args.requests + i])
                        for i in range(args.requests)]
            timer.totals = stages.setdefault(name, dict.fromkeys(STAGES, 0.0))
            timer.active = not args.no_stages
            if profile is not None and name == "submit":
                profile.enable()
            before = {service: cpu_seconds(procs) for service, procs in processes.items()}
            started = time.process_time()
            for env in envs:
                call(application, env, 202 if name == "submit" else 200)
            rounds[name].append(1000 * (time.process_time() - started) / args.requests)
            for service, procs in processes.items():
                spent = 1000 * (cpu_seconds(procs) - before[service]) / args.requests
                services_cpu[name][service] = min(services_cpu[name].get(service, spent), spent)
            if profile is not None:
                profile.disable()
            timer.active = False
        get_queue("watermark").empty()  # no worker runs: keep Redis small

    best = {name: round(min(values), 2) for name, values in rounds.items()}
    out: dict[str, Any] = {
        "machine": machine_info(),
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "cpu_ms_per_request_fastest": best,
        "cpu_ms_per_request_median": {n: round(statistics.median(v), 2) for n, v in rounds.items()},
        "cpu_ratio_get_over_submit": round(best["get"] / best["submit"], 3),
        # The servers' CPU per request (fastest round), which the HTTP benchmark's machine pays too.
        "services_cpu_ms_per_request": {n: {k: round(v, 2) for k, v in d.items()} for n, d in services_cpu.items()},
    }
    whole = {n: best[n] + sum(services_cpu[n].values()) for n in best}
    out["cpu_ratio_with_services"] = round(whole["get"] / whole["submit"], 3)
    if not args.no_stages:
        count = args.requests * args.rounds
        out["stages_cpu_ms_per_request"] = {
            stage: {name: round(1000 * stages[name][stage] / count, 2) for name in stages}
            for stage in STAGES if any(stages[name][stage] for name in stages)
        }
        out["note"] = ("stages: this thread's CPU inside each, mean over all rounds; they nest; the per-request "
                       "figures above are the process's CPU (every thread), fastest round")
    print(json.dumps(out, indent=2))
    if profile is not None and args.dump:
        profile.dump_stats(args.dump)
    if profile is not None and args.top:
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(args.top)
        print(text.getvalue())
    return out


if __name__ == "__main__":
    main()
