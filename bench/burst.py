"""Batching and memory of the watermark engine, in-process (``python -m bench.burst``; part of ``make bench``).

Three measurements, one torch thread, no HTTP and no worker (they measure the model side of the engine:
``WatermarkModels`` and ``media_ops.watermark``):

1. **burst**: ``BENCH_BURST_JOBS`` (32) embed jobs of random lengths in 1-4 s arriving at once, taken by the
   engine ``B`` at a time in arrival order (what a worker's model loop takes from a full queue) through
   ``watermark.embed_batch``, at B = 1 and B = 8: forward passes per job (``WatermarkModels.forward_passes``)
   and audio seconds per second, for the demo pair and the full-size 16-bit architecture (random weights).
2. **tail**: what the zero tail and the length buckets cost (``ZERO_TAIL_SAMPLES``, ``LENGTH_BUCKET_SAMPLES``):
   the full-size generator's and detector's forward on 1 s and 10 s clips, at their own length and at the
   padded length the engine runs them at, alternating rounds, fastest of ``BENCH_TAIL_ROUNDS`` (7): ratios.
3. **rss**: resident memory of a fresh process running ``BENCH_RSS_JOBS`` (2,000) plain detections
   (``watermark.detect(..., search=None)``) of random lengths in 0.5-3 s (every job a new length) with the demo
   models, after the first ``BENCH_RSS_FIRST`` (100) and at the end, with the length buckets and (for
   comparison) without them (``LENGTH_BUCKET_SAMPLES`` patched to 1 in that process). oneDNN's primitive
   cache capacity is the worker's (``ONEDNN_PRIMITIVE_CACHE_CAPACITY=64``, settings "Performance").

Results are printed as JSON and, from ``bench.run``, land in ``var/bench/results*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "var" / "bench"
RATE = 16_000


def _log(message: str) -> None:
    print(f"[burst {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _load(generator: Path, detector: Path) -> Any:
    import torch

    from media_ops.watermark import WatermarkModels

    torch.set_num_threads(1)
    return WatermarkModels.load(str(generator), str(detector))


def burst(models: Any, *, jobs: int = 32, sizes: tuple[int, ...] = (1, 8), seed: int = 0) -> dict[str, Any]:
    """``jobs`` embeds of random 1-4 s lengths through ``embed_batch``, ``B`` at a time, for each B in ``sizes``
    (alternating, fastest of 2 rounds each); forward passes per job and audio seconds per second."""
    from bench.clips import make_clip, speech_base
    from media_ops import watermark

    rng = np.random.default_rng(seed)
    base = speech_base()
    lengths = rng.uniform(1.0, 4.0, size=jobs)
    items = [(make_clip(float(s), seed + i, base)[None, :], RATE, [int(b) for b in rng.integers(0, 2, 16)])
             for i, s in enumerate(lengths)]
    audio = float(sum(lengths))
    models.warm(batch_sizes=sizes)
    best: dict[int, dict[str, Any]] = {}
    for _ in range(2):
        for size in sizes:
            before = models.forward_passes["generator"]
            started = time.perf_counter()
            for i in range(0, jobs, size):
                watermark.embed_batch(models, items[i : i + size], max_batch=size)
            elapsed = time.perf_counter() - started
            passes = models.forward_passes["generator"] - before
            if size not in best or elapsed < best[size]["seconds"]:
                best[size] = {"seconds": round(elapsed, 3), "forward_passes": passes,
                              "forward_passes_per_job": round(passes / jobs, 3),
                              "audio_seconds_per_second": round(audio / elapsed, 2)}
    return {"jobs": jobs, "audio_seconds": round(audio, 2), "lengths_seconds": [1.0, 4.0],
            "by_batch_size": {str(k): v for k, v in best.items()}}


def tail_cost(models: Any, *, seconds: tuple[float, ...] = (1.0, 10.0), rounds: int = 7) -> dict[str, Any]:
    """Forward time at a clip's own length vs at the engine's padded length (zero tail, bucket), per network."""
    import torch

    from bench.clips import make_clip
    from media_ops.watermark import LENGTH_BUCKET_SAMPLES, ZERO_TAIL_SAMPLES

    message = torch.zeros((1, 16), dtype=torch.int64)
    nets = {
        "generator": lambda x: models.generator.get_watermark(x, RATE, message=message),
        "detector": lambda x: models.detector.detector(x),
    }
    out: dict[str, Any] = {}
    for s in seconds:
        n = int(s * RATE)
        padded = -(-(n + ZERO_TAIL_SAMPLES) // LENGTH_BUCKET_SAMPLES) * LENGTH_BUCKET_SAMPLES
        clip = torch.from_numpy(make_clip(s, 7))[None, None, :]
        inputs = {"own": clip, "padded": torch.nn.functional.pad(clip, (0, padded - n))}
        for net, forward in nets.items():
            best = {k: float("inf") for k in inputs}
            with torch.inference_mode():
                for x in inputs.values():
                    forward(x)  # untimed: first call of each shape
                for _ in range(rounds):
                    for k, x in inputs.items():
                        started = time.perf_counter()
                        forward(x)
                        best[k] = min(best[k], time.perf_counter() - started)
            out[f"{net}:{s:g}"] = {"samples": n, "padded_samples": padded,
                                   "own_seconds": round(best["own"], 4), "padded_seconds": round(best["padded"], 4),
                                   "ratio": round(best["padded"] / best["own"], 3)}
    return out


def rss_run(generator: Path, detector: Path, *, jobs: int, first: int, buckets: bool, seed: int = 0) -> dict[str, Any]:
    """In this process: ``jobs`` plain detections of random 0.5-3 s lengths; RSS after ``first`` and at the end."""
    import psutil

    from bench.clips import make_clip, speech_base
    from media_ops import watermark
    from media_ops.watermark import models as wm_models

    if not buckets:
        wm_models.LENGTH_BUCKET_SAMPLES = 1  # every job its own input shape: the behaviour before the buckets
    models = _load(generator, detector)
    models.warm()
    process = psutil.Process()
    rng = np.random.default_rng(seed)
    base = speech_base()
    lengths = rng.uniform(0.5, 3.0, size=jobs)
    out: dict[str, Any] = {"buckets": buckets, "jobs": jobs, "jobs_first": first,
                           "rss_start_mb": round(process.memory_info().rss / 2**20, 1)}
    started = time.perf_counter()
    for i, s in enumerate(lengths):
        watermark.detect(models, make_clip(float(s), 1000 + i, base)[None, :], RATE, search=None)
        if i + 1 == first:
            out["rss_after_first_mb"] = round(process.memory_info().rss / 2**20, 1)
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["rss_after_total_mb"] = round(process.memory_info().rss / 2**20, 1)
    out["growth_percent"] = round(100 * (out["rss_after_total_mb"] / out["rss_after_first_mb"] - 1), 2)
    out["detector_forward_passes"] = models.forward_passes["detector"]
    return out


def rss(generator: Path, detector: Path, *, jobs: int, first: int) -> dict[str, Any]:
    """``rss_run`` in a fresh process each, with the buckets and without them."""
    env = {**os.environ, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64"),
           "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), "NO_TORCH_COMPILE": "1"}
    out: dict[str, Any] = {"onednn_primitive_cache_capacity": env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"]}
    for buckets in (True, False):
        _log(f"rss: {jobs} detections, buckets {'on' if buckets else 'off'}")
        cmd = [sys.executable, "-m", "bench.burst", "rss-run", "--generator", str(generator), "--detector",
               str(detector), "--jobs", str(jobs), "--first", str(first)] + ([] if buckets else ["--no-buckets"])
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True)
        out["buckets" if buckets else "no_buckets"] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def run_all(full: tuple[Path, Path] | None, tiny: tuple[Path, Path], *, quick: bool = False) -> dict[str, Any]:
    """The three measurements (``full`` None: the full-size parts are skipped)."""
    jobs = int(os.environ.get("BENCH_BURST_JOBS", 8 if quick else 32))
    rss_jobs = int(os.environ.get("BENCH_RSS_JOBS", 200 if quick else 2000))
    rss_first = min(rss_jobs, int(os.environ.get("BENCH_RSS_FIRST", 50 if quick else 100)))
    rounds = int(os.environ.get("BENCH_TAIL_ROUNDS", 3 if quick else 7))
    results: dict[str, Any] = {"load_average_start": [round(x, 2) for x in os.getloadavg()], "threads": 1}
    _log(f"burst: {jobs} embeds, demo models")
    results["burst_demo"] = burst(_load(*tiny), jobs=jobs)
    if full is not None:
        full_models = _load(*full)
        _log(f"burst: {jobs} embeds, full-size models")
        results["burst_full"] = burst(full_models, jobs=jobs)
        _log("tail: forward cost at own vs padded length, full-size models")
        results["tail_cost_full"] = tail_cost(full_models, rounds=rounds)
        del full_models
    results["rss"] = rss(*tiny, jobs=rss_jobs, first=rss_first)
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def markdown(results: dict[str, Any]) -> list[str]:
    lines = ["", f"Engine batching and memory (`bench.burst`, 1 torch thread, load average "
             f"{results['load_average_start']} at start, {results['load_average_end']} at end):", "",
             "| models | batch size | forward passes per job | audio s/s |", "|---|---|---|---|"]
    for key, label in (("burst_demo", "demo"), ("burst_full", "full-size")):
        for size, r in results.get(key, {}).get("by_batch_size", {}).items():
            lines.append(f"| {label} | {size} | {r['forward_passes_per_job']} | {r['audio_seconds_per_second']} |")
    if results.get("tail_cost_full"):
        lines += ["", "| network | clip | own length (s) | padded (s) | ratio |", "|---|---|---|---|---|"]
        for key, r in results["tail_cost_full"].items():
            net, s = key.split(":")
            lines.append(f"| {net} | {s} s | {r['own_seconds']} | {r['padded_seconds']} | {r['ratio']} |")
    for key in ("buckets", "no_buckets"):
        r = results["rss"][key]
        lines.append(f"\nRSS, {r['jobs']} detections of 0.5-3 s, {'with' if r['buckets'] else 'without'} length "
                     f"buckets: {r['rss_after_first_mb']} MB after {r['jobs_first']}, {r['rss_after_total_mb']} "
                     f"MB after {r['jobs']}: growth {r['growth_percent']} % ({r['seconds']} s).")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", default="all", choices=["all", "rss-run"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-full", action="store_true", help="skip the full-size models (burst demo and rss only)")
    parser.add_argument("--generator")
    parser.add_argument("--detector")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--first", type=int, default=100)
    parser.add_argument("--no-buckets", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the worker's settings, before torch loads
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
    os.environ.setdefault("NO_TORCH_COMPILE", "1")
    sys.path.insert(0, str(REPO))
    if args.what == "rss-run":
        result = rss_run(Path(args.generator), Path(args.detector), jobs=args.jobs, first=args.first,
                         buckets=not args.no_buckets)
        print(json.dumps(result))
        return
    from bench.models import full_size_checkpoints, tiny_checkpoints

    tiny = tiny_checkpoints(BENCH_DIR / "models" / "tiny")[:2]
    full = None if args.no_full else full_size_checkpoints(BENCH_DIR / "models" / "full")
    results = run_all(full, tiny, quick=args.quick)
    print(json.dumps(results, indent=2))
    print("\n".join(markdown(results)))


if __name__ == "__main__":
    main()
