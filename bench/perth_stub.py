"""Just enough of ``torchaudio`` and ``pkg_resources`` for Resemble's PerTh watermarker to import and run,
installed into ``sys.modules`` by ``bench.robustness`` only (never by the product).

Why: ``resemble-perth`` 1.0.1 imports ``torchaudio.transforms.Spectrogram / InverseSpectrogram /
TimeStretch`` and ``pkg_resources.resource_filename``. The torchaudio wheels reachable here do not match our
torch 2.13 (its shared library fails to load) and the shared venv's setuptools (>= 81) no longer ships
``pkg_resources``; downgrading either would break the venv other work depends on. The three transforms are
thin wrappers of ``torch.stft`` / ``torch.istft`` with torchaudio's defaults (centred, reflect padding, the
window as a buffer), and PerTh only needs ``TimeStretch``'s ``phase_advance`` buffer so that its checkpoint
loads (it never calls it).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from collections.abc import Callable
from pathlib import Path


def _transforms() -> types.ModuleType:
    import torch

    class Spectrogram(torch.nn.Module):
        def __init__(self, n_fft: int = 400, win_length: int | None = None, hop_length: int | None = None,
                     pad: int = 0, window_fn: Callable[..., torch.Tensor] = torch.hann_window,
                     power: float | None = 2.0, normalized: bool = False, center: bool = True,
                     pad_mode: str = "reflect", onesided: bool = True, **_: object) -> None:
            super().__init__()
            self.n_fft, self.win_length = n_fft, win_length or n_fft
            self.hop_length = hop_length or self.win_length // 2
            self.power, self.normalized, self.center, self.pad_mode = power, normalized, center, pad_mode
            self.register_buffer("window", window_fn(self.win_length))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            shape = x.shape
            spec = torch.stft(x.reshape(-1, shape[-1]), self.n_fft, self.hop_length, self.win_length,
                              self.window, center=self.center, pad_mode=self.pad_mode,
                              normalized=self.normalized, return_complex=True)
            spec = spec.reshape(shape[:-1] + spec.shape[-2:])
            return spec if self.power is None else spec.abs().pow(self.power)

    class InverseSpectrogram(torch.nn.Module):
        def __init__(self, n_fft: int = 400, win_length: int | None = None, hop_length: int | None = None,
                     pad: int = 0, window_fn: Callable[..., torch.Tensor] = torch.hann_window,
                     normalized: bool = False, center: bool = True, **_: object) -> None:
            super().__init__()
            self.n_fft, self.win_length = n_fft, win_length or n_fft
            self.hop_length = hop_length or self.win_length // 2
            self.normalized, self.center = normalized, center
            self.register_buffer("window", window_fn(self.win_length))

        def forward(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
            shape = spec.shape
            y = torch.istft(spec.reshape(-1, *shape[-2:]), self.n_fft, self.hop_length, self.win_length,
                            self.window, center=self.center, normalized=self.normalized, length=length)
            return y.reshape(shape[:-2] + y.shape[-1:])

    class TimeStretch(torch.nn.Module):
        def __init__(self, hop_length: int | None = None, n_freq: int = 201, fixed_rate: float | None = None):
            super().__init__()
            hop = hop_length if hop_length is not None else n_freq - 1
            self.register_buffer("phase_advance", torch.linspace(0, math.pi * hop, n_freq)[..., None])

        def forward(self, *_: object) -> torch.Tensor:  # pragma: no cover - PerTh never calls it
            raise NotImplementedError("TimeStretch stand-in: only its buffer exists")

    mod = types.ModuleType("torchaudio.transforms")
    mod.Spectrogram, mod.InverseSpectrogram, mod.TimeStretch = Spectrogram, InverseSpectrogram, TimeStretch
    return mod


def install() -> None:
    """Register the stand-ins (only for modules that are not importable for real)."""
    if importlib.util.find_spec("pkg_resources") is None and "pkg_resources" not in sys.modules:
        pkg = types.ModuleType("pkg_resources")

        def resource_filename(package: str, resource: str) -> str:
            spec = importlib.util.find_spec(package)
            assert spec is not None and spec.submodule_search_locations
            return str(Path(next(iter(spec.submodule_search_locations))) / resource)

        pkg.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = pkg
    if "torchaudio" not in sys.modules:
        ta = types.ModuleType("torchaudio")
        ta.transforms = _transforms()  # type: ignore[attr-defined]
        sys.modules["torchaudio"] = ta
        sys.modules["torchaudio.transforms"] = ta.transforms  # type: ignore[attr-defined]
