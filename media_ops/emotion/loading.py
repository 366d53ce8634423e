"""Loading an emotion2vec+ directory through FunASR, offline and without side effects.

Why this module exists rather than calling FunASR directly:

* Loading must never touch the network. FunASR treats a path that does not exist as a model-hub name and
  tries to download it, and without ``disable_update=True`` it asks PyPI for a newer version. ``load`` checks
  the directory first and always passes ``disable_update=True``.
* FunASR has process-wide side effects at load: ``torch.set_num_threads(ncpu)``, reseeding the global
  ``random``/NumPy/torch generators, and a root-logger INFO handler (at ``import funasr`` and in
  ``AutoModel``). ``load`` passes the worker's thread budget and undoes the rest.
* FunASR silently keeps random weights for checkpoint keys it cannot find (it only prints a warning), so a
  directory holding the wrong checkpoint would give plausible-looking nonsense. ``load`` checks the keys.

Only load model directories you trust: FunASR ``eval()``s the config's ``feature_encoder_spec``.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("media_ops.emotion")  # the package's logger, as before the split

REQUIRED_FILES = ("config.yaml", "model.pt", "tokens.txt")


class ModelDirError(ValueError):
    """The configured model directory is missing, incomplete or holds something else (a deployment error)."""


def model_version(model_pt: Path) -> str:
    """A short content hash (sha256[:12]) of the weights: the version recorded with every result."""
    digest = hashlib.sha256()
    with open(model_pt, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


@contextmanager
def _contain_funasr_side_effects() -> Iterator[None]:
    """Undo what importing funasr and building an AutoModel do to the whole process.

    Both add an INFO ``StreamHandler`` to the root logger when it has none (``basicConfig``), and FunASR
    reseeds the global RNGs with 0. Handlers and the level the root logger had before are restored; handlers
    someone else added meanwhile are left alone. Thread count is handled by the caller.
    """
    import torch

    root = logging.getLogger()
    handlers_before = list(root.handlers)
    level_before = root.level
    rng_state = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers_before and isinstance(handler, logging.StreamHandler):
                root.removeHandler(handler)
        root.setLevel(level_before)
        random.setstate(rng_state[0])
        np.random.set_state(rng_state[1])
        torch.random.set_rng_state(rng_state[2])


def _auto_model_class() -> Any:
    """FunASR's AutoModel, imported lazily: ``import funasr`` takes ~8 s, so never at web start-up."""
    with _contain_funasr_side_effects():
        import funasr

    return funasr.AutoModel


def check_model_dir(model_dir: str | Path) -> Path:
    """Resolve and check the model directory before FunASR sees it, so a typo never becomes a hub lookup."""
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise ModelDirError(
            f"emotion model directory {str(path)!r} does not exist (check the EMOTION_MODEL_DIR setting); "
            "models are never downloaded"
        )
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ModelDirError(
            f"emotion model directory {str(path)!r} lacks {', '.join(missing)}; "
            f"an emotion2vec+ directory holds {', '.join(REQUIRED_FILES)}"
        )
    return path.absolute()


def _check_checkpoint_matches(model: Any, model_pt: Path) -> None:
    """Refuse a checkpoint that does not fit the architecture in config.yaml.

    FunASR keeps the random initial value of any weight it cannot find or whose shape differs, and goes on.
    The file is memory-mapped, so this costs little even for the 1.25 GB large model. The pre-training decoder
    is not used for inference and may be absent from fine-tuned checkpoints, so it is not required.
    """
    import torch

    try:
        state = torch.load(model_pt, map_location="cpu", mmap=True, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError) as exc:  # legacy (non-zip) files cannot be memory-mapped
        logger.warning("could not memory-map %s to check its keys (%s); skipping the check", model_pt, exc)
        return
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, mismatched = [], []
    for key, tensor in model.state_dict().items():
        if ".decoder." in key:
            continue
        if key not in state:
            missing.append(key)
        elif tuple(state[key].shape) != tuple(tensor.shape):
            mismatched.append(key)
    if missing or mismatched:
        raise ModelDirError(
            f"{model_pt} does not match its config.yaml: {len(missing)} weights missing, "
            f"{len(mismatched)} of a different shape (first: {(missing + mismatched)[:3]}); "
            "the model would run with random weights"
        )
