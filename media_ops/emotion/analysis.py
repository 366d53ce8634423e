"""The loaded emotion model and its results: ``EmotionModel`` (load, analyze, analyze_batch), ``EmotionAnalysis``.

Why this module exists: it turns audio into the product's emotion result, combining the windows
(``windowing``) and the model loaded offline (``loading``):

* Attention is quadratic in length (30 s of audio costs the large model ~19 s on 2 CPU cores, and memory
  grows with the square), so long inputs are analysed in overlapping windows and aggregated here.
* FunASR runs its inputs one at a time; ``analyze_batch`` runs the windows of several inputs in padded batches
  through the model's own modules, masked so that each result equals ``analyze``'s (``batching``).
* FunASR only scores the whole input; per-frame class probabilities come from applying the model's own
  classification head (``proj``) to each frame's features, exactly as FunASR applies it to their mean.

The model itself normalises each input (``normalize: true`` → layer norm over the whole waveform), so each
window is normalised on its own; quiet and loud windows are treated alike.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from media_ops.emotion.batching import PaddedBatchForward, WindowRef, plan_batches
from media_ops.emotion.labels import LABELS, parse_label
from media_ops.emotion.loading import (
    ModelDirError,
    _auto_model_class,
    _check_checkpoint_matches,
    _contain_funasr_side_effects,
    check_model_dir,
    model_version,
)
from media_ops.emotion.windowing import (
    DEFAULT_OVERLAP_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    HOP_SAMPLES,
    HOP_SECONDS,
    MIN_SAMPLES,
    SAMPLE_RATE,
    plan_windows,
    window_params,
)
from media_ops.errors import EMPTY_FILE, INVALID_FORMAT, MediaError

GRANULARITIES = ("utterance", "frame")
FRAME_SCORE_DECIMALS = 4


@dataclass
class EmotionAnalysis:
    """The result of ``EmotionModel.analyze``.

    ``scores`` maps all 9 ``LABELS`` to probabilities summing to 1; ``labels_raw`` are the model's own labels
    in its output order. ``frames`` is set for ``granularity="frame"``: ``{"hop_seconds": 0.02, "labels":
    [9 labels], "scores": [[9 probabilities] per frame]}``, frame ``i`` starting at ``i * hop_seconds``.
    ``embedding`` (float32) is ``(dim,)`` for utterance granularity and ``(frames, dim)`` for frame
    granularity, or None when not requested.
    """

    top: dict[str, Any]
    scores: dict[str, float]
    labels_raw: list[str]
    granularity: str
    windows: int
    duration_seconds: float
    model: dict[str, str]
    frames: dict[str, Any] | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The JSON-safe result, without the embedding (callers store it as .npy) but with its shape.

        Frame probabilities are rounded to 4 decimals: a minute of audio is 3,000 frames × 9 scores.
        """
        frames = None
        if self.frames is not None:
            frames = {
                "hop_seconds": self.frames["hop_seconds"],
                "labels": list(self.frames["labels"]),
                "scores": [
                    [round(float(p), FRAME_SCORE_DECIMALS) for p in row] for row in self.frames["scores"]
                ],
            }
        out: dict[str, Any] = {
            "top": {"label": self.top["label"], "score": float(self.top["score"])},
            "scores": {k: float(v) for k, v in self.scores.items()},
            "labels_raw": list(self.labels_raw),
            "granularity": self.granularity,
            "windows": int(self.windows),
            "duration_seconds": float(self.duration_seconds),
            "model": dict(self.model),
            "frames": frames,
        }
        if self.embedding is not None:
            out["embedding_shape"] = [int(n) for n in self.embedding.shape]
        return out


def _as_float32_mono(audio: Any) -> np.ndarray:
    """Validate and convert the input: float32 as is, float64 cast, int16/int32 PCM scaled to [-1, 1).

    FunASR itself fails on float64 and int16 arrays deep inside the convolutions, so convert or refuse here.
    """
    arr = np.asarray(audio)
    if arr.ndim != 1:
        raise MediaError(
            INVALID_FORMAT,
            "Emotion analysis expects mono audio as a 1-D array.",
            {"shape": list(arr.shape)},
        )
    if arr.size == 0:
        raise MediaError(EMPTY_FILE, "The audio is empty.")
    if arr.dtype == np.float32:
        out = arr
    elif arr.dtype == np.float64 or arr.dtype == np.float16:
        out = arr.astype(np.float32)
    elif arr.dtype == np.int16:
        out = arr.astype(np.float32) / 32768.0
    elif arr.dtype == np.int32:
        out = (arr.astype(np.float64) / 2147483648.0).astype(np.float32)
    else:
        raise MediaError(
            INVALID_FORMAT,
            f"Unsupported sample type {arr.dtype}; expected float32/float64 or int16/int32 PCM.",
            {"dtype": str(arr.dtype)},
        )
    if arr.size < MIN_SAMPLES:
        raise MediaError(
            INVALID_FORMAT,
            f"The audio is too short to analyse (at least {MIN_SAMPLES / SAMPLE_RATE * 1000:.0f} ms needed).",
            {"samples": int(arr.size), "min_samples": MIN_SAMPLES},
        )
    if not np.isfinite(out).all():
        raise MediaError(INVALID_FORMAT, "The audio contains NaN or infinite samples.")
    return out


class EmotionModel:
    """A loaded emotion2vec+ model. Load once per worker process (``load``), then ``analyze`` per job, or
    ``analyze_batch`` for several jobs at once.

    ``analyze`` on CPU goes through FunASR's ``generate``, behind a lock (FunASR's AutoModel mutates its own
    config on every call); ``analyze_batch`` needs none (the padded-batch forward is thread-safe), so the
    worker's model lanes run it side by side.
    """

    def __init__(
        self,
        auto_model: Any,
        *,
        model_dir: Path,
        version: str,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    ) -> None:
        window_samples, overlap_samples = window_params(window_seconds, overlap_seconds)
        self._auto = auto_model
        self.model_dir = model_dir
        self.name = model_dir.name
        self.version = version
        self.device = str(auto_model.kwargs.get("device", "cpu"))
        self.window_samples = window_samples
        self.overlap_samples = overlap_samples
        self._lock = threading.Lock()  # FunASR's generate (the CPU one-at-a-time path) is not thread-safe

        token_list = list(auto_model.kwargs.get("token_list") or [])
        # FunASR drops labels starting with "unuse" from its output and masks them in the softmax.
        self._keep = [i for i, tok in enumerate(token_list) if not tok.startswith("unuse")]
        self.labels_raw = [token_list[i] for i in self._keep]
        if getattr(auto_model.model, "proj", None) is None or not self.labels_raw:
            raise ModelDirError(f"{model_dir} has no classifier head (tokens.txt empty?)")
        try:
            parsed = [parse_label(lab) for lab in self.labels_raw]
        except ValueError as exc:
            raise ModelDirError(f"{model_dir}/tokens.txt: {exc}") from exc
        if len(set(parsed)) != len(parsed):
            raise ModelDirError(
                f"{model_dir}/tokens.txt maps two labels to the same emotion: {self.labels_raw}"
            )
        # Column j of the model's (kept) output goes to position _to_canonical[j] of LABELS.
        self._to_canonical = [LABELS.index(p) for p in parsed]
        # Checks the FunASR internals the exact padded batches rely on, and counts forward passes.
        self._batch = PaddedBatchForward(auto_model.model)
        # On CUDA ``analyze`` runs through the padded-batch forward too (one window per pass, so no padding):
        # FunASR's ``generate`` calls torch.cuda.empty_cache() after every call, which returns the caching
        # allocator's blocks to the driver and makes the next pass allocate them again. Equal results either
        # way (media_ops/tests/test_emotion_batch.py); on CPU the reference path stays FunASR's own.
        self.batch_path_alone = self.device.startswith("cuda")

    @property
    def window_seconds(self) -> float:
        return self.window_samples / SAMPLE_RATE

    @property
    def overlap_seconds(self) -> float:
        return self.overlap_samples / SAMPLE_RATE

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        *,
        device: str = "cpu",
        threads: int = 1,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    ) -> EmotionModel:
        """Load an emotion2vec+ directory (config.yaml, model.pt, tokens.txt) offline through FunASR.

        ``threads`` is the torch intra-op thread budget: FunASR sets it process-wide from ``ncpu``, so it is
        passed explicitly and set again afterwards. The demo model is
        ``media_ops/demo_models/emotion2vec_demo``; point ``EMOTION_MODEL_DIR`` at a local copy of
        emotion2vec_plus_large for real results.
        """
        import torch

        path = check_model_dir(model_dir)
        window_params(window_seconds, overlap_seconds)  # fail before the (slow) load, not after
        if str(device).startswith("cuda"):
            # TF32 matmuls and convolutions for the transformer (torch's default keeps fp32 matmuls). These
            # flags are process-wide; the watermark family has no matmuls and its cuDNN convs/LSTM use TF32
            # by torch's default already. Not measured on a GPU here (README "Benchmarks").
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        threads = max(1, int(threads))
        auto_model_class = _auto_model_class()
        try:
            with _contain_funasr_side_effects():
                auto = auto_model_class(
                    model=str(path),
                    disable_update=True,
                    device=device,
                    ncpu=threads,
                    disable_pbar=True,
                    # Only used by FunASR's logging.basicConfig, which acts only while the root logger has
                    # no handler: keeps its INFO chatter out of unconfigured processes, changes nothing else.
                    log_level="WARNING",
                )
        finally:
            torch.set_num_threads(threads)
        _check_checkpoint_matches(auto.model, path / "model.pt")
        return cls(
            auto,
            model_dir=path,
            version=model_version(path / "model.pt"),
            window_seconds=window_seconds,
            overlap_seconds=overlap_seconds,
        )

    @property
    def forward_passes(self) -> int:
        """How many forward passes of the model this instance has run (one-at-a-time and batched alike)."""
        return self._batch.forward_passes

    def warm(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Dummy passes (quiet noise) so the first job does not pay for lazy set-up: one alone (1 s), and one
        padded batch of each size above 1 (lengths from 1 s down to 0.5 s), the shapes batched jobs will use."""
        rng = np.random.default_rng(0)

        def quiet(n: int) -> np.ndarray:
            return (rng.standard_normal(n) * 0.01).astype(np.float32)

        self.analyze(quiet(SAMPLE_RATE))
        for size in sorted({int(s) for s in batch_sizes if int(s) > 1}):
            clips = [quiet(SAMPLE_RATE // 2 + SAMPLE_RATE * (size - i) // (2 * size)) for i in range(size)]
            self.analyze_batch([(clip, "utterance", False) for clip in clips], max_batch=size)

    def _head_probs(self, feats: Any) -> np.ndarray:
        """The model's head on feature rows (a (n, dim) tensor): probabilities, columns in ``LABELS`` order."""
        import torch

        proj = self._auto.model.proj
        with torch.inference_mode():
            logits = proj(feats.to(proj.weight.device, proj.weight.dtype))[:, self._keep]
            probs = torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64)
        out = np.zeros((probs.shape[0], len(LABELS)), dtype=np.float64)
        out[:, self._to_canonical] = probs
        return out

    def scores_from_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (columns in ``LABELS`` order) from feature rows, using the model's own head.

        This is what FunASR does to the mean of the frame features for its utterance score; applied to each
        frame's features it gives per-frame probabilities. ``features``: (dim,) or (n, dim).
        """
        import torch

        feats = np.atleast_2d(np.asarray(features, dtype=np.float32))
        return self._head_probs(torch.from_numpy(np.ascontiguousarray(feats)))

    def _run_window(self, samples: np.ndarray, *, want_frames: bool, want_embedding: bool) -> dict[str, Any]:
        granularity = "frame" if want_frames else "utterance"
        with self._lock:
            (res,) = self._auto.generate(
                samples,
                key="window",  # a fixed key: FunASR otherwise draws a random one from the global RNG
                granularity=granularity,
                extract_embedding=want_frames or want_embedding,
            )
        if [str(lab) for lab in res["labels"]] != self.labels_raw:
            raise RuntimeError(f"model returned labels {res['labels']}, expected {self.labels_raw}")
        scores = np.zeros(len(LABELS), dtype=np.float64)
        scores[self._to_canonical] = np.asarray(res["scores"], dtype=np.float64)
        return {"scores": scores, "feats": res.get("feats")}

    def _prepare(self, audio: Any, granularity: str) -> tuple[np.ndarray, list[Any]]:
        """The checked samples and their windows (``MediaError`` / ``ValueError`` for a bad input)."""
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")
        samples = _as_float32_mono(audio)
        return samples, plan_windows(samples.size, self.window_samples, self.overlap_samples)

    def analyze(
        self,
        audio: np.ndarray,
        *,
        granularity: str = "utterance",
        extract_embedding: bool = False,
    ) -> EmotionAnalysis:
        """Emotion of mono 16 kHz audio (1-D; float32 preferred, float64 and int16/int32 PCM converted).

        Inputs longer than ``window_seconds`` are analysed in windows overlapping by ``overlap_seconds``:
        utterance scores (and the utterance embedding) are the mean of the windows' scores (embeddings)
        weighted by the duration each window owns (its span minus half of each overlap, so nothing counts
        twice). Frame curves are concatenated from each window's owned frames, which gives exactly as many
        frames as the model would produce for the whole input in one pass.
        """
        if self.batch_path_alone:
            (result,) = self.analyze_batch([(audio, granularity, extract_embedding)], max_batch=1)
            assert isinstance(result, EmotionAnalysis)
            return result
        samples, windows = self._prepare(audio, granularity)
        want_frames = granularity == "frame"
        results = [
            self._run_window(
                samples[w.start : w.end].copy(), want_frames=want_frames, want_embedding=extract_embedding
            )
            for w in windows
        ]
        return self._assemble(samples, windows, results, granularity, extract_embedding)

    def analyze_batch(
        self,
        items: list[tuple[Any, str, bool]],
        *,
        max_batch: int = 8,
        return_exceptions: bool = False,
    ) -> list[EmotionAnalysis | Exception]:
        """``analyze`` for several inputs at once: ``items`` are ``(audio, granularity, extract_embedding)``.

        The windows of all inputs (of any lengths and options) run in ``ceil(windows / max_batch)`` forward
        passes, zero-padded with the padding masked exactly (``batching``): each result equals its ``analyze``
        result within float rounding (tests: scores within 1e-5, features within 1e-4). An input that
        ``analyze`` would refuse raises that error here, or with ``return_exceptions`` takes its place in the
        returned list while the others run.
        """
        import torch

        prepared: list[Any] = []
        for audio, granularity, _ in items:
            try:
                prepared.append(self._prepare(audio, granularity))
            except (MediaError, ValueError) as exc:
                if not return_exceptions:
                    raise
                prepared.append(exc)
        refs = [
            WindowRef(i, j, w.start, w.end)
            for i, p in enumerate(prepared)
            if not isinstance(p, Exception)
            for j, w in enumerate(p[1])
        ]
        window_results: dict[tuple[int, int], dict[str, Any]] = {}
        for batch in plan_batches(refs, max_batch):
            clips = [prepared[r.item][0][r.start : r.end] for r in batch]
            # No lock: the padded-batch forward is thread-safe (the worker's model lanes run it side by side).
            feats = self._batch.features(clips)
            means = self._head_probs(torch.stack([f.mean(dim=0) for f in feats]))
            for ref, frame_feats, scores in zip(batch, feats, means, strict=True):
                want_frames = items[ref.item][1] == "frame"
                arr = frame_feats.cpu().numpy()
                kept = arr if want_frames else (np.mean(arr, axis=0) if items[ref.item][2] else None)
                window_results[(ref.item, ref.index)] = {"scores": scores, "feats": kept}
        out: list[EmotionAnalysis | Exception] = []
        for i, p in enumerate(prepared):
            if isinstance(p, Exception):
                out.append(p)
                continue
            samples, windows = p
            results = [window_results[(i, j)] for j in range(len(windows))]
            out.append(self._assemble(samples, windows, results, items[i][1], bool(items[i][2])))
        return out

    def _assemble(
        self,
        samples: np.ndarray,
        windows: list[Any],
        results: list[dict[str, Any]],
        granularity: str,
        extract_embedding: bool,
    ) -> EmotionAnalysis:
        """One input's result from its windows' ``{"scores", "feats"}`` (``analyze``'s docstring)."""
        want_frames = granularity == "frame"
        utt_scores = np.zeros(len(LABELS), dtype=np.float64)
        utt_embedding: np.ndarray | None = None
        frame_feats: list[np.ndarray] = []
        for w, res in zip(windows, results, strict=True):
            weight = (w.own_end - w.own_start) / samples.size
            utt_scores += weight * res["scores"]
            feats = res["feats"]
            if want_frames:
                first = (w.own_start - w.start) // HOP_SAMPLES
                last = (w.own_end - w.start) // HOP_SAMPLES if w.own_end < samples.size else len(feats)
                frame_feats.append(np.asarray(feats[first:last], dtype=np.float32))
            elif extract_embedding:
                window_embedding = np.asarray(feats, dtype=np.float64) * weight
                utt_embedding = (
                    window_embedding if utt_embedding is None else utt_embedding + window_embedding
                )

        utt_scores /= utt_scores.sum()
        scores = {label: float(utt_scores[i]) for i, label in enumerate(LABELS)}
        best = int(np.argmax(utt_scores))
        frames = None
        embedding = None
        if want_frames:
            all_feats = np.concatenate(frame_feats, axis=0)
            frames = {
                "hop_seconds": HOP_SECONDS,
                "labels": list(LABELS),
                "scores": self.scores_from_features(all_feats).tolist(),
            }
            if extract_embedding:
                embedding = all_feats
        elif utt_embedding is not None:
            embedding = utt_embedding.astype(np.float32)

        return EmotionAnalysis(
            top={"label": LABELS[best], "score": float(utt_scores[best])},
            scores=scores,
            labels_raw=list(self.labels_raw),
            granularity=granularity,
            windows=len(windows),
            duration_seconds=samples.size / SAMPLE_RATE,
            model={"name": self.name, "version": self.version},
            frames=frames,
            embedding=embedding,
        )
