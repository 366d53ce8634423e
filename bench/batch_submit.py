"""Submission cost of a batch against one request per file, and of input by URL against an upload.

    python -m bench.batch_submit [--items 20] [--rounds 5]

Starts its own PostgreSQL and Redis under ``var/bench/batch-<time>`` (``bench.run.setup_django``), one tenant
with room for everything, and drives the API in-process (DRF's test client: no HTTP server, so the figures
are the application's own cost). Each round, alternating so machine load hits them alike: ``--items`` 1 s WAV
detections as that many single POSTs, the same files as ONE ``POST /api/v1/batches``, and the same count of
single POSTs with ``file_url`` on a local HTTPS server (real TLS, the production fetch code). Reported: the
fastest and the median round, in milliseconds per item. No worker runs; jobs stay queued. Not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.models import REPO


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    from bench.run import machine_info, setup_django

    run_dir = REPO / "var" / "bench" / f"batch-{time.strftime('%Y%m%d-%H%M%S')}"
    setup_django(run_dir)

    import socket

    from django.conf import settings
    from django.core.files.uploadedfile import SimpleUploadedFile
    from rest_framework.test import APIClient

    from accounts import services as accounts
    from billing import services as billing
    from testing.https_files import HOST, HTTPSFileServer, Route
    from testing.uploads import tone_wav_bytes

    tenant = accounts.create_tenant("Bench batches")
    billing.change_subscription(tenant, plan="enterprise", overrides={
        "max_concurrent_jobs": 100_000, "included_minutes": 10_000_000, "rate_limits": {"default": 10**9,
                                                                                        "watermark": 10**9},
    })
    client = APIClient(SERVER_NAME="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {accounts.issue_api_key(tenant, 'bench').secret}")

    server = HTTPSFileServer(Path(tempfile.mkdtemp())).start()
    real_getaddrinfo = socket.getaddrinfo
    socket.getaddrinfo = lambda host, port, *a, **k: (  # the test host name, as testing.dns does
        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))] if host == HOST
        else real_getaddrinfo(host, port, *a, **k)
    )
    settings.FILE_URL_ALLOWED_HOSTS = [HOST]
    settings.FILE_URL_CA_BUNDLE = str(server.cert)
    clip = tone_wav_bytes(1.0)
    server.routes["/clip.wav"] = Route(body=clip)

    def files() -> list[SimpleUploadedFile]:
        return [SimpleUploadedFile(f"clip-{i}.wav", clip) for i in range(args.items)]

    def singles() -> None:
        for upload in files():
            response = client.post("/api/v1/watermark/detect", {"file": upload}, format="multipart")
            assert response.status_code == 202, response.content

    def batch() -> None:
        response = client.post("/api/v1/batches", {"kind": "watermark_detect", "file": files()}, format="multipart")
        assert response.status_code == 202 and response.json()["counts"]["accepted"] == args.items, response.content

    def by_url() -> None:
        for _ in range(args.items):
            response = client.post("/api/v1/watermark/detect", {"file_url": server.url("/clip.wav")},
                                   format="multipart")
            assert response.status_code == 202, response.content

    ways = {"single uploads": singles, "one batch": batch, "single file_url": by_url}
    for way in ways.values():  # warm-up: connections, caches
        way()
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            times[name].append((time.perf_counter() - started) * 1000 / args.items)
    server.stop()
    result = {
        "machine": machine_info(),
        "items": args.items,
        "rounds": args.rounds,
        "ms_per_item": {name: {"fastest": round(min(t), 2), "median": round(statistics.median(t), 2)}
                        for name, t in times.items()},
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
