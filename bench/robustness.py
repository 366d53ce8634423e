"""``make bench-robustness``: the attack battery on held-out audio, our shipped watermark beside Resemble's
pretrained PerTh, in one run.

What it measures (issue 15's done-when): for every attack of ``media_ops.watermark.attacks.BATTERY``, on every
clip, whether the watermark is still detected, whether our 16-bit message comes back exact, and whether the
*clean* clip under the same attack is (falsely) called watermarked. Our side runs the product's detect path
(``media_ops.watermark.detect``, with the default alignment search: offsets, polarity, the re-synthesis
check); PerTh is presence only (no message) and is called watermarked when its decoder's mean score > 0.5.

Clips (none of them training material of the demo model):
* the two committed speech fixtures (media_ops/tests/fixtures/speech*_16k_mono.wav: sentences the training
  never saw; their voices are espeak-ng's en-us and en-gb+f3, whose languages training did use);
* the demo model's held-out espeak-ng set (voices, variants and sentence templates training never used;
  scripts/demo_watermark_common.py), when espeak-ng is installed: ``--heldout N`` clips of 3-5 s;
* synthetic music (``attacks.synthetic_music``, seeds training never drew).

PerTh comes from PyPI at bench time: ``resemble-perth==1.0.1`` is installed with ``--no-deps`` into
``var/perth`` (not the shared venv: its own dependencies would pull a torchaudio that does not match our
torch), and ``bench.perth_stub`` supplies the torchaudio transforms and ``pkg_resources`` it imports.

    .venv/bin/python -m bench.robustness [--heldout 4] [--music 2] [--no-perth] [--only NAME,...]
        [--generator PATH --detector PATH] [--json var/bench-robustness.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "media_ops" / "tests" / "fixtures"
DEMO = REPO / "media_ops" / "demo_models" / "audioseal"
PERTH_DIR = REPO / "var" / "perth"
PERTH_VERSION = "1.0.1"
SR = 16_000
MUSIC_SEEDS = (20261201, 20261202, 20261203, 20261204)
MESSAGE_SEED = 15


@dataclass
class Clip:
    name: str
    kind: str  # speech-fixture | speech-heldout | music
    audio: np.ndarray  # 16 kHz mono float32


@dataclass
class Row:
    """One attack's outcome for one model: per-clip flags."""

    detected: list[bool] = field(default_factory=list)
    exact: list[bool] = field(default_factory=list)
    false_positive: list[bool] = field(default_factory=list)


def load_clips(n_heldout: int, n_music: int) -> list[Clip]:
    from media_ops import audio

    clips = []
    for name in ("speech_16k_mono.wav", "speech2_16k_mono.wav"):
        x, sr = audio.decode(FIXTURES / name)
        clips.append(Clip(name.removesuffix("_16k_mono.wav"), "speech-fixture",
                          audio.resample(audio.to_mono(x), sr, SR)))
    if n_heldout:
        clips += _heldout(n_heldout)
    from media_ops.watermark.attacks import synthetic_music

    for seed in MUSIC_SEEDS[:n_music]:
        clips.append(Clip(f"music{seed % 100}", "music", synthetic_music(4 * SR, SR, np.random.default_rng(seed),
                                                                      level_db=-20.0)))
    return clips


def _heldout(n: int) -> list[Clip]:
    """The demo model's held-out speech (3-5 s clips), synthesised with espeak-ng; none if it is missing."""
    import shutil

    if shutil.which("espeak-ng") is None:
        print("espeak-ng not installed: held-out espeak clips skipped (apt-get install espeak-ng)")
        return []
    sys.path.insert(0, str(REPO / "scripts"))
    from demo_watermark_common import heldout_clips, make_utterances, synthesize

    utts = make_utterances(64, held_out=True, seed=1234)
    held = synthesize(utts, REPO / "var" / "bench-heldout-seed1234")
    return [Clip(f"heldout{i}", "speech-heldout", c) for i, c in enumerate(heldout_clips(held, 1234)["long"][:n])]


class Ours:
    """The product's embed and detect, on the checkpoints the settings would load."""

    def __init__(self, generator: str, detector: str, name: str = "ours", label: str = "") -> None:
        from media_ops.watermark import WatermarkModels

        self.models = WatermarkModels.load(generator, detector)
        self.name = name
        self.label = label or f"ours ({Path(detector).parent.name or detector})"

    def embed(self, x: np.ndarray, bits: list[int]) -> np.ndarray:
        from media_ops.watermark import embed

        return embed(self.models, x[None, :], SR, bits)[0]

    def detect(self, x: np.ndarray, search: Any = "default") -> dict[str, Any]:
        from media_ops.watermark import SEARCH, detect

        return detect(self.models, x[None, :], SR, search=SEARCH if search == "default" else search)


class Perth:
    """Resemble AI's PerTh implicit watermarker (pretrained weights shipped in its wheel)."""

    name = "perth"
    label = f"PerTh {PERTH_VERSION}"

    def __init__(self) -> None:
        if not (PERTH_DIR / "perth").is_dir():
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(PERTH_DIR),
                            f"resemble-perth=={PERTH_VERSION}"], check=True)
        sys.path.insert(0, str(PERTH_DIR))
        from bench import perth_stub

        perth_stub.install()
        from perth.perth_net.perth_net_implicit.perth_watermarker import PerthImplicitWatermarker

        self.wm = PerthImplicitWatermarker(device="cpu")

    def embed(self, x: np.ndarray, bits: list[int]) -> np.ndarray:
        y = np.asarray(self.wm.apply_watermark(x, SR), np.float32)
        return y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))

    def detect(self, x: np.ndarray) -> dict[str, Any]:
        score = float(np.mean(self.wm.get_watermark(x, SR, round=False)))
        return {"detected": score > 0.5, "probability": score, "message": None}


def snr_db(x: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(x.astype(np.float64) ** 2) / max(np.sum((y - x).astype(np.float64) ** 2),
                                                                          1e-20)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from media_ops.watermark import attacks, parse_message

    torch.set_num_threads(args.threads)
    clips = load_clips(args.heldout, args.music)
    battery = [a for a in attacks.BATTERY if not args.only or a.name in args.only.split(",")]
    models: list[Any] = [Ours(args.generator, args.detector, label="ours (shipped)")]
    for i, d in enumerate(filter(None, args.compare.split(","))):  # other checkpoints of ours, side by side
        models.append(Ours(str(Path(d) / "generator.pth"), str(Path(d) / "detector.pth"), name=f"ours{i + 2}",
                           label=f"ours ({d})"))
    if not args.no_perth:
        models.append(Perth())
    names = ["none", *[a.name for a in battery]]
    rows = {m.name: {n: Row() for n in names} for m in models}
    snrs: dict[str, list[float]] = {m.name: [] for m in models}
    cost = {"plain_s": 0.0, "search_s": 0.0, "audio_s": 0.0}
    spent = {m.name: 0.0 for m in models}  # detection seconds per model
    t_start = time.time()
    for ci, clip in enumerate(clips):
        hex_message = f"{int(np.random.default_rng(MESSAGE_SEED + ci).integers(0, 2**16)):04X}"  # seeded
        bits = parse_message(hex_message)
        for m in models:
            marked = m.embed(clip.audio, bits)
            snrs[m.name].append(snr_db(clip.audio, marked))
            if m.name == "ours":  # the cost of the search: plain vs searched detection of the marked clip
                t0 = time.perf_counter()
                m.detect(marked, search=None)
                t1 = time.perf_counter()
                m.detect(marked)
                cost["plain_s"] += t1 - t0
                cost["search_s"] += time.perf_counter() - t1
                cost["audio_s"] += len(marked) / SR
            for name in names:
                attack = None if name == "none" else attacks.get(name)
                seed = 1000 * ci + names.index(name)
                hit = marked if attack is None else attack(marked, SR, np.random.default_rng(seed))
                clean = clip.audio if attack is None else attack(clip.audio, SR, np.random.default_rng(seed))
                t0 = time.perf_counter()
                r_hit, r_clean = m.detect(hit), m.detect(clean)
                spent[m.name] += time.perf_counter() - t0
                row = rows[m.name][name]
                row.detected.append(bool(r_hit["detected"]))
                row.exact.append(bool(r_hit["detected"]) and r_hit.get("message") == hex_message)
                if args.verbose:
                    print(f"    {m.name} {name}: hit p={r_hit['probability']:.3f} msg={r_hit.get('message')} "
                          f"(want {hex_message}) clean p={r_clean['probability']:.3f}", flush=True)
                row.false_positive.append(bool(r_clean["detected"]))
        print(f"  clip {clip.name} ({clip.kind}, {len(clip.audio) / SR:.1f} s) done, {time.time() - t_start:.0f} s"
              f" (detection so far: " + ", ".join(f"{k} {v:.0f} s" for k, v in spent.items()) + ")", flush=True)
    return {
        "battery_version": attacks.BATTERY_VERSION,
        "clips": [{"name": c.name, "kind": c.kind, "seconds": round(len(c.audio) / SR, 2)} for c in clips],
        "models": {m.name: m.label for m in models},
        "snr_db": {k: [round(v, 1) for v in vs] for k, vs in snrs.items()},
        "rows": {m: {n: vars(r) for n, r in rs.items()} for m, rs in rows.items()},
        "search_cost": {k: round(v, 3) for k, v in cost.items()},
        "seconds": round(time.time() - t_start),
    }


def _rate(flags: list[bool]) -> str:
    return f"{sum(flags)}/{len(flags)}"


def report(res: dict[str, Any]) -> str:
    """The table (markdown: per attack and model, clips detected / message exact / clean clips falsely
    detected) and issue 15's done-when verdicts."""
    models = list(res["models"])
    ours_all = [m for m in models if m.startswith("ours")]
    perth = "perth" if "perth" in models else None
    n = len(res["clips"])
    lines = [f"Battery {res['battery_version']}, {n} clips: "
             + ", ".join(f"{c['name']} ({c['kind']}, {c['seconds']} s)" for c in res["clips"]), "",
             "Columns per model: clips detected / message exact (ours) / false positives on the clean clips.",
             "Models: " + "; ".join(f"{k} = {v}" for k, v in res["models"].items()), ""]
    lines += ["| attack | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for name in res["rows"][models[0]]:
        cells = []
        for m in models:
            r = res["rows"][m][name]
            exact = f" / {_rate(r['exact'])}" if m.startswith("ours") else ""
            cells.append(f"{_rate(r['detected'])}{exact} / FP {sum(r['false_positive'])}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    attacks_only = [k for k in res["rows"][models[0]] if k != "none"]

    def survives(model: str, name: str) -> bool:  # on every clip
        return all(res["rows"][model][name]["detected"])

    lines.append("")
    for m in models:
        per_clip = [sum(res["rows"][m][a]["detected"][i] for a in attacks_only) / len(attacks_only) for i in range(n)]
        fps = sum(sum(res["rows"][m][a]["false_positive"]) for a in res["rows"][m])
        lines.append(f"{res['models'][m]}: battery detected per clip {', '.join(f'{p:.0%}' for p in per_clip)}"
                     f" (min {min(per_clip):.0%}); attacks survived on every clip "
                     f"{sum(survives(m, a) for a in attacks_only)}/{len(attacks_only)}; false positives {fps}; "
                     f"watermark SNR {np.mean(res['snr_db'][m]):.1f} dB mean / {min(res['snr_db'][m]):.1f} dB min")
    for m in ours_all:
        exact_where = all(e == d for a in res["rows"][m].values() for d, e in zip(a["detected"], a["exact"],
                                                                               strict=True))
        lines.append(f"{m}: message exact wherever detected: {exact_where}")
        if perth:
            behind = [a for a in attacks_only if survives(perth, a) and not survives(m, a)]
            ahead = [a for a in attacks_only if survives(m, a) and not survives(perth, a)]
            lines.append(f"  PerTh survives and {m} does not: {', '.join(behind) or 'none'}")
            lines.append(f"  {m} survives and PerTh does not ({len(ahead)}): {', '.join(ahead) or 'none'}")
    c = res["search_cost"]
    if c["audio_s"]:
        lines.append(f"ours, detection cost per audio second (one thread): plain {c['plain_s'] / c['audio_s']:.3f} s, "
                     f"with the alignment search {c['search_s'] / c['audio_s']:.3f} s "
                     f"({c['search_s'] / max(c['plain_s'], 1e-9):.1f}x)")
    lines.append(f"run time {res['seconds']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--generator", default=str(DEMO / "generator.pth"))
    p.add_argument("--detector", default=str(DEMO / "detector.pth"))
    p.add_argument("--heldout", type=int, default=4, help="held-out espeak-ng clips (needs espeak-ng)")
    p.add_argument("--music", type=int, default=2, help="synthetic music clips")
    p.add_argument("--no-perth", action="store_true")
    p.add_argument("--compare", default="", help="comma-separated checkpoint dirs of ours to run side by side")
    p.add_argument("--only", default="", help="comma-separated attack names (default: the whole battery)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--verbose", action="store_true", help="print every detection")
    p.add_argument("--json", default=str(REPO / "var" / "bench-robustness.json"))
    args = p.parse_args(argv)
    res = run(args)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    print(report(res))


if __name__ == "__main__":
    main()
