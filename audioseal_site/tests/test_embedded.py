"""The embedded PostgreSQL of the quick start and the tests: a process that found the server running never
stops it (``manage.py check`` while ``make run`` or a test session is up used to stop their server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

# Holds the server (started or found) until its standard input closes, like `make run` or a test session.
HOLDER = """
import sys
from pathlib import Path
from audioseal_site.embedded import start_postgres
print(start_postgres(Path(sys.argv[1])), flush=True)
sys.stdin.read()
"""

# Finds the server, uses it, exits: `manage.py check`. With --same-pid it first writes its own pid as the only
# user in the server's reference list: what the list says when the process that started the server had this
# pid in another PID namespace sharing the directory (or its entry was lost), so that the library's count
# would call this process the last user.
VISITOR = """
import json, os, sys
from pathlib import Path
from audioseal_site.embedded import start_postgres
data_dir = Path(sys.argv[1])
if "--same-pid" in sys.argv:
    (data_dir / ".handle_pids.json").write_text(json.dumps([os.getpid()]))
print(start_postgres(data_dir), flush=True)
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "XDG_RUNTIME_DIR")}
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")  # start_postgres' own lock and socket place, per test
    env["PYTHONPATH"] = str(ROOT)
    return env


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def _accepts_connections(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("select 1").fetchone() == (1,)
    except psycopg.Error:
        return False


@pytest.fixture
def holder(tmp_path):
    """A process holding the embedded server of ``tmp_path / 'pg'``; the server is stopped afterwards."""
    data_dir = tmp_path / "pg"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)], cwd=ROOT, env=_env(tmp_path),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    url = proc.stdout.readline().strip()
    assert url.startswith("postgres://"), "the holder did not start the server"
    yield data_dir, url
    proc.stdin.close()
    proc.wait(60)
    pid = _postmaster_pid(data_dir)
    if pid is not None:  # the holder may not have been the last user; never leave a server behind
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while _postmaster_pid(data_dir) is not None and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.mark.parametrize("visitor_args", [[], ["--same-pid"]], ids=["plain", "list-names-the-visitor-only"])
def test_a_process_that_found_the_server_running_never_stops_it(holder, tmp_path, visitor_args):
    data_dir, url = holder
    server_pid = _postmaster_pid(data_dir)
    assert server_pid is not None and _accepts_connections(url)
    visit = subprocess.run(
        [sys.executable, "-c", VISITOR, str(data_dir), *visitor_args], cwd=ROOT, env=_env(tmp_path),
        capture_output=True, text=True, timeout=120,
    )
    assert visit.returncode == 0, visit.stderr[-2000:]
    assert visit.stdout.strip() == url
    assert _postmaster_pid(data_dir) == server_pid, "the visiting process stopped a server it had not started"
    assert _accepts_connections(url)
