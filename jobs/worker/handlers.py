"""What each job kind does in the worker, between "input downloaded" and "output stored".

Handlers are plain functions of a ``JobContext``; they decode, call a ``media_ops`` engine with a model
from the pool, write an output file into the job's work directory and return an ``Outcome``. They know
nothing of RQ, storage or the state machine.

The model kinds (embed, detect, emotion) are also declared as three ``Stages`` (``handler.stages``), so the
worker's pipeline (``jobs.worker.pipeline``) can run the CPU parts beside the model instead of in front of
it: ``prepare`` (decode, resample: CPU, before), ``infer`` (the engine's batch call for several prepared
jobs: the only part that needs the model) and ``finish`` (encode, sign, describe: CPU, after). The whole
handler, the batched variants and the pipeline are all made of these same stage functions, so a job gets the
same result whichever path ran it. A handler without ``stages`` (beat-sync, the robustness report, or one a
test replaced) runs whole.
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


@dataclass(frozen=True)
class Stages:
    """A model handler cut where the model starts and ends (see the module docstring).

    ``infer(pool, prepared_items, max_batch)`` returns one entry per item: what ``finish`` needs, or the
    exception that item alone met (an input the model refuses); an exception it raises concerns the whole
    call (out of memory, a broken model). ``infer`` never reports progress or touches the database: it runs
    on the model's thread, where every millisecond not spent in the model is lost throughput.
    """

    family: str
    prepare: Callable[[JobContext], Any]
    infer: Callable[[Any, list[Any], int], list[Any]]
    finish: Callable[[JobContext, Any, Any], Outcome]


def stages_of(handler: Callable[..., Any]) -> Stages | None:
    """The stages a handler declares (None: it runs whole, e.g. beat-sync or a replaced handler)."""
    return getattr(handler, "stages", None)


def _staged(stages: Stages) -> Callable[[Callable[[JobContext], Outcome]], Callable[[JobContext], Outcome]]:
    def attach(handler: Callable[[JobContext], Outcome]) -> Callable[[JobContext], Outcome]:
        handler.stages = stages  # type: ignore[attr-defined]
        return handler

    return attach


def _run_staged(ctx: JobContext, stages: Stages, percent: int, message: str) -> Outcome:
    """One job through its stages in a row: the single-job path of a staged handler."""
    prepared = stages.prepare(ctx)
    ctx.progress(percent, message)
    (inferred,) = stages.infer(ctx.pool, [prepared], 1)
    if isinstance(inferred, Exception):
        raise inferred
    return stages.finish(ctx, prepared, inferred)


def _decode(ctx: JobContext) -> tuple[Any, int]:
    ctx.progress(10, "Decoding audio")
    return audio.decode(ctx.input_path, max_duration_seconds=settings.MAX_AUDIO_SECONDS)


def _output_name(ctx: JobContext, suffix: str, ext: str) -> str:
    """``speech.wav`` -> ``speech-watermarked.wav``; ``ext`` with or without its dot."""
    stem = Path(ctx.input.get("filename") or "audio").stem[:80] or "audio"
    return f"{stem}{suffix}.{ext.lstrip('.')}"


def _embed_prepare(ctx: JobContext) -> tuple[Any, int, list[int]]:
    samples, rate = _decode(ctx)
    return samples, rate, watermark.parse_message(ctx.params["message"])


def _embed_infer(pool: Any, items: list[tuple[Any, int, list[int]]], max_batch: int) -> list[Any]:
    return watermark.embed_batch(pool.get("watermark"), items, max_batch=max_batch)


def _embed_finish(ctx: JobContext, prepared: tuple[Any, int, list[int]], marked: Any) -> Outcome:
    samples, rate, _ = prepared
    return _embed_outcome(ctx, ctx.pool.get("watermark"), samples, rate, marked)


EMBED_STAGES = Stages("watermark", _embed_prepare, _embed_infer, _embed_finish)


@_staged(EMBED_STAGES)
def watermark_embed(ctx: JobContext) -> Outcome:
    return _run_staged(ctx, EMBED_STAGES, 30, "Embedding watermark")


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


def _detect_infer(pool: Any, items: list[tuple[Any, int]], max_batch: int) -> list[Any]:
    return watermark.detect_batch(pool.get("watermark"), items, max_batch=max_batch, search=detection_search())


def _detect_finish(ctx: JobContext, prepared: Any, result: dict[str, Any]) -> Outcome:
    models = ctx.pool.get("watermark")
    return Outcome(result=result, model_name=models.detector_name, model_version=models.detector_version)


DETECT_STAGES = Stages("watermark", _decode, _detect_infer, _detect_finish)


@_staged(DETECT_STAGES)
def watermark_detect(ctx: JobContext) -> Outcome:
    return _run_staged(ctx, DETECT_STAGES, 40, "Detecting watermark")


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


def _run_batch(ctxs: list[JobContext], max_batch: int, stages: Stages, percent: int,
               message: str) -> list[Outcome | Exception]:
    """Several jobs of one kind through their stages, the model part in one ``infer`` call."""
    results, live = _prepare_each(ctxs, stages.prepare, percent, message)
    inferred = stages.infer(ctxs[0].pool, [results[i] for i in live], max_batch) if live else []
    for i, out in zip(live, inferred, strict=True):
        results[i] = out if isinstance(out, Exception) else _each(stages.finish, ctxs[i], results[i], out)
    return results


def watermark_embed_batch(ctxs: list[JobContext], max_batch: int) -> list[Outcome | Exception]:
    return _run_batch(ctxs, max_batch, EMBED_STAGES, 30, "Embedding watermark")


def watermark_detect_batch(ctxs: list[JobContext], max_batch: int) -> list[Outcome | Exception]:
    return _run_batch(ctxs, max_batch, DETECT_STAGES, 40, "Detecting watermark")


def emotion_analyze_batch(ctxs: list[JobContext], max_batch: int) -> list[Outcome | Exception]:
    """Several emotion jobs (any lengths and options) in exact padded batches: ``EmotionModel.analyze_batch``
    runs all their windows in ``ceil(windows / max_batch)`` passes; an input the model refuses (too short)
    fails its own job only."""
    return _run_batch(ctxs, max_batch, EMOTION_STAGES, 40, "Analysing emotion")


def _emotion_input(ctx: JobContext) -> Any:
    """The job's audio as the model takes it: mono float32 at 16 kHz."""
    import numpy as np

    samples, rate = _decode(ctx)
    return audio.resample(audio.to_mono(samples), rate, 16_000).astype(np.float32)


def _emotion_options(ctx: JobContext) -> tuple[str, bool]:
    return ctx.params.get("granularity", "utterance"), bool(ctx.params.get("extract_embedding"))


def _emotion_prepare(ctx: JobContext) -> tuple[Any, str, bool]:
    return (_emotion_input(ctx), *_emotion_options(ctx))


def _emotion_infer(pool: Any, items: list[tuple[Any, str, bool]], max_batch: int) -> list[Any]:
    return pool.get("emotion").analyze_batch(items, max_batch=max_batch, return_exceptions=True)


def _emotion_finish(ctx: JobContext, prepared: Any, analysis: Any) -> Outcome:
    return _emotion_outcome(ctx, ctx.pool.get("emotion"), analysis)


EMOTION_STAGES = Stages("emotion", _emotion_prepare, _emotion_infer, _emotion_finish)


@_staged(EMOTION_STAGES)
def emotion_analyze(ctx: JobContext) -> Outcome:
    return _run_staged(ctx, EMOTION_STAGES, 40, "Analysing emotion")


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
