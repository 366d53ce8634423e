"""What a job page shows, in words: the dashboard's reading of a job's stored params and result.

The API returns results as data (``jobs.api.serializers``); a person reads sentences and small labelled
tables. These functions turn one into the other for the job page (``views.JobDetailView``): a beat-sync
result as an offset sentence and per-file facts, the frame-level emotion scores reduced to a chart a person
can read, options by the names the New job page gives them, whether the result came from the cache, and
whether the demo emotion model produced it. They render nothing and change nothing (``cache_info`` reads
the reused job, inside the tenant).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from core.units import human_bytes
from jobs.models import Job

# The shipped emotion model (media_ops/demo_models/emotion2vec_demo, random weights, see its README): a job
# whose result names it gets a plain warning that its scores mean nothing.
DEMO_EMOTION_DIR = Path(settings.DEMO_MODELS_DIR) / "emotion2vec_demo"
DEMO_EMOTION_MODEL = DEMO_EMOTION_DIR.name


def emotion_model_is_demo() -> bool:
    """Whether new emotion jobs run on the demo model (``EMOTION_MODEL_DIR`` left at its default)."""
    try:
        return Path(settings.EMOTION_MODEL_DIR).resolve() == DEMO_EMOTION_DIR.resolve()
    except OSError:  # pragma: no cover - an unreadable path is not the demo
        return False


# A job's options as the New job page names them; values are mapped where the API's spelling is a code.
OPTION_LABELS = {
    "message": "Message",
    "output_format": "Output format",
    "granularity": "Granularity",
    "extract_embedding": "Speech embedding",
    "trim_silence": "Trim silence",
}
OPTION_VALUES = {
    "granularity": {"utterance": "Whole recording", "frame": "Over time (frame by frame)"},
    "output_format": {"": "Same as the input"},
}


def option_rows(job: Job) -> list[tuple[str, str]]:
    """``(label, value)`` for each option the job was created with: ``True`` reads "Yes", codes read as the
    New job page offered them."""
    rows = []
    for key, value in (job.params or {}).items():
        if key == "callback_url":
            continue  # shown on the webhook side; a URL is not an "option"
        if isinstance(value, bool):
            text = "Yes" if value else "No"
        elif value in (None, ""):
            text = OPTION_VALUES.get(key, {}).get("", "—")
        else:
            text = OPTION_VALUES.get(key, {}).get(value, str(value).upper() if key == "output_format" else str(value))
        rows.append((OPTION_LABELS.get(key, key.replace("_", " ").capitalize()), text))
    return rows


def cache_info(job: Job, tenant) -> dict[str, Any] | None:
    """For a job answered from the result cache (``result.cached``): the earlier job it reused, when that
    job still exists in this tenant, and whether it was billed (``RESULT_CACHE_CHARGE``)."""
    result = job.result or {}
    if not result.get("cached"):
        return None
    source = None
    source_id = result.get("cached_from_job") or ""
    if source_id:
        try:
            source = Job.objects.filter(tenant=tenant, pk=source_id).only("id", "input", "created_at").first()
        except (ValueError, TypeError):  # a malformed id in an old result
            source = None
    return {"source": source, "charged": bool(settings.RESULT_CACHE_CHARGE)}


def _seconds(value: Any, digits: int = 2) -> str:
    return "—" if value is None else f"{float(value):.{digits}f} s"


def _offset_sentence(offset: float) -> str:
    """The sign convention of ``media_ops.beatsync`` in words: music time t plays at video time t + offset."""
    if abs(offset) < 0.0005:
        return "The music starts with the video's first frame."
    if offset > 0:
        return f"The music starts {offset:.3f} s after the video's first frame."
    return f"The video starts {-offset:.3f} s into the music."


def _confidence_word(confidence: float) -> str:
    # media_ops.beatsync.alignment: below ~0.5 the match only just clears the acceptance bar.
    if confidence >= 0.8:
        return "high"
    if confidence >= 0.5:
        return "medium"
    return "low"


def _media_rows(info: dict[str, Any], *, picture: bool) -> list[tuple[str, str]]:
    rows = [("Duration", _seconds(info.get("duration_seconds")))]
    if picture:
        if info.get("width") and info.get("height"):
            rows.append(("Picture", f"{info['width']} × {info['height']}"))
        rows.append(("Frame rate", f"{float(info['fps']):.2f} fps" if info.get("fps") else "unknown"))
        if info.get("video_codec"):
            rows.append(("Video codec", str(info["video_codec"]).upper()))
    rows.append(("Has sound", "Yes" if info.get("has_audio") else "No"))
    if info.get("audio_codec"):
        rows.append(("Audio codec", str(info["audio_codec"]).upper()))
    if info.get("audio_sample_rate"):
        rows.append(("Sample rate", f"{info['audio_sample_rate']} Hz"))
    if info.get("audio_channels"):
        rows.append(("Channels", str(info["audio_channels"])))
    if info.get("size_bytes"):
        rows.append(("Size", human_bytes(info["size_bytes"])))
    return rows


def beatsync_summary(result: dict[str, Any]) -> dict[str, Any]:
    """A beat-sync result as short labelled facts (the page used to print its nested dicts as Python text):
    the offset in a sentence, the confidence in a word and a number, then one small table per file."""
    offset = float(result.get("offset_seconds") or 0.0)
    confidence = float(result.get("confidence") or 0.0)
    output = result.get("output") or {}
    output_rows = [("Duration", _seconds(output.get("duration_seconds")))]
    if "video_copied" in output:
        output_rows.append(("Picture", "copied unchanged" if output.get("video_copied") else "re-encoded (H.264)"))
    if output.get("audio_codec"):
        output_rows.append(("Audio", f"{str(output['audio_codec']).upper()} · {output.get('audio_sample_rate')} Hz"
                                     f" · {output.get('audio_channels')} ch"))
    output_rows.append(("Silence trimmed", "Yes" if output.get("trimmed") else "No"))
    if output.get("trimmed"):
        output_rows.append(("Kept", f"{_seconds(output.get('source_start_seconds'))} – "
                                    f"{_seconds(output.get('source_end_seconds'))} of the video"))
    alignment = result.get("alignment") or {}
    technical = [
        (label, f"{float(alignment[key]):.3f}" if isinstance(alignment.get(key), float) else str(alignment[key]))
        for key, label in (
            ("peak_ratio", "Peak ratio"), ("peak_zscore", "Peak z-score"),
            ("coarse_offset_seconds", "Coarse offset (s)"), ("coarse_peak_ratio", "Coarse peak ratio"),
            ("correlation", "Envelope correlation"), ("candidates_checked", "Candidates checked"),
        )
        if key in alignment
    ]
    return {
        "offset_seconds": offset,
        "offset_sentence": _offset_sentence(offset),
        "confidence_percent": round(confidence * 100),
        "confidence_word": _confidence_word(confidence),
        "overlap": _seconds(result.get("overlap_seconds"), 1),
        "files": [
            {"title": "Video", "rows": _media_rows(result.get("video") or {}, picture=True)},
            {"title": "Music", "rows": _media_rows(result.get("music") or {}, picture=False)},
            {"title": "Output", "rows": output_rows},
        ],
        "technical": technical,
    }


TIMELINE_POINTS = 120  # at most this many points on the "emotion over time" chart
TIMELINE_TOP = 3  # emotions drawn by name; the rest are summed into "other emotions"


def emotion_timeline(frames: dict[str, Any] | None) -> dict[str, Any] | None:
    """The frame scores (50 per second, nine labels: 684 × 9 lines for a 14 s clip) reduced to what a person
    can read: bucket means over at most ``TIMELINE_POINTS`` steps, the ``TIMELINE_TOP`` emotions with the
    highest mean by name and the others summed, drawn as stacked areas that add up to 1."""
    if not frames or not frames.get("scores"):
        return None
    scores = frames["scores"]
    labels = list(frames["labels"])
    hop = float(frames["hop_seconds"])
    count = len(scores)
    means = [sum(row[j] for row in scores) / count for j in range(len(labels))]
    top = sorted(range(len(labels)), key=lambda j: means[j], reverse=True)[:TIMELINE_TOP]
    rest = [j for j in range(len(labels)) if j not in top]
    size = max(1, -(-count // TIMELINE_POINTS))  # frames per bucket, rounded up
    seconds, series = [], {j: [] for j in top}
    other: list[float] = []
    for start in range(0, count, size):
        bucket = scores[start:start + size]
        seconds.append(round((start + len(bucket) / 2) * hop, 3))
        for j in top:
            series[j].append(round(sum(row[j] for row in bucket) / len(bucket), 4))
        other.append(round(sum(row[j] for row in bucket for j in rest) / len(bucket), 4))
    datasets = [{"label": labels[j], "values": series[j]} for j in top]
    if rest:
        datasets.append({"label": "other emotions", "values": other})
    return {
        "seconds": seconds, "datasets": datasets, "bucket_seconds": round(size * hop, 3),
        "named": len(top), "others_summed": bool(rest),
    }
