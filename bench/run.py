"""``make bench`` (``python -m bench.run [--quick]``): the platform against the model's limit, in one run.

What it measures, all in one process tree on this machine, with the same clips for every column:

1. **limit**: the full-size AudioSeal 16-bit model's bare forward pass in a loop (``bench.limit.raw_limit``),
   and the platform's own windowed engine primitive in the same kind of loop (``engine``).
2. **platform**: the clips submitted through the HTTP API to a gunicorn server with one worker process
   (``manage.py run_worker``) configured with the same full-size checkpoints; first submit → last completion.
3. **naive**: the seed pattern, a model constructed per job with the library's defaults (``bench.limit``).
4. ratios platform/limit and platform/naive for each clip length (1 s, 10 s and 60 s by default).
5. API latency p50/p99 and throughput at 32 concurrent clients: job submission (small files) against a
   trivial authenticated endpoint (``GET /api/v1/jobs?page_size=1``), with no worker running so only the API
   is measured.
6. worker RSS after the first 100 and after 2,000 small jobs (tiny demo models, 0.3-3 s clips, each its own
   length), those small jobs per second end to end, and the Redis keys left after them (``redis_keys``: none
   should be per job).
7. **waits**: another tenant's ``GET /api/v1/usage`` p50/p99 while one API key holds N ``?wait=30``
   requests, under the former gthread workers and the production uvicorn workers (``bench.waits``).
8. **burst**: the engine in-process, one thread (``bench.burst``): a burst of mixed-length embeds at batch 1
   vs 8 (forward passes per job, audio s/s), the cost of the zero tail and length buckets, and RSS over 2,000
   plain detections of ever-new lengths with and without the buckets.

It starts its own embedded PostgreSQL and Redis under ``var/bench/run-*`` (whatever ``DATABASE_URL`` and
``REDIS_URL`` say is ignored), and removes that directory at the end. The full-size checkpoints (random
weights, ~90 MB) are built once into ``var/bench/models``. Results: ``var/bench/results.json`` and
``var/bench/results.md``, also printed.

Knobs (environment): ``BENCH_CLIPS`` (``"1:20,10:8,60:3"``: seconds:count), ``BENCH_OPS`` (``embed`` or
``embed,detect``), ``BENCH_SMALL_JOBS`` (2000), ``BENCH_SMALL_JOBS_FIRST`` (100), ``BENCH_LATENCY_CLIENTS``
(32), ``BENCH_LATENCY_REQUESTS`` (requests per client per round, 10), ``BENCH_LATENCY_ROUNDS`` (3),
``BENCH_WEB_WORKERS`` (2), ``BENCH_WEB_THREADS`` (4), ``BENCH_WAITS`` (``"40,200"``: N held waits),
``BENCH_WAIT_SAMPLES`` (40), ``BENCH_WAIT_WEB_WORKERS`` (5) and ``BENCH_WAIT_WEB_THREADS`` (4: the production
config's defaults on this machine), ``BENCH_LONE_JOBS`` (3: lone jobs per clip length, one at a time, after
each throughput run), ``BENCH_NAIVE_COMPILE=1`` (also time the naive baseline with audioseal's
lazy torch.compile left on), ``MODEL_THREADS``/``MODEL_DEVICE`` as for the worker.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform as pyplatform
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "var" / "bench"

FULL_DEFAULT = {
    "clips": "1:20,10:8,60:3", "emotion_clips": "1:10,10:4,60:1", "small": 2000, "small_first": 100,
    "latency_requests": 10,
}
QUICK_DEFAULT = {
    "clips": "1:4,10:2,60:1", "emotion_clips": "1:2,10:1,60:1", "small": 200, "small_first": 50,
    "latency_requests": 3,
}
ALL_SECTIONS = ("limit", "naive", "platform", "latency", "rss", "waits", "burst")
MODEL_SECTIONS = {"limit", "naive", "platform", "rss", "burst"}
SUBMIT_PATH = {
    "embed": "/api/v1/watermark/embed",
    "detect": "/api/v1/watermark/detect",
    "emotion": "/api/v1/emotion/analyze",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_clips(text: str) -> dict[float, int]:
    out: dict[float, int] = {}
    for part in text.split(","):
        seconds, _, count = part.partition(":")
        out[float(seconds)] = int(count or 1)
    return out


def machine_info() -> dict[str, Any]:
    import torch

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": model or pyplatform.processor(),
        "cpu_count": os.cpu_count(),
        "python": pyplatform.python_version(),
        "torch": torch.__version__,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def setup_django(run_dir: Path) -> None:
    """Own embedded services under ``run_dir`` (never a configured database), migrated."""
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ["VAR_DIR"] = str(run_dir)
    os.environ["EMBEDDED_SERVICES"] = "true"
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("NO_TORCH_COMPILE", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "audioseal_site.settings"
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


# --- sections -----------------------------------------------------------------------------------------------


def section_limit(ops, clips, models, threads, device, lanes: int = 1) -> dict[str, Any]:
    """The bare forward as one stream with every thread (``limit``) and, when the worker runs several model
    lanes, also as that many single streams side by side (``limit_lanes``): the stricter of the two is the
    bare model's best on this machine."""
    from bench import limit
    from bench.clips import read_mono16

    out: dict[str, Any] = {}
    for op in ops:
        for seconds, paths in clips[op].items():
            audio = [read_mono16(p) for p in paths]
            log(f"limit {op} {seconds:g}s x{len(paths)}")
            raw_lanes = None
            if op == "emotion":
                raw = limit.emotion_raw_limit(models["emotion"], audio, device=device, threads=threads)
                if lanes > 1:
                    log(f"limit {op} {seconds:g}s x{len(paths)}, {lanes} lanes")
                    raw_lanes = limit.emotion_raw_limit(models["emotion"], audio, device=device, threads=threads,
                                                        lanes=lanes)
            else:
                raw = limit.raw_limit(models["generator"], models["detector"], audio, op=op, device=device,
                                      threads=threads)
                if lanes > 1:
                    log(f"limit {op} {seconds:g}s x{len(paths)}, {lanes} lanes")
                    raw_lanes = limit.raw_limit(models["generator"], models["detector"], audio, op=op,
                                                device=device, threads=threads, lanes=lanes)
            log(f"engine {op} {seconds:g}s x{len(paths)}")
            if op == "emotion":
                engine = limit.emotion_engine_loop(models["emotion"], audio, device=device, threads=threads)
            else:
                engine = limit.engine_loop(models["generator"], models["detector"], audio, op=op,
                                           device=device, threads=threads)
            out[f"{op}:{seconds:g}"] = {"limit": raw, "engine": engine, "limit_lanes": raw_lanes}
    return out


def section_naive(ops, clips, models, run_dir, compile_too: bool) -> dict[str, Any]:
    from bench import limit

    out: dict[str, Any] = {}
    for op in ops:
        checkpoint = {"embed": "generator", "detect": "detector", "emotion": "emotion"}[op]
        checkpoint = models[checkpoint]
        for seconds, paths in clips[op].items():
            log(f"naive {op} {seconds:g}s x{len(paths)}")
            result = {"eager": limit.run_naive(checkpoint, paths, run_dir / "naive-out", op=op)}
            if compile_too and op != "emotion" and seconds <= 10:
                log(f"naive {op} {seconds:g}s x2 with torch.compile (library default)")
                result["torch_compile"] = limit.run_naive(
                    checkpoint, paths[:2], run_dir / "naive-out", op=op, compile=True
                )
            out[f"{op}:{seconds:g}"] = result
    return out


def _submit_all(client, op: str, paths: list[Path]) -> tuple[float, list[str]]:
    started = time.time()
    ids = [
        client.submit(SUBMIT_PATH[op], p.name, p.read_bytes(), {"message": "1A2B"} if op == "embed" else None)
        for p in paths
    ]
    return started, ids


def section_platform(ops, clips, warm_clips, lone_clips, base_url, api_key) -> dict[str, Any]:
    """Throughput (all of a length's clips submitted at once, first submit -> last completion), then the
    ``lone_clips`` one at a time (each submitted when the previous finished; ``BENCH_LONE_JOBS`` of each
    length): a lone job's latency, created -> finished, the median kept."""
    import numpy as np

    from bench.platform import Client, wait_final

    client = Client(base_url, api_key)
    out: dict[str, Any] = {}
    for op in ops:
        log(f"platform warm-up {op}: one clip of each length")
        _, ids = _submit_all(client, op, [paths[0] for paths in warm_clips[op].values()])
        wait_final(ids, timeout=1800)
        for seconds, paths in clips[op].items():
            log(f"platform {op} {seconds:g}s x{len(paths)}")
            started, ids = _submit_all(client, op, paths)
            rows = wait_final(ids, timeout=3600)
            finished = max(r["finished_at"].timestamp() for r in rows)
            elapsed = finished - started
            failed = [r for r in rows if r["status"] != "succeeded"]
            audio = sum(float(r["audio_seconds"]) for r in rows)
            busy = sum((r["finished_at"] - r["started_at"]).total_seconds() for r in rows if r["started_at"])
            out[f"{op}:{seconds:g}"] = {
                "clips": len(rows),
                "failed": len(failed),
                "first_failure": (failed[0]["error_code"], failed[0]["error_message"]) if failed else None,
                "audio_seconds": round(audio, 3),
                "elapsed_seconds": round(elapsed, 4),
                "audio_seconds_per_second": round(audio / elapsed, 3) if elapsed > 0 else None,
                "worker_busy_seconds": round(busy, 3),
                **job_stats(rows),
            }
            lone = []
            for path in lone_clips[op][seconds]:
                _, (job_id,) = _submit_all(client, op, [path])
                (row,) = wait_final([job_id], timeout=600)
                lone.append((row["finished_at"] - row["created_at"]).total_seconds())
            out[f"{op}:{seconds:g}"]["lone_job_seconds"] = round(float(np.median(lone)), 4) if lone else None
    return out


def section_latency(base_url: str, api_key: str, clients: int, per_client: int, rounds: int = 3,
                    tenants: int = 1) -> dict[str, Any]:
    """Submission (POST detect, 0.5 s WAV, every file different) vs a trivial authenticated GET, measured in
    ``rounds`` alternations (GET, POST, GET, POST, ...) so load from elsewhere on the machine hits both alike;
    each endpoint's figures are its median round (by throughput), the ratio is of those medians, and every
    round's figures are kept (``rounds``). ``tenants`` > 1 (``BENCH_LATENCY_TENANTS``, a diagnosis, not the
    figure): the clients are spread over that many tenants' keys, so submissions stop queueing on one
    tenant's period-row lock (``billing.services.reserve``)."""
    import itertools
    import statistics

    from bench.clips import small_wav, speech_base
    from bench.platform import Client, concurrent_requests, make_tenant

    base = speech_base()
    files = [small_wav(0.5, 900_000 + i, base) for i in range(rounds * clients * per_client)]
    warm = [small_wav(0.5, 800_000 + i, base) for i in range(4)]
    keys = [api_key] + [make_tenant(f"bench-{os.getpid()}-t{n}") for n in range(1, tenants)]
    next_key = itertools.cycle(keys)

    def make_client() -> Client:
        return Client(base_url, next(next_key))

    def prepare_get(client: Client, i: int):
        return client.prepare_get("/api/v1/jobs?page_size=1")

    per_round: dict[str, list[dict[str, Any]]] = {"trivial_get": [], "submit": []}
    for k in range(rounds):
        offset = k * clients * per_client

        def prepare_post(client: Client, i: int, offset: int = offset):
            content = warm[(-i - 1) % len(warm)] if i < 0 else files[offset + i]
            return client.prepare_upload(SUBMIT_PATH["detect"], f"small-{offset + i}.wav", content)

        log(f"latency round {k + 1}/{rounds}: trivial GET, {clients} clients x {per_client}")
        per_round["trivial_get"].append(
            concurrent_requests(make_client, prepare_get, clients=clients, per_client=per_client))
        log(f"latency round {k + 1}/{rounds}: job submission, {clients} clients x {per_client}")
        per_round["submit"].append(
            concurrent_requests(make_client, prepare_post, clients=clients, per_client=per_client))

    def median_round(results: list[dict[str, Any]]) -> dict[str, Any]:
        ordered = sorted(results, key=lambda r: r["requests_per_second"] or 0)
        return ordered[len(ordered) // 2]

    trivial, submit = median_round(per_round["trivial_get"]), median_round(per_round["submit"])
    round_ratios = [_ratio(s["requests_per_second"], t["requests_per_second"])
                    for t, s in zip(per_round["trivial_get"], per_round["submit"], strict=True)]
    return {
        "file_bytes": len(files[0]),
        "rounds": rounds,
        "tenants": tenants,
        "trivial_get": trivial,
        "submit": submit,
        "throughput_ratio": _ratio(submit["requests_per_second"], trivial["requests_per_second"]),
        "round_throughput_ratios": round_ratios,
        "round_ratio_median": round(statistics.median(r for r in round_ratios if r), 3) if any(round_ratios)
        else None,
        "per_round": {name: [r["requests_per_second"] for r in results] for name, results in per_round.items()},
        "p50_ratio": _ratio(submit["p50_ms"], trivial["p50_ms"]),
        "p99_ratio": _ratio(submit["p99_ms"], trivial["p99_ms"]),
        "submit_p99_over_p50": _ratio(submit["p99_ms"], submit["p50_ms"]),
    }


def drop_queued_jobs() -> int:
    """Cancel what the latency section queued (no worker ran): nothing else must pick those jobs up."""
    import django_rq

    from jobs import services
    from jobs.models import Job, JobStatus

    django_rq.get_queue("watermark").empty()
    # Through the state machine, like a customer's cancel: reservations released, webhooks and waiters told.
    return sum(
        1 for job in Job.objects.filter(status=JobStatus.QUEUED).iterator() if services.cancel_if_active(job)
    )


RSS_SECONDS = (0.3, 3.0)  # the small jobs' lengths: uniform in this range, every job its own (10 ms steps)


def rss_job_seconds(i: int) -> float:
    """Job ``i``'s clip length: seeded by ``i``, so every run submits the same lengths."""
    import numpy as np

    low, high = RSS_SECONDS
    return round(float(np.random.default_rng(700_000 + i).uniform(low, high)), 2)


def section_rss(base_url: str, api_key: str, worker_pid: int, first: int, total: int) -> dict[str, Any]:
    """Worker RSS after ``first`` and after ``total`` small jobs of varying length (``RSS_SECONDS``: oneDNN's
    per-shape caches and the allocator grow with new lengths, not with one length repeated), embed/detect
    alternating."""
    from bench.clips import small_wav, speech_base
    from bench.platform import Client, rss_bytes, wait_final

    base = speech_base()
    local = __import__("threading").local()

    def submit(i: int) -> str:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = Client(base_url, api_key)
        op = "embed" if i % 2 == 0 else "detect"
        return client.submit(SUBMIT_PATH[op], f"job-{i}.wav", small_wav(rss_job_seconds(i), 500_000 + i, base),
                             {"message": "00FF"} if op == "embed" else None)

    def run(indices: range) -> tuple[list[dict[str, Any]], float]:
        started = time.time()
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(submit, indices))
        rows = wait_final(ids, timeout=7200, poll=0.5)
        failed = sum(1 for r in rows if r["status"] != "succeeded")
        if failed:
            log(f"rss: {failed} of {len(rows)} small jobs did not succeed")
        return rows, time.time() - started

    out: dict[str, Any] = {"rss_start_mb": round(rss_bytes(worker_pid) / 2**20, 1)}
    log(f"rss: first {first} small jobs")
    _, elapsed1 = run(range(first))
    out["jobs_first"] = first
    out["rss_after_first_mb"] = round(rss_bytes(worker_pid) / 2**20, 1)
    log(f"rss: up to {total} small jobs")
    rows, elapsed2 = run(range(first, total))
    out.update(job_stats(rows))
    out["jobs_total"] = total
    out["rss_after_total_mb"] = round(rss_bytes(worker_pid) / 2**20, 1)
    out["growth_percent"] = round(100 * (out["rss_after_total_mb"] / out["rss_after_first_mb"] - 1), 2)
    out["small_jobs_per_second"] = round((total - first) / elapsed2, 2) if elapsed2 > 0 else None
    out["redis_keys"] = redis_keys()
    return out


def redis_keys() -> dict[str, Any]:
    """The keys left in Redis after the run (SCAN), grouped by shape (ids and worker names masked). RQ job ids
    name a job (``job-<uuid>-…``, ``webhook-<id>-…``): a key per job shows up as a shape with such an id whose
    count grows with the jobs run (``jobs/tests/test_redis_keys.py`` asserts there is none)."""
    import re

    import django_rq

    connection = django_rq.get_connection("watermark")
    shapes: dict[str, int] = {}
    for key in connection.scan_iter(count=1000):
        shape = re.sub(r"^rq:worker:.+", "rq:worker:<name>", key.decode(errors="replace"))
        shape = re.sub(r"\b(job|webhook)-[0-9a-f-]+\S*", r"\1-<id>", shape)
        shape = re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "<uuid>", shape)
        shapes[shape] = shapes.get(shape, 0) + 1
    per_job = sum(count for shape, count in shapes.items() if "-<id>" in shape)
    return {"total": sum(shapes.values()), "named_after_a_job": per_job, "by_shape": dict(sorted(shapes.items()))}


def job_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median time a job ran in the worker (started -> finished) and waited before it (created -> started)."""
    import numpy as np

    ran = [(r["finished_at"] - r["started_at"]).total_seconds() for r in rows if r["started_at"]]
    waited = [(r["started_at"] - r["created_at"]).total_seconds() for r in rows if r["started_at"]]
    return {
        "median_run_seconds": round(float(np.median(ran)), 4) if ran else None,
        "median_wait_seconds": round(float(np.median(waited)), 4) if waited else None,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


# --- report -------------------------------------------------------------------------------------------------


def summarise(results: dict[str, Any]) -> None:
    rows = []
    for key, plat in results.get("platform", {}).items():
        lim = results.get("limit", {}).get(key, {})
        naive = results.get("naive", {}).get(key, {})
        op, seconds = key.split(":")
        row = {
            "op": op,
            "clip_seconds": float(seconds),
            "clips": plat["clips"],
            "limit": lim.get("limit", {}).get("audio_seconds_per_second"),
            "limit_lanes": (lim.get("limit_lanes") or {}).get("audio_seconds_per_second"),
            "engine": lim.get("engine", {}).get("audio_seconds_per_second"),
            "platform": plat["audio_seconds_per_second"],
            "naive": naive.get("eager", {}).get("audio_seconds_per_second"),
            "naive_compile": naive.get("torch_compile", {}).get("audio_seconds_per_second"),
        }
        limit_elapsed = lim.get("limit", {}).get("elapsed_seconds")
        overhead = (plat["elapsed_seconds"] - limit_elapsed) / plat["clips"] if limit_elapsed else None
        row["overhead_ms_per_job"] = round(1000 * overhead, 1) if overhead is not None else None
        row["median_job_run_seconds"] = plat.get("median_run_seconds")
        row["lone_job_seconds"] = plat.get("lone_job_seconds")
        row["platform_over_limit"] = _ratio(row["platform"], row["limit"])
        row["platform_over_limit_lanes"] = _ratio(row["platform"], row["limit_lanes"])
        row["platform_over_engine"] = _ratio(row["platform"], row["engine"])
        row["platform_over_naive"] = _ratio(row["platform"], row["naive"])
        row["platform_over_naive_compile"] = _ratio(row["platform"], row["naive_compile"])
        rows.append(row)
    results["summary"] = rows


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    sections = results.get("sections", list(ALL_SECTIONS))
    partial = "" if sections == list(ALL_SECTIONS) else f", sections {','.join(sections)}"
    lines = [
        f"Benchmark ({'quick' if results['quick'] else 'full'} run{partial}), {m['date_utc']}",
        "",
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, {m.get('memory_gb', '?')} GB, "
        f"{m.get('gpu', 'no GPU')}; device `{results['device']}`, {results['threads']} torch threads, "
        f"{results.get('lanes', 1)} model lane(s) in the worker; "
        f"torch {m['torch']}, Python {m['python']}. Load average at start {m['load_average_start']}, "
        f"at end {m.get('load_average_end')}.",
    ]
    if results["models"].get("generator_params"):
        lines += [
            "Model: full-size AudioSeal 16-bit architecture (generator "
            f"{results['models']['generator_params']:,} / detector {results['models']['detector_params']:,} "
            "parameters, random weights)"
            + (f"; emotion2vec base-size reconstruction ({results['models']['emotion_params']:,} parameters, "
               "random weights, windows of 30 s)" if results["models"].get("emotion_params") else "")
            + ". Server: gunicorn (gthread) "
            f"{results['web']['workers']} processes x {results['web']['threads']} threads; one worker process.",
        ]
    if results.get("summary"):
        lines += [
            "",
            "Throughput in audio seconds per second (higher is better). limit = the model's bare forward on",
            "whole clips, fastest of 2 passes; engine = the platform's windowed engine in a bare loop; for long",
            "clips the platform can beat the limit because it windows long audio (the per-second cost of a",
            "whole-clip forward grows with length). naive = a model constructed per job, eager, torch defaults.",
            "",
            f"limit ({results.get('lanes', 1)} lanes) = the same bare forward run by that many threads side by",
            "side, the threads shared out among them, as the worker's model lanes run (the bare model's best).",
            "",
            "| op | clip | clips | limit (bare forward) | limit (lanes) | engine (windowed, bare) "
            "| platform (HTTP+queue+worker) | naive (model per job) | platform / limit | platform / limit (lanes) "
            "| platform / naive |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    for r in results.get("summary", []):
        naive = f"{r['naive']}" + (f" (compile: {r['naive_compile']})" if r.get("naive_compile") else "")
        vs_compile = r.get("platform_over_naive_compile")
        vs_naive = f"{r['platform_over_naive']}" + (f" (vs compile: {vs_compile})" if vs_compile else "")
        lines.append(
            f"| {r['op']} | {r['clip_seconds']:g} s | {r['clips']} | {r['limit']} | {r.get('limit_lanes')} | "
            f"{r['engine']} | {r['platform']} | {naive} | {r['platform_over_limit']} | "
            f"{r.get('platform_over_limit_lanes')} | {vs_naive} |"
        )
    if results.get("summary"):
        lines += [
            "",
            "Where the platform's time goes: overhead per job = (platform wall time - bare-forward time) /",
            "clips; a job's run = started -> finished in the worker (decode, model, encode, store, states);",
            "a lone job = one clip submitted with nothing else in flight, created -> finished (median).",
            "",
            "| op | clip | overhead per job (ms) | median job run (s) | lone job (s) |",
            "|---|---|---|---|---|",
        ]
        for r in results["summary"]:
            lines.append(
                f"| {r['op']} | {r['clip_seconds']:g} s | {r['overhead_ms_per_job']} | "
                f"{r['median_job_run_seconds']} | {r.get('lone_job_seconds')} |"
            )
    lat = results.get("latency")
    if lat:
        s, t = lat["submit"], lat["trivial_get"]
        lines += [
            "",
            f"API at {s['clients']} concurrent clients on loopback ({s['requests']} timed requests in all; "
            f"submission = POST /api/v1/watermark/detect with a {lat['file_bytes'] // 1024} KB WAV, "
            "no worker running):",
            "",
            "| endpoint | req/s | p50 ms | p90 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|",
            f"| GET /api/v1/jobs?page_size=1 | {t['requests_per_second']} | {t['p50_ms']} | {t['p90_ms']} | "
            f"{t['p99_ms']} | {t['errors']} |",
            f"| POST /api/v1/watermark/detect | {s['requests_per_second']} | {s['p50_ms']} | {s['p90_ms']} | "
            f"{s['p99_ms']} | {s['errors']} |",
            "",
            f"Submission/trivial: throughput {lat['throughput_ratio']}, p50 {lat['p50_ratio']}, p99 "
            f"{lat['p99_ratio']}; submission p99/p50 = {lat['submit_p99_over_p50']}. Each endpoint's median "
            f"of {lat.get('rounds', 1)} alternating rounds (req/s per round: GET "
            f"{lat.get('per_round', {}).get('trivial_get')}, POST {lat.get('per_round', {}).get('submit')}; "
            f"ratio per adjacent pair {lat.get('round_throughput_ratios')}).",
        ]
    rss = results.get("rss")
    if rss:
        lines += [
            "",
            f"Worker RSS ({results['rss_models']} models, clips of {RSS_SECONDS[0]:g}-{RSS_SECONDS[1]:g} s, "
            f"every job its own length, embed/detect alternating, {results.get('lanes', 1)} model lane(s)): "
            f"{rss['rss_start_mb']} MB at start, {rss['rss_after_first_mb']} MB after "
            f"{rss['jobs_first']} jobs, {rss['rss_after_total_mb']} MB after {rss['jobs_total']} jobs: "
            f"growth {rss['growth_percent']} % "
            f"({rss['small_jobs_per_second']} small jobs/s end to end).",
        ]
        if rss.get("redis_keys"):
            keys = rss["redis_keys"]
            lines.append(
                f"Redis keys after the run: {keys['total']}, of which {keys['named_after_a_job']} named after a "
                f"job; by shape: {', '.join(f'{k} {v}' for k, v in keys['by_shape'].items())}."
            )
    if results.get("burst"):
        from bench.burst import markdown as burst_markdown

        lines += burst_markdown(results["burst"])
    if results.get("waits"):
        from bench.waits import markdown as waits_markdown

        lines += waits_markdown(results["waits"], results["waits_samples"])
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few clips and jobs: a smoke run in minutes")
    parser.add_argument("--sections", default=",".join(ALL_SECTIONS),
                        help=f"comma-separated subset of {','.join(ALL_SECTIONS)}")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (services' data, logs)")
    args = parser.parse_args(argv)
    defaults = QUICK_DEFAULT if args.quick else FULL_DEFAULT
    sections = set(args.sections.split(","))
    clip_counts = parse_clips(os.environ.get("BENCH_CLIPS", defaults["clips"]))
    emotion_counts = parse_clips(os.environ.get("BENCH_EMOTION_CLIPS", defaults["emotion_clips"]))
    ops = [op for op in os.environ.get("BENCH_OPS", "embed,emotion").split(",") if op]
    small_total = int(os.environ.get("BENCH_SMALL_JOBS", defaults["small"]))
    small_first = min(small_total, int(os.environ.get("BENCH_SMALL_JOBS_FIRST", defaults["small_first"])))
    latency_clients = int(os.environ.get("BENCH_LATENCY_CLIENTS", 32))
    latency_requests = int(os.environ.get("BENCH_LATENCY_REQUESTS", defaults["latency_requests"]))
    web_workers = int(os.environ.get("BENCH_WEB_WORKERS", 2))
    web_threads = int(os.environ.get("BENCH_WEB_THREADS", 4))
    wait_samples = int(os.environ.get("BENCH_WAIT_SAMPLES", 40))

    # SIGTERM/SIGINT exit through atexit and finally blocks: children stopped, services stopped, dir removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    # The worker's OpenMP setting (settings.py "Performance"), before torch is imported here, so the bare loop
    # runs under the same conditions as the worker.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    run_dir = BENCH_DIR / f"run-{os.getpid()}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    if not args.keep:
        # Registered before the services start, so it runs after their own atexit stops (LIFO).
        atexit.register(shutil.rmtree, run_dir, True)

    from bench.models import count_parameters, full_size_checkpoints, tiny_checkpoints

    models: dict[str, Any] = {}
    if sections & MODEL_SECTIONS:
        log("building the full-size checkpoints (once, under var/bench/models)")
        gen, det = full_size_checkpoints(BENCH_DIR / "models" / "full")
        models = {"generator": gen, "detector": det}
    if "emotion" in ops and sections & MODEL_SECTIONS:
        from bench.models import emotion_base_dir

        log("building the base-size emotion2vec directory (once)")
        models["emotion"] = emotion_base_dir(BENCH_DIR / "models" / "emotion_base")
        import torch

        state = torch.load(models["emotion"] / "model.pt", map_location="cpu", weights_only=True, mmap=True)
        emotion_params = sum(t.numel() for t in state.values())
        del state

    setup_django(run_dir)
    from django.conf import settings

    from media_ops.pool import resolve_device, resolve_lanes

    threads = int(settings.MODEL_THREADS)
    device = resolve_device(settings.MODEL_DEVICE)
    # The platform's worker runs this many model lanes (settings WORKER_MODEL_LANES, 0 = by device).
    lanes = resolve_lanes(int(settings.WORKER_MODEL_LANES), device, threads) if settings.WORKER_PIPELINE else 1
    results: dict[str, Any] = {
        "quick": args.quick,
        "sections": [name for name in ALL_SECTIONS if name in sections],
        "machine": machine_info(),
        "device": device,
        "threads": threads,
        "lanes": lanes,
        "models": {
            "generator_params": count_parameters(models["generator"], "generator") if models else None,
            "detector_params": count_parameters(models["detector"], "detector") if models else None,
            "emotion_params": emotion_params if "emotion" in models else None,
        },
        "web": {"workers": web_workers, "threads": web_threads},
        "env": {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"), "MODEL_THREADS": threads,
                "naive": "torch defaults (OMP_WAIT_POLICY unset, default thread count)"},
        "config": {"clips": {f"{k:g}": v for k, v in clip_counts.items()},
                   "emotion_clips": {f"{k:g}": v for k, v in emotion_counts.items()}, "ops": ops},
    }
    log(f"machine: {results['machine']}")

    from bench.clips import write_clips

    lone_jobs = int(os.environ.get("BENCH_LONE_JOBS", "3"))
    clips, warm_clips, lone_clips = {}, {}, {}
    for op in ops:
        counts = emotion_counts if op == "emotion" else clip_counts
        clips[op] = write_clips(run_dir / "clips" / op, counts, seed=1 + 10 * ops.index(op))
        warm = {seconds: 1 for seconds in counts}
        warm_clips[op] = write_clips(run_dir / "warm" / op, warm, seed=2 + 10 * ops.index(op))
        # clips of their own: the result cache would answer a detection or emotion clip seen before
        lone_clips[op] = write_clips(run_dir / "lone" / op, {seconds: lone_jobs for seconds in counts},
                                     seed=3 + 10 * ops.index(op))

    if "limit" in sections:
        # The lanes limit by device, whatever the worker runs (WORKER_MODEL_LANES=1 compares against it too).
        results["limit"] = section_limit(ops, clips, models, threads, device,
                                         lanes=max(lanes, resolve_lanes(0, device, threads)))
    if "naive" in sections:
        results["naive"] = section_naive(ops, clips, models, run_dir,
                                         os.environ.get("BENCH_NAIVE_COMPILE", "") == "1")

    from bench import platform as plat

    children: list[plat.Child] = []
    atexit.register(lambda: [c.stop(10) for c in children])  # also on errors: never leave processes behind
    log_dir = run_dir / "logs"
    try:
        if sections & {"platform", "latency", "rss"}:
            api_key = plat.make_tenant(f"bench-{os.getpid()}")
            # gthread, as when these sections' figures in the README were measured (the waits section
            # compares it with the production uvicorn workers).
            server, base_url = plat.start_server(plat.child_env(run_dir), log_dir, workers=web_workers,
                                                 threads=web_threads, serving="gthread")
            children.append(server)
            log(f"server at {base_url} (gunicorn gthread {web_workers}x{web_threads})")
        if "platform" in sections:
            env = plat.child_env(run_dir, WATERMARK_GENERATOR=str(models["generator"]),
                                 WATERMARK_DETECTOR=str(models["detector"]),
                                 EMOTION_MODEL_DIR=str(models.get("emotion", settings.EMOTION_MODEL_DIR)))
            queues = tuple(sorted({"emotion" if op == "emotion" else "watermark" for op in ops}))
            log(f"starting the worker ({', '.join(queues)}) with the full-size models")
            worker = plat.start_worker(env, log_dir, "bench-full", queues=queues)
            children.append(worker)
            results["platform"] = section_platform(ops, clips, warm_clips, lone_clips, base_url, api_key)
            results["platform_worker_rss_mb"] = round(plat.rss_bytes(worker.pid) / 2**20, 1)
            worker.stop()
        if "latency" in sections:
            results["latency"] = section_latency(base_url, api_key, latency_clients, latency_requests,
                                                 rounds=int(os.environ.get("BENCH_LATENCY_ROUNDS", 3)),
                                                 tenants=int(os.environ.get("BENCH_LATENCY_TENANTS", 1)))
            results["latency"]["jobs_dropped_after"] = drop_queued_jobs()
        if "rss" in sections:
            tiny_gen, tiny_det, label = tiny_checkpoints(BENCH_DIR / "models" / "tiny")
            results["rss_models"] = label
            env = plat.child_env(run_dir, WATERMARK_GENERATOR=str(tiny_gen), WATERMARK_DETECTOR=str(tiny_det))
            worker = plat.start_worker(env, log_dir, "bench-small")
            children.append(worker)
            results["rss"] = section_rss(base_url, api_key, worker.pid, small_first, small_total)
            worker.stop()
        if "waits" in sections:
            from bench.waits import section_waits

            results["waits"] = section_waits(
                run_dir, log_dir, [int(n) for n in os.environ.get("BENCH_WAITS", "40,200").split(",")],
                samples=wait_samples, workers=int(os.environ.get("BENCH_WAIT_WEB_WORKERS", 5)),
                threads=int(os.environ.get("BENCH_WAIT_WEB_THREADS", 4)), log=log,
            )
            results["waits_samples"] = wait_samples
    finally:
        for child in children:
            child.stop()
    if "burst" in sections:  # last: it sets one torch thread in this process
        from bench.burst import run_all

        log("burst: mixed-length embeds at batch 1 and 8, tail cost, engine RSS")
        tiny_gen, tiny_det, _ = tiny_checkpoints(BENCH_DIR / "models" / "tiny")
        results["burst"] = run_all((models["generator"], models["detector"]), (tiny_gen, tiny_det),
                                   quick=args.quick)

    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    summarise(results)
    text = markdown(results)
    # A partial run (--sections) never overwrites the results of a full one.
    stem = "results" if sections >= set(ALL_SECTIONS) else "results-partial"
    (BENCH_DIR / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))
    (BENCH_DIR / f"{stem}.md").write_text(text)
    print()
    print(text)
    log(f"results in {BENCH_DIR / (stem + '.json')} and {BENCH_DIR / (stem + '.md')}")
    return results


if __name__ == "__main__":
    main()
