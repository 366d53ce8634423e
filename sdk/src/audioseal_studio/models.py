"""Typed views of the API's JSON (pydantic v2 models).

Why pydantic rather than dataclasses: responses are parsed, not trusted (ISO datetimes become ``datetime``,
numbers are checked), a job's ``result`` becomes the model of its kind (``Job.result`` is an
``EmbedResult``, ``DetectionResult``, ``EmotionResult`` or ``BeatsyncResult``), and tolerance is one setting:
every model keeps fields it does not know (``extra="allow"``: a newer server's fields are readable as
attributes and survive ``model_dump()``), and every field it does know has a default, so a server that
drops or renames one does not break old clients. A result that does not fit its kind's model stays a
plain ``dict`` rather than failing the whole job.

Status and kind are plain strings compared with ``JobStatus``/``JobKind`` (``str`` enums), so a status a
newer server adds does not make older clients fail to read a job.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class JobKind(StrEnum):
    WATERMARK_EMBED = "watermark_embed"
    WATERMARK_DETECT = "watermark_detect"
    EMOTION = "emotion"
    BEATSYNC = "beatsync"


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELED.value})


class StudioModel(BaseModel):
    """Base of every model: unknown fields are kept, never an error."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())


# --- results per kind ----------------------------------------------------------------------------------------


class Alignment(StudioModel):
    """Where a watermark was read: zero samples prepended, polarity (-1: inverted), speed factor."""

    offset_samples: int = 0
    polarity: int = 1
    speed: float = 1.0


class DetectionSegment(StudioModel):
    """One watermarked region, with the message decoded from its samples only."""

    start_seconds: float = 0.0
    end_seconds: float = 0.0
    probability: float | None = None
    confidence: str | float | None = None
    message: str | None = None
    bits: list[int] | None = None
    bit_probabilities: list[float] | None = None
    alignment: Alignment | None = None


class Localization(StudioModel):
    hop_seconds: float = 0.01
    values: list[float] = Field(default_factory=list)


class DetectionResult(StudioModel):
    """``watermark_detect``: ``detected`` when any region is found; ``message`` is the strongest region's."""

    detected: bool = False
    summary: str = ""
    probability: float | None = None
    confidence: str | float | None = None
    message: str | None = None
    bits: list[int] | None = None
    bit_probabilities: list[float] | None = None
    segments: list[DetectionSegment] = Field(default_factory=list)
    alignment: Alignment | None = None
    localization: Localization | None = None
    watermarked_seconds: float | None = None


class AudioOutput(StudioModel):
    format: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    duration_seconds: float | None = None


class EmbedResult(StudioModel):
    """``watermark_embed``: the message written (4 hex digits), its bits and the watermark's SNR."""

    message: str | None = None
    bits: list[int] | None = None
    snr_db: float | None = None
    output: AudioOutput | None = None


class EmotionScore(StudioModel):
    label: str = ""
    score: float = 0.0


class EmotionFrames(StudioModel):
    hop_seconds: float | None = None
    labels: list[str] = Field(default_factory=list)
    scores: list[list[float]] = Field(default_factory=list)


class EmotionResult(StudioModel):
    """``emotion``: the top label and the score of each of the nine labels (frames when asked for)."""

    top: EmotionScore | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    labels_raw: list[str] = Field(default_factory=list)
    granularity: str | None = None
    windows: int | None = None
    duration_seconds: float | None = None
    frames: EmotionFrames | None = None
    embedding_shape: list[int] | None = None


class BeatsyncResult(StudioModel):
    """``beatsync``: where the music plays on the video's timeline, and the rendered video."""

    offset_seconds: float | None = None
    confidence: float | str | None = None
    overlap_seconds: float | None = None
    video_duration_seconds: float | None = None
    music_duration_seconds: float | None = None
    alignment: dict[str, Any] | None = None
    video: dict[str, Any] | None = None
    music: dict[str, Any] | None = None
    output: dict[str, Any] | None = None


JobResult = EmbedResult | DetectionResult | EmotionResult | BeatsyncResult
RESULT_MODELS: dict[str, type[StudioModel]] = {
    JobKind.WATERMARK_EMBED.value: EmbedResult,
    JobKind.WATERMARK_DETECT.value: DetectionResult,
    JobKind.EMOTION.value: EmotionResult,
    JobKind.BEATSYNC.value: BeatsyncResult,
}


# --- jobs --------------------------------------------------------------------------------------------------


class JobError(StudioModel):
    code: str = ""
    message: str = ""


class ModelInfo(StudioModel):
    name: str = ""
    version: str = ""


class Job(StudioModel):
    """A job as the API returns it. ``result`` is typed by ``kind`` once the job succeeded."""

    id: str
    kind: str = ""
    status: str = JobStatus.QUEUED.value
    progress: int | None = None
    progress_message: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    result: EmbedResult | DetectionResult | EmotionResult | BeatsyncResult | dict[str, Any] | None = None
    output_url: str | None = None
    error: JobError | None = None
    model: ModelInfo | None = None
    callback_url: str | None = None

    @field_validator("result", mode="plain")
    @classmethod
    def _result_of_its_kind(cls, value: Any, info: ValidationInfo) -> Any:
        """Parse ``result`` with the model of the job's kind (``kind`` is validated first); keep a dict when
        the kind is unknown or the result does not fit its model (a plain validator: a union would let any
        dict pass as the first model whose fields all have defaults)."""
        if not isinstance(value, dict):
            return value
        model = RESULT_MODELS.get(str(info.data.get("kind")))
        if model is None:
            return value
        try:
            return model.model_validate(value)
        except ValidationError:
            return value

    @field_validator("callback_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return value or None  # older servers say "" for "no callback"

    @property
    def is_final(self) -> bool:
        """Succeeded, failed or canceled: reading it again will not change it."""
        return self.status in FINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == JobStatus.SUCCEEDED.value


class JobPage(StudioModel):
    """One page of ``GET /jobs``; ``next_cursor`` is None on the last page."""

    results: list[Job] = Field(default_factory=list)
    next_cursor: str | None = None
    previous_cursor: str | None = None


class WebhookDelivery(StudioModel):
    id: str
    event: str = ""
    url: str = ""
    status: str = ""
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime | None = None
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    attempt_log: list[dict[str, Any]] = Field(default_factory=list)


# --- usage -------------------------------------------------------------------------------------------------


class Period(StudioModel):
    start: datetime | None = None
    end: datetime | None = None


class PlanRef(StudioModel):
    code: str = ""
    name: str = ""


class SubscriptionState(StudioModel):
    status: str = ""
    past_due_since: datetime | None = None
    can_submit: bool = True
    stripe_managed: bool = False


class Minutes(StudioModel):
    included: float = 0.0
    granted: float = 0.0
    used: float = 0.0
    reserved: float = 0.0
    remaining: float = 0.0
    overage: float = 0.0


class Seconds(StudioModel):
    included: int = 0
    used: int = 0
    reserved: int = 0


class KindUsage(StudioModel):
    kind: str = ""
    seconds: int = 0
    minutes: float = 0.0
    jobs: int = 0


class Limits(StudioModel):
    plan_code: str = ""
    included_minutes: int | None = None
    overage_allowed: bool | None = None
    max_file_bytes: int | None = None
    max_audio_seconds: float | None = None
    max_video_pixels: int | None = None
    max_video_fps: float | None = None
    max_video_pixel_rate: int | None = None
    max_concurrent_jobs: int | None = None
    retention_days: int | None = None
    rate_limits: dict[str, int] = Field(default_factory=dict)


class Usage(StudioModel):
    """``GET /usage``: this billing period's minutes used, reserved and included, per kind, and the limits."""

    period: Period = Field(default_factory=Period)
    plan: PlanRef = Field(default_factory=PlanRef)
    subscription: SubscriptionState = Field(default_factory=SubscriptionState)
    minutes: Minutes = Field(default_factory=Minutes)
    seconds: Seconds = Field(default_factory=Seconds)
    by_kind: list[KindUsage] = Field(default_factory=list)
    active_jobs: int = 0
    limits: Limits = Field(default_factory=Limits)
