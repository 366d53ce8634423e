"""Model pinning: which model versions this deployment serves per job kind, and holding a job to one.

A version is what every result already records (``Job.model_version``, the API's ``model.version``): a hash of
the checkpoint's bytes (AudioSeal generator for embedding, detector for detection, the emotion2vec weights),
``"1"`` for beat-sync, which has no model. Every worker of a deployment loads the models the settings name
(``WATERMARK_GENERATOR``, ``WATERMARK_DETECTOR``, ``EMOTION_MODEL_DIR``), so the web process can tell which
versions exist by hashing the same files, without loading torch; the answer is cached per process (files
are hashed once: ~20 ms for the demo checkpoints).

A request that names ``model_version`` gets it checked here (``resolve``): unknown is ``422
UNKNOWN_MODEL_VERSION`` with the available list; known is stored in the job's params. The worker compares
the pin with the model it actually holds (``jobs.worker.execution``) and fails the job with
``MODEL_VERSION_UNAVAILABLE`` rather than run another model (a deploy that changed the model between
submission and run).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from core.errors import ServiceError
from jobs.models import JobKind

PARAM = "model_version"
BEATSYNC_MODEL = ("beatsync", "1")  # no model: the version of the alignment algorithm (jobs.worker.handlers)
# Which model a job of each kind runs on: one table for what the API offers (``available``) and what a worker
# checks a pin against (``jobs.worker.execution.loaded_model_version``). A report reads with the detector.
MODEL_OF_KIND = {
    JobKind.WATERMARK_EMBED: "generator",
    JobKind.WATERMARK_DETECT: "detector",
    JobKind.WATERMARK_REPORT: "detector",
    JobKind.EMOTION: "emotion",
    JobKind.BEATSYNC: "beatsync",
}


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


@functools.lru_cache(maxsize=16)
def _watermark(source: str) -> ModelRef:
    from media_ops.watermark.models import describe_source

    return ModelRef(*describe_source(source))


@functools.lru_cache(maxsize=4)
def _emotion(model_dir: str) -> ModelRef:
    # The definition of ``media_ops.emotion.loading.model_version`` (sha256[:12] of the weights), computed
    # here because importing media_ops.emotion pulls in torch and FunASR, which the web process never loads.
    path = Path(model_dir)
    weights = path / "model.pt"
    if weights.is_file():
        digest = hashlib.sha256()
        with open(weights, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return ModelRef(path.name, digest.hexdigest()[:12])
    return ModelRef(model_dir, model_dir)  # a hub name: its version is its name, as the loader records


def available(kind: str) -> list[ModelRef]:
    """The model versions a job of ``kind`` can run on in this deployment (one per kind today)."""
    model = MODEL_OF_KIND[kind]  # KeyError: a kind nobody declared a model for
    if model == "generator":
        return [_watermark(settings.WATERMARK_GENERATOR)]
    if model == "detector":
        return [_watermark(settings.WATERMARK_DETECTOR)]
    if model == "emotion":
        return [_emotion(settings.EMOTION_MODEL_DIR)]
    return [ModelRef(*BEATSYNC_MODEL)]


def resolve(kind: str, requested: str | None) -> str:
    """The pin for a new job of ``kind``: '' when none was asked for; the version when it exists here;
    else ``UNKNOWN_MODEL_VERSION`` (422) listing what is available."""
    requested = (requested or "").strip()
    if not requested:
        return ""
    refs = available(kind)
    if any(requested == ref.version for ref in refs):
        return requested
    raise ServiceError(
        "UNKNOWN_MODEL_VERSION",
        f"Model version {requested!r} is not available for {kind} jobs; available: "
        + ", ".join(ref.version for ref in refs) + ".",
        {"field": PARAM, "requested": requested[:100], "available": [ref.as_dict() for ref in refs]},
        http_status=422,
    )
