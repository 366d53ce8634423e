"""What each job kind does in the worker, between "input downloaded" and "output stored".

Handlers are plain functions of a ``JobContext``; they decode, call a ``media_ops`` engine with a model
from the pool, write an output file into the job's work directory and return an ``Outcome``. They know
nothing of RQ, storage or the state machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from media_ops import audio, beatsync, provenance, watermark
from media_ops.errors import MediaError


@dataclass
class JobContext:
    kind: str
    params: dict[str, Any]
    input: dict[str, Any]
    input_path: Path
    workdir: Path
    pool: Any
    progress: Callable[[int, str], None]
    extra_paths: dict[str, Path] = field(default_factory=dict)
    provenance: Any = None  # jobs.worker.provenance.JobProvenance: how an embed output is signed (None: not)


@dataclass
class Outcome:
    result: dict[str, Any]
    model_name: str = ""
    model_version: str = ""
    output_path: Path | None = None
    output_filename: str = ""
    output_content_type: str = ""
    audio_seconds: float | None = None


def _decode(ctx: JobContext) -> tuple[Any, int]:
    ctx.progress(10, "Decoding audio")
    return audio.decode(ctx.input_path, max_duration_seconds=settings.MAX_AUDIO_SECONDS)


def _output_name(ctx: JobContext, suffix: str, ext: str) -> str:
    """``speech.wav`` -> ``speech-watermarked.wav``; ``ext`` with or without its dot."""
    stem = Path(ctx.input.get("filename") or "audio").stem[:80] or "audio"
    return f"{stem}{suffix}.{ext.lstrip('.')}"


def watermark_embed(ctx: JobContext) -> Outcome:
    samples, rate = _decode(ctx)
    models = ctx.pool.get("watermark")
    message = ctx.params["message"]
    ctx.progress(30, "Embedding watermark")
    marked = watermark.embed(models, samples, rate, watermark.parse_message(message))
    return _embed_outcome(ctx, models, samples, rate, marked)


def _embed_outcome(ctx: JobContext, models: Any, samples: Any, rate: int, marked: Any) -> Outcome:
    """Encode the watermarked audio and describe it (shared by the single and the batched path)."""
    message = ctx.params["message"]
    fmt = audio.output_format_for(
        ctx.input.get("format", "wav"),
        ctx.params.get("output_format") or None,
        sample_rate=rate,
        channels=int(marked.shape[0]),
    )
    ctx.progress(80, "Encoding output")
    out_path = ctx.workdir / f"output{audio.FILE_EXTENSIONS[fmt]}"
    audio.encode(marked, rate, fmt, out_path, subtype=ctx.input.get("subtype"))
    output_filename = _output_name(ctx, "-watermarked", audio.FILE_EXTENSIONS[fmt])
    return Outcome(
        result={
            "message": message,
            "bits": watermark.parse_message(message),
            "snr_db": round(watermark.snr_db(samples, marked), 2),
            "output": {
                "format": fmt,
                "sample_rate": rate,
                "channels": int(marked.shape[0]),
                "duration_seconds": round(marked.shape[-1] / rate, 4),
            },
            "provenance": _sign_output(ctx, models, fmt, out_path, output_filename),
        },
        model_name=models.generator_name,
        model_version=models.generator_version,
        output_path=out_path,
        output_filename=output_filename,
        output_content_type=audio.CONTENT_TYPES[fmt],
    )


def _sign_output(ctx: JobContext, models: Any, fmt: str, out_path: Path, title: str) -> dict[str, Any]:
    """Embed the C2PA manifest (after encoding: the hard binding covers the final bytes) or say why not."""
    job_provenance = ctx.provenance
    if job_provenance is None or job_provenance.config is None:
        reason = job_provenance.disabled_reason if job_provenance else "Content Credentials are not configured."
        return {"signed": False, "reason": reason}
    ctx.progress(90, "Signing Content Credentials")
    request = provenance.SignRequest(
        output_path=out_path,
        output_format=fmt,
        input_path=ctx.input_path,
        input_format=ctx.input.get("format", "bin"),
        title=title,
        binding=provenance.WatermarkBinding(
            engine="AudioSeal",
            model_name=models.generator_name,
            model_version=models.generator_version,
            message=ctx.params["message"],
            algorithm=job_provenance.soft_binding_alg,
        ),
        declaration=job_provenance.declaration,
    )
    return provenance.sign_output(request, job_provenance.config)


def detection_search() -> Any:
    """The alignment search detection runs with (settings ``WATERMARK_SEARCH``/``WATERMARK_SEARCH_SPEEDS``)."""
    from media_ops import watermark

    if not settings.WATERMARK_SEARCH:
        return None
    return watermark.AlignmentSearch(speeds=tuple(float(s) for s in settings.WATERMARK_SEARCH_SPEEDS))


def watermark_detect(ctx: JobContext) -> Outcome:
    samples, rate = _decode(ctx)
    models = ctx.pool.get("watermark")
    ctx.progress(40, "Detecting watermark")
    result = watermark.detect(models, samples, rate, search=detection_search())
    return Outcome(result=result, model_name=models.detector_name, model_version=models.detector_version)


def watermark_report(ctx: JobContext) -> Outcome:
    """The robustness report (``media_ops.watermark.report``): the battery of ``media_ops.watermark.attacks``
    on the uploaded file, each copy read by the detection path a detect job uses (same alignment search), and
    the watermark's quality against the original when one was sent. Bounded again here like beat-sync's video
    limits: a job submitted before ``WATERMARK_REPORT_MAX_SECONDS`` was lowered cannot run longer."""
    from media_ops.watermark import attacks, report

    limit = min(settings.MAX_AUDIO_SECONDS, settings.WATERMARK_REPORT_MAX_SECONDS)
    ctx.progress(10, "Decoding audio")
    samples, rate = audio.decode(ctx.input_path, max_duration_seconds=limit)
    original = None
    if "original" in ctx.extra_paths:
        original = audio.decode(ctx.extra_paths["original"], max_duration_seconds=limit)
    models = ctx.pool.get("watermark")
    message = ctx.params.get("message") or None
    batch = 1 if getattr(ctx, "batch_size_limit", None) == 1 else ctx.pool.batch_size("watermark")
    result = report.robustness_report(
        models,
        samples,
        rate,
        battery=attacks.BATTERY,
        battery_version=attacks.BATTERY_VERSION,
        expected_bits=watermark.parse_message(message) if message else None,
        original=original,
        search=detection_search(),
        max_batch=batch,
        progress=ctx.progress,
    )
    return Outcome(result=result, model_name=models.detector_name, model_version=models.detector_version)


# --- batched variants (jobs.worker.batching): several jobs of one kind, one engine call --------------------------
# Each returns, per context, an Outcome or the exception that job met (decode error, cancel), so one bad input
# fails alone; an exception of the engine call itself propagates (it concerns the whole batch).


def _each(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - returned to the caller, which fails that job alone
        return exc


def _prepare_each(
    ctxs: list[JobContext], prepare: Callable[[JobContext], Any], percent: int, message: str
) -> tuple[list[Any], list[int]]:
    """``prepare`` (decode) every context, then report its progress: per context the prepared input or the
    exception that job met, and the indices of the jobs still live."""
    results: list[Any] = [_each(prepare, ctx) for ctx in ctxs]
    for i, ctx in enumerate(ctxs):
        if not isinstance(results[i], Exception):
            results[i] = _each(ctx.progress, percent, message) or results[i]
    return results, [i for i, r in enumerate(results) if not isinstance(r, Exception)]


def watermark_embed_batch(ctxs: list[JobContext], max_batch: int) -> list[Outcome | Exception]:
    models = ctxs[0].pool.get("watermark")
    results, live = _prepare_each(ctxs, _decode, 30, "Embedding watermark")
    items = [(results[i][0], results[i][1], watermark.parse_message(ctxs[i].params["message"])) for i in live]
    marked = watermark.embed_batch(models, items, max_batch=max_batch) if items else []
    for i, out in zip(live, marked, strict=True):
        samples, rate = results[i]
        results[i] = _each(_embed_outcome, ctxs[i], models, samples, rate, out)
    return results


def watermark_detect_batch(ctxs: list[JobContext], max_batch: int) -> list[Outcome | Exception]:
    models = ctxs[0].pool.get("watermark")
    results, live = _prepare_each(ctxs, _decode, 40, "Detecting watermark")
    items = [results[i] for i in live]
    found = watermark.detect_batch(models, items, max_batch=max_batch, search=detection_search()) if live else []
    for i, result in zip(live, found, strict=True):
        results[i] = Outcome(
            result=result, model_name=models.detector_name, model_version=models.detector_version
        )
    return results


def emotion_analyze_batch(ctxs: list[JobContext], max_batch: int) -> list[Outcome | Exception]:
    """Several emotion jobs (any lengths and options) in exact padded batches: ``EmotionModel.analyze_batch``
    runs all their windows in ``ceil(windows / max_batch)`` passes; an input the model refuses (too short)
    fails its own job only."""
    model = ctxs[0].pool.get("emotion")
    results, live = _prepare_each(ctxs, _emotion_input, 40, "Analysing emotion")
    items = [(results[i], *_emotion_options(ctxs[i])) for i in live]
    analyses = model.analyze_batch(items, max_batch=max_batch, return_exceptions=True) if items else []
    for i, analysis in zip(live, analyses, strict=True):
        failed = isinstance(analysis, Exception)
        results[i] = analysis if failed else _each(_emotion_outcome, ctxs[i], model, analysis)
    return results


def _emotion_input(ctx: JobContext) -> Any:
    """The job's audio as the model takes it: mono float32 at 16 kHz."""
    import numpy as np

    samples, rate = _decode(ctx)
    return audio.resample(audio.to_mono(samples), rate, 16_000).astype(np.float32)


def _emotion_options(ctx: JobContext) -> tuple[str, bool]:
    return ctx.params.get("granularity", "utterance"), bool(ctx.params.get("extract_embedding"))


def emotion_analyze(ctx: JobContext) -> Outcome:
    mono16 = _emotion_input(ctx)
    model = ctx.pool.get("emotion")
    ctx.progress(40, "Analysing emotion")
    granularity, extract_embedding = _emotion_options(ctx)
    analysis = model.analyze(mono16, granularity=granularity, extract_embedding=extract_embedding)
    return _emotion_outcome(ctx, model, analysis)


def _emotion_outcome(ctx: JobContext, model: Any, analysis: Any) -> Outcome:
    """The job's result, and its embedding as an .npy output when requested (single and batched path)."""
    import numpy as np

    outcome = Outcome(result=analysis.to_json(), model_name=model.name, model_version=model.version)
    if analysis.embedding is not None:
        out_path = ctx.workdir / "embedding.npy"
        np.save(out_path, analysis.embedding.astype(np.float32))
        outcome.output_path = out_path
        outcome.output_filename = _output_name(ctx, "-embedding", "npy")
        outcome.output_content_type = "application/x-npy"
    return outcome


def beatsync_align(ctx: JobContext) -> Outcome:
    out_path = ctx.workdir / "synced.mp4"
    result = beatsync.run(
        ctx.input_path,
        ctx.extra_paths["music"],
        out_path,
        trim_silence=bool(ctx.params.get("trim_silence")),
        progress=ctx.progress,
        # The upload was checked against the tenant's plan; the global ceilings hold again here, so a job
        # accepted before they were lowered (or submitted by other means) cannot decode an oversized picture.
        video_limits=beatsync.VideoLimits(
            max_pixels_per_frame=settings.MAX_VIDEO_PIXELS,
            max_fps=settings.MAX_VIDEO_FPS,
            max_pixels_per_second=settings.MAX_VIDEO_PIXEL_RATE,
        ),
    )
    if not out_path.exists():  # pragma: no cover - the engine raises instead
        raise MediaError("PROCESSING_FAILED", "Rendering produced no output.")
    result.get("output", {}).pop("path", None)  # a worker's filesystem path is nobody's business
    return Outcome(
        result=result,
        model_name="beatsync",
        model_version="1",
        output_path=out_path,
        output_filename=_output_name(ctx, "-synced", "mp4"),
        output_content_type="video/mp4",
        audio_seconds=float(result.get("video_duration_seconds") or ctx.input.get("duration_seconds") or 0),
    )
