"""What a robustness report costs: seconds of compute per second of audio, against one detection.

    python -m bench.report_cost                     # 10 s and 60 s clips, demo model, 1 thread
    python -m bench.report_cost --seconds 5,30 --threads 2 --model-dir /models/audioseal

The report (``media_ops.watermark.report``) applies every attack of ``media_ops.watermark.attacks.BATTERY``
and reads each copy with the product's detection (alignment search included), so its cost is about
(attacks + 1) detections plus the attacks themselves. This measures the three parts on speech clips made from
the committed fixtures (``bench.clips``), watermarked first, fastest of ``--repeats`` runs; the README's
figures come from here. ``WATERMARK_REPORT_MAX_SECONDS`` (60 s) bounds the worst case.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.clips import RATE, make_clip

DEMO = Path(__file__).resolve().parent.parent / "media_ops" / "demo_models" / "audioseal"


def _fastest(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def measure(seconds: float, models: Any, repeats: int) -> dict[str, Any]:
    from media_ops import watermark
    from media_ops.watermark import attacks
    from media_ops.watermark.report import attack_seed, robustness_report

    clip = make_clip(seconds, seed=int(seconds * 1000))
    marked = watermark.embed(models, clip[None, :], RATE, watermark.parse_message("1A2B"))

    def run_attacks() -> None:
        for a in attacks.BATTERY:
            a(marked[0], RATE, np.random.default_rng(attack_seed(attacks.BATTERY_VERSION, a.name)))

    result: dict[str, Any] = {}

    def run_report() -> None:
        result.update(robustness_report(models, marked, RATE, battery=attacks.BATTERY,
                                        battery_version=attacks.BATTERY_VERSION, original=(clip[None, :], RATE)))

    detect = _fastest(lambda: watermark.detect(models, marked, RATE), repeats)
    attack = _fastest(run_attacks, repeats)
    report = _fastest(run_report, repeats)
    return {
        "seconds": seconds,
        "attacks": len(attacks.BATTERY),
        "detect_s": round(detect, 3),
        "attacks_s": round(attack, 3),
        "report_s": round(report, 3),
        "report_per_audio_second": round(report / seconds, 3),
        "report_over_detect": round(report / detect, 1),
        "survived": f"{result['summary']['message_survived']}/{result['summary']['attacks']}",
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", default="10,60", help="clip lengths, comma-separated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model-dir", default=str(DEMO), help="a folder with generator.pth and detector.pth")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from media_ops import watermark

    torch.set_num_threads(args.threads)
    models = watermark.WatermarkModels.load(
        str(Path(args.model_dir) / "generator.pth"), str(Path(args.model_dir) / "detector.pth"), device=args.device
    )
    models.warm()
    rows = [measure(float(s), models, args.repeats) for s in args.seconds.split(",")]
    print(f"device {args.device}, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    print("| clip | attacks | one detection | the attacks | the report | report s per audio s | report / detection |"
          " message survived |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seconds']:g} s | {r['attacks']} | {r['detect_s']} s | {r['attacks_s']} s | {r['report_s']} s |"
              f" {r['report_per_audio_second']} | {r['report_over_detect']}× | {r['survived']} |")
    return rows


if __name__ == "__main__":
    main()
