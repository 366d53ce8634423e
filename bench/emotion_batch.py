"""Emotion batching on this machine: a batch of clips in one padded pass vs one clip at a time.

    python -m bench.emotion_batch [--threads 2] [--rounds 7] [--models demo,base]

For the shipped demo model and a base-size emotion2vec with random weights (``bench.models``, built once into
``var/bench/models``), it times four 3 s speech clips (equal lengths: no padding) and four clips of 1.5-4.5 s
(the same 12 s of audio, padded to the longest) three ways: ``analyze`` one at a time (FunASR's ``generate``:
what a worker with batch size 1 runs), ``analyze_batch`` with ``max_batch=1`` (the batch path, one clip per
pass) and ``analyze_batch`` with ``max_batch=4`` (one pass). Rounds alternate the ways, so load on a shared
machine hits them alike; the fastest and the median round are reported as seconds per clip. The result
chooses ``BATCH_SIZE_EMOTION``'s CPU default (``media_ops.pool``); nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.clips import make_clip, speech_base
from bench.models import REPO, emotion_base_dir

BENCH_DIR = REPO / "var" / "bench"
DEMO_DIR = REPO / "media_ops" / "demo_models" / "emotion2vec_demo"
SETS = {"4 x 3 s": [3.0, 3.0, 3.0, 3.0], "1.5-4.5 s": [1.5, 2.5, 3.5, 4.5]}


def measure(model_dir: Path, *, threads: int, rounds: int) -> dict[str, Any]:
    import torch

    from media_ops.emotion import EmotionModel

    model = EmotionModel.load(model_dir, threads=threads)
    torch.set_num_threads(threads)
    base = speech_base()
    ways = {
        "analyze": lambda clips: [model.analyze(c) for c in clips],
        "batch_1": lambda clips: model.analyze_batch([(c, "utterance", False) for c in clips], max_batch=1),
        "batch_4": lambda clips: model.analyze_batch([(c, "utterance", False) for c in clips], max_batch=4),
    }
    out: dict[str, Any] = {}
    for name, lengths in SETS.items():
        clips = [make_clip(s, 100 + i, base) for i, s in enumerate(lengths)]
        for fn in ways.values():  # warm every shape once, untimed
            fn(clips)
        times: dict[str, list[float]] = {way: [] for way in ways}
        for r in range(rounds):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            for way in order:
                started = time.perf_counter()
                ways[way](clips)
                times[way].append((time.perf_counter() - started) / len(clips))
        out[name] = {
            way: {"min": round(min(t), 4), "median": round(float(np.median(t)), 4)} for way, t in times.items()
        }
        single = out[name]["analyze"]["median"]
        out[name]["speedup_batch_4_vs_analyze"] = round(single / out[name]["batch_4"]["median"], 2)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.emotion_batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--models", default="demo,base")
    args = parser.parse_args(argv)
    dirs = {"demo": DEMO_DIR, "base": None}
    results: dict[str, Any] = {"threads": args.threads, "rounds": args.rounds}
    for name in args.models.split(","):
        model_dir = dirs[name] or emotion_base_dir(BENCH_DIR / "models" / "emotion_base")
        results[name] = measure(model_dir, threads=args.threads, rounds=args.rounds)
        print(name, json.dumps(results[name], indent=1), flush=True)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    (BENCH_DIR / "emotion_batch.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
