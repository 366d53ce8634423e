"""The two reference points the platform is compared with, both measured on the same clips.

* ``raw_limit``: the model's bare forward pass in a loop: the checkpoint loaded once, inputs already decoded
  into tensors, nothing else timed. No serving system can beat this on whole clips (it can only beat it by
  computing less, e.g. windowing long audio, which ``engine_loop`` shows separately).
* ``naive`` (run as ``python -m bench.limit naive ...`` in a fresh process): the pattern of the seed code, a
  model constructed per job: ``AudioSeal.load_generator(path)`` per clip, read the file, watermark, write the
  result, with the library's defaults (torch's default thread count, no windowing, no batching). Eager
  (``NO_TORCH_COMPILE=1``) unless ``--compile`` is given: the library's lazy ``torch.compile`` makes every new
  model and input length recompile (MODELS.md: 18 s for the first 10 s call), which would flatter the
  platform absurdly; the eager baseline is the honest, harder one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def raw_limit(
    generator_path: Path,
    detector_path: Path,
    clips: list[np.ndarray],
    *,
    op: str = "embed",
    device: str = "cpu",
    threads: int = 2,
    passes: int = 2,
    lanes: int = 1,
) -> dict[str, Any]:
    """Bare forward passes over ``clips`` (16 kHz mono); the first pass of each length is untimed.

    The loop runs ``passes`` times and the fastest pass counts: on a shared machine a limit is the best the
    hardware did, not an average of interruptions. ``lanes`` > 1: that many threads run passes side by side
    (each clip once, whichever thread is free), ``threads`` shared out among them, as the worker's model
    lanes do (``media_ops.pool.resolve_lanes``): the bare model's best on this hardware, not only its best
    as one stream.
    """
    import torch
    from audioseal import AudioSeal

    torch.set_num_threads(max(1, threads // max(1, lanes)))
    dev = torch.device(device)
    if op == "embed":
        model = AudioSeal.load_generator(str(generator_path), device=dev).eval()
    else:
        model = AudioSeal.load_detector(str(detector_path), device=dev).eval()
    message = torch.randint(0, 2, (1, 16), device=dev)
    tensors = [torch.from_numpy(np.ascontiguousarray(c))[None, None, :].to(dev) for c in clips]

    def forward(x: torch.Tensor) -> None:
        if op == "embed":
            model.get_watermark(x, message=message)
        else:
            model(x)

    return _loop(forward, clips, device, inputs=tensors, passes=passes, lanes=lanes)


def engine_loop(
    generator_path: Path,
    detector_path: Path,
    clips: list[np.ndarray],
    *,
    op: str = "embed",
    device: str = "cpu",
    threads: int = 2,
) -> dict[str, Any]:
    """The platform's engine primitive (windowed ``WatermarkModels``) in a bare loop: no HTTP, no queue."""
    import torch

    from media_ops.watermark import WatermarkModels

    torch.set_num_threads(threads)
    models = WatermarkModels.load(str(generator_path), str(detector_path), device=device)
    bits = [int(b) for b in np.random.default_rng(0).integers(0, 2, 16)]

    def forward(x: np.ndarray) -> None:
        if op == "embed":
            models.watermark_16k(x, bits)
        else:
            models.detect_16k(x)

    return _loop(forward, clips, device)


def emotion_raw_limit(model_dir: Path, clips: list[np.ndarray], *, device: str = "cpu", threads: int = 2,
                      lanes: int = 1) -> dict[str, Any]:
    """emotion2vec's bare forward (layer norm, ``extract_features``, mean, classifier head) on whole clips;
    ``lanes`` as for ``raw_limit``."""
    import torch
    import torch.nn.functional as F

    from media_ops.emotion import EmotionModel

    model = EmotionModel.load(model_dir, device=device, threads=max(1, threads // max(1, lanes)))._auto.model

    def forward(x: np.ndarray) -> None:
        source = torch.from_numpy(x)[None].to(device)
        feats = model.extract_features(F.layer_norm(source, source.shape), padding_mask=None)["x"]
        torch.softmax(model.proj(feats.mean(dim=1)), dim=-1)

    return _loop(forward, clips, device, passes=2, lanes=lanes)  # the fastest pass counts, as in raw_limit


def emotion_engine_loop(model_dir: Path, clips: list[np.ndarray], *, device: str = "cpu", threads: int = 2
                        ) -> dict[str, Any]:
    """The platform's emotion engine (``EmotionModel.analyze``: windowed, FunASR's generate) in a loop."""
    from media_ops.emotion import EmotionModel

    model = EmotionModel.load(model_dir, device=device, threads=threads)
    return _loop(model.analyze, clips, device)


def _loop(
    forward, clips: list[np.ndarray], device: str, *, inputs: list[Any] | None = None, passes: int = 1,
    lanes: int = 1,
) -> dict[str, Any]:
    """Time ``forward`` over ``inputs`` (default: ``clips``, 16 kHz mono): one untimed call per distinct clip
    length first, then ``passes`` timed passes of which the fastest counts (on a shared machine a limit is
    the best the hardware did, not an average of interruptions). ``lanes`` threads share each pass's clips
    (the next clip to whichever is free; ``_timed_pass``)."""
    import torch

    inputs = clips if inputs is None else inputs
    lanes = max(1, int(lanes))
    with torch.inference_mode():
        warmed: set[int] = set()
        for clip, x in zip(clips, inputs, strict=True):
            if len(clip) not in warmed:
                warmed.add(len(clip))
                forward(x)
        _sync(device)
    best: tuple[float, list[float]] | None = None
    for _ in range(max(1, passes)):
        elapsed, per_clip = _timed_pass(forward, inputs, device, lanes)
        if best is None or elapsed < best[0]:
            best = (elapsed, per_clip)
    return {**_summary(sum(len(c) for c in clips) / 16_000, best[0], best[1]), "passes": max(1, passes),
            "lanes": lanes}


def _timed_pass(forward, inputs: list[Any], device: str, lanes: int) -> tuple[float, list[float]]:
    """One pass over ``inputs`` by ``lanes`` threads (the next input to whichever is free): wall seconds from
    the first start to the last end, and each call's seconds. Several lanes run under the pipelined worker's
    GIL switch interval (``WORKER_PIPELINE_SWITCH_INTERVAL``)."""
    import sys
    import threading

    import torch
    from django.conf import settings

    todo = list(reversed(inputs))
    lock = threading.Lock()
    per_clip: list[float] = []

    def lane() -> None:
        with torch.inference_mode():  # per thread: inference mode is thread-local
            while True:
                with lock:
                    if not todo:
                        return
                    x = todo.pop()
                t0 = time.perf_counter()
                forward(x)
                _sync(device)
                with lock:
                    per_clip.append(time.perf_counter() - t0)

    started = time.perf_counter()
    if lanes == 1:
        lane()
        return time.perf_counter() - started, per_clip
    switch = sys.getswitchinterval()
    if settings.configured:
        sys.setswitchinterval(float(settings.WORKER_PIPELINE_SWITCH_INTERVAL) or switch)
    try:
        threads = [threading.Thread(target=lane) for _ in range(lanes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    return time.perf_counter() - started, per_clip


def _summary(audio_seconds: float, elapsed: float, per_clip: list[float]) -> dict[str, Any]:
    return {
        "clips": len(per_clip),
        "audio_seconds": round(audio_seconds, 3),
        "elapsed_seconds": round(elapsed, 4),
        "audio_seconds_per_second": round(audio_seconds / elapsed, 3) if elapsed > 0 else None,
        "per_clip_seconds": {
            "min": round(min(per_clip), 4),
            "median": round(float(np.median(per_clip)), 4),
            "max": round(max(per_clip), 4),
        },
    }


# --- the naive baseline, in its own process -----------------------------------------------------------------


def naive_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.limit naive")
    parser.add_argument("checkpoint", help="generator (embed) or detector (detect) checkpoint")
    parser.add_argument("out_dir")
    parser.add_argument("clips", nargs="+")
    parser.add_argument("--compile", action="store_true", help="leave audioseal's lazy torch.compile on")
    parser.add_argument("--op", choices=("embed", "detect", "emotion"), default="embed")
    args = parser.parse_args(argv)
    if args.compile:
        os.environ.pop("NO_TORCH_COMPILE", None)
    else:
        os.environ["NO_TORCH_COMPILE"] = "1"
    import soundfile as sf
    import torch

    if args.op == "emotion":
        _naive_emotion(args)
        return
    from audioseal import AudioSeal

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_clip, audio = [], 0.0
    started = time.perf_counter()
    for path in args.clips:
        t0 = time.perf_counter()
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        x = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))[None, None, :]
        if args.op == "embed":
            generator = AudioSeal.load_generator(args.checkpoint)  # the seed pattern: a model per job
            with torch.no_grad():
                watermark = generator.get_watermark(x, sample_rate=rate, message=generator.random_message(1))
            marked = (x + watermark)[0, 0].clamp(-1, 1).numpy()
            sf.write(out_dir / Path(path).name, marked, rate, subtype="PCM_16")
        else:
            detector = AudioSeal.load_detector(args.checkpoint)
            with torch.no_grad():
                probability, bits = detector.detect_watermark(x, sample_rate=rate)
            (out_dir / (Path(path).stem + ".json")).write_text(
                json.dumps({"probability": float(probability[0]), "bits": bits[0].tolist()})
            )
        per_clip.append(time.perf_counter() - t0)
        audio += x.shape[-1] / rate
    elapsed = time.perf_counter() - started
    result = _summary(audio, elapsed, per_clip)
    result["threads"] = torch.get_num_threads()
    result["torch_compile"] = bool(args.compile)
    print("BENCH_RESULT " + json.dumps(result), flush=True)


def _naive_emotion(args: argparse.Namespace) -> None:
    """The seed pattern for emotion: a FunASR ``AutoModel`` per job, its ``generate`` on the file."""
    import torch
    from funasr import AutoModel

    per_clip, audio = [], 0.0
    started = time.perf_counter()
    for path in args.clips:
        t0 = time.perf_counter()
        model = AutoModel(model=args.checkpoint, disable_update=True, disable_pbar=True, log_level="ERROR")
        import soundfile as sf

        data, rate = sf.read(path, dtype="float32")
        model.generate(data, granularity="utterance", extract_embedding=False)
        per_clip.append(time.perf_counter() - t0)
        audio += len(data) / rate
    elapsed = time.perf_counter() - started
    result = _summary(audio, elapsed, per_clip)
    result["threads"] = torch.get_num_threads()
    print("BENCH_RESULT " + json.dumps(result), flush=True)


def run_naive(checkpoint: Path, clips: list[Path], out_dir: Path, *, op: str = "embed", compile: bool = False,
              env: dict[str, str] | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Run the naive baseline in a fresh Python process (the library's defaults, nothing of ours loaded)."""
    import subprocess

    cmd = [sys.executable, "-m", "bench.limit", "naive", str(checkpoint), str(out_dir), *map(str, clips),
           "--op", op]
    if compile:
        cmd.append("--compile")
    run_env = dict(env if env is not None else os.environ)
    for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MODEL_THREADS"):
        run_env.pop(name, None)  # the library's and torch's defaults, as the seed would have had
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=timeout,
                          cwd=str(Path(__file__).resolve().parent.parent))
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line.removeprefix("BENCH_RESULT "))
    raise RuntimeError(f"naive baseline failed ({proc.returncode}): {proc.stderr[-2000:]}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "naive":
        naive_main(sys.argv[2:])
    else:
        raise SystemExit("usage: python -m bench.limit naive GENERATOR OUT_DIR CLIP...")
