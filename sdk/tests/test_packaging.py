"""The SDK is a pip-installable distribution: its wheel builds offline (with the environment's setuptools),
holds the package and its ``py.typed`` marker, declares the ``studio`` console script and the dependencies,
and nothing of the server."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_builds_offline_with_the_cli_entry_point(tmp_path):
    source = tmp_path / "sdk"  # a copy: setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(SDK, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path), str(source)],
        check=True, timeout=120,
    )
    (wheel,) = tmp_path.glob("audioseal_studio-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(archive.read(n).decode() for n in names if n.endswith("METADATA"))
    assert "audioseal_studio/client.py" in names and "audioseal_studio/py.typed" in names
    assert not [n for n in names if n.split("/")[0] in {"jobs", "billing", "accounts", "core", "tests"}]
    assert "studio = audioseal_studio.cli:main" in entry_points
    for requirement in ("httpx", "pydantic", "typer", "rich"):
        assert f"Requires-Dist: {requirement}" in metadata
