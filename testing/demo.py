"""The shipped demo AudioSeal checkpoints, for the engine tests that need trained weights (a random detector
proves nothing about watermarking: MODELS.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from media_ops.watermark import WatermarkModels

DEMO = Path(__file__).resolve().parent.parent / "media_ops" / "demo_models" / "audioseal"
needs_demo_models = pytest.mark.skipif(
    not (DEMO / "generator.pth").is_file(), reason="trained demo watermark checkpoints not present"
)


def load_demo_models() -> WatermarkModels:
    """The demo pair on CPU, one torch thread (the machine is shared)."""
    import torch

    torch.set_num_threads(1)
    return WatermarkModels.load(str(DEMO / "generator.pth"), str(DEMO / "detector.pth"))
