"""Speech emotion recognition with emotion2vec+ through FunASR, windowed for long audio.

Why the wrapper exists rather than calling FunASR directly: loading must never touch the network, must not
leave FunASR's process-wide side effects behind, and must refuse a checkpoint that does not fit
(``loading``); attention is quadratic in length, so long inputs are analysed in overlapping windows
(``windowing``) and aggregated, with per-frame probabilities from the model's own classification head
(``analysis``). FunASR runs inputs one at a time; ``EmotionModel.analyze_batch`` runs several in exact
padded batches (``batching``: which FunASR internals that relies on, checked at load). The emotion names are
``LABELS`` (``labels``).

Only load model directories you trust: FunASR ``eval()``s the config's ``feature_encoder_spec``.
"""

from media_ops.emotion.analysis import FRAME_SCORE_DECIMALS, GRANULARITIES, EmotionAnalysis, EmotionModel
from media_ops.emotion.batching import FUNASR_VERSION_CHECKED, UnsupportedModelError
from media_ops.emotion.labels import LABELS, parse_label
from media_ops.emotion.loading import REQUIRED_FILES, ModelDirError, check_model_dir, model_version
from media_ops.emotion.windowing import (
    DEFAULT_OVERLAP_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    HOP_SAMPLES,
    HOP_SECONDS,
    MIN_SAMPLES,
    RECEPTIVE_FIELD_SAMPLES,
    SAMPLE_RATE,
    frames_for,
    plan_windows,
    window_params,
)

__all__ = [
    "DEFAULT_OVERLAP_SECONDS",
    "DEFAULT_WINDOW_SECONDS",
    "FRAME_SCORE_DECIMALS",
    "FUNASR_VERSION_CHECKED",
    "GRANULARITIES",
    "HOP_SAMPLES",
    "HOP_SECONDS",
    "LABELS",
    "MIN_SAMPLES",
    "RECEPTIVE_FIELD_SAMPLES",
    "REQUIRED_FILES",
    "SAMPLE_RATE",
    "EmotionAnalysis",
    "EmotionModel",
    "ModelDirError",
    "UnsupportedModelError",
    "check_model_dir",
    "frames_for",
    "model_version",
    "parse_label",
    "plan_windows",
    "window_params",
]
