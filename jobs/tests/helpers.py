"""Shared test helpers for job endpoints: uploads, a real in-process worker, and the bad-input checks
that every job-creating endpoint must pass (watermark, emotion, …) — reused, not copied."""

from __future__ import annotations

import io
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from media_ops.tests import FIXTURES

__all__ = [
    "FIXTURES", "upload", "run_worker", "redis_clean", "stored_files", "BAD_AUDIO_CASES", "bad_audio_upload",
    "assert_error", "tone_wav_bytes", "wait_until",
]


def upload(name: str, *, as_name: str | None = None, content: bytes | None = None) -> SimpleUploadedFile:
    data = content if content is not None else (FIXTURES / name).read_bytes()
    return SimpleUploadedFile(as_name or name, data)


@pytest.fixture
def redis_clean(settings):
    """A clean Redis for tests that enqueue: queues, registries and rate-limit counters start empty."""
    import django_rq

    connection = django_rq.get_connection("watermark")
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture
def run_worker(redis_clean):
    """Run the real worker code (PoolWorker, real Redis) in-process until the queues are empty."""
    from jobs.worker.rq_worker import build_worker, default_queues

    def run(queues: list[str] | None = None) -> None:
        worker = build_worker(queues or default_queues())
        worker.work(burst=True, logging_level="WARNING")

    return run


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "", interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout`` seconds.

    A deadline for an event, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def stored_files(media_root: Path) -> list[Path]:
    return sorted(p for p in Path(media_root).rglob("*") if p.is_file())


def tone_wav_bytes(seconds: float, rate: int = 16_000) -> bytes:
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _truncated_wav() -> bytes:
    data = tone_wav_bytes(2.0)
    return data[: len(data) // 3]


def _long_flac_bytes(hours: float = 3.0) -> bytes:
    """A small FLAC file (silence) that decodes to hours: a decompression bomb for duration limits."""
    import numpy as np
    import soundfile as sf

    rate = 8000
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=rate, channels=1, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros(rate * 60, dtype=np.int16)
        for _ in range(int(hours * 60)):
            f.write(block)
    return buf.getvalue()


# name -> (file name, bytes factory, expected status, expected code)
BAD_AUDIO_CASES = {
    "empty": ("empty.wav", lambda: b"", 400, "EMPTY_FILE"),
    "text_named_wav": ("notes.wav", lambda: b"this is not audio at all\n" * 40, 415, "INVALID_FORMAT"),
    "truncated_wav": ("cut.wav", _truncated_wav, 415, "INVALID_FORMAT"),
    "too_long_bomb": ("long.flac", _long_flac_bytes, 422, "AUDIO_TOO_LONG"),
}


def bad_audio_upload(case: str) -> tuple[SimpleUploadedFile, int, str]:
    name, factory, status, code = BAD_AUDIO_CASES[case]
    return SimpleUploadedFile(name, factory()), status, code


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, getattr(response, "data", response.content))
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


def worker_env(media_root: Path) -> dict[str, str]:
    """Environment for a worker subprocess that must use this test session's database, Redis and media."""
    import os

    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@/{db['NAME']}?host={db['HOST']}",
        REDIS_URL=settings.REDIS_URL,
        MEDIA_ROOT=str(media_root),
        VAR_DIR=str(settings.VAR_DIR),
        EMBEDDED_SERVICES="false",
        MODEL_THREADS="1",
    )
    return env


@pytest.fixture
def worker_process(redis_clean, _isolated_media, tmp_path):
    """Start real ``manage.py run_worker`` processes; they are stopped (SIGTERM, then SIGKILL) at teardown.

    Each worker's output goes to ``tmp_path/worker-<n>.log`` (a pipe nobody reads would block a chatty worker).
    """
    import subprocess
    import sys

    from django.conf import settings

    procs: list[subprocess.Popen] = []
    logs = []

    def start(*args: str) -> subprocess.Popen:
        logs.append(open(tmp_path / f"worker-{len(procs)}.log", "wb"))  # noqa: SIM115 - closed at teardown
        proc = subprocess.Popen(
            [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "run_worker", *args],
            env=worker_env(_isolated_media),
            stdout=logs[-1],
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for log in logs:
        log.close()


__all__ += ["worker_env", "worker_process"]
