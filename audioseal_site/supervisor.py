"""The quick start's process supervisor: keeps the web server, the worker and the scheduler running.

A child that exits (crash, ``kill -9``, an out-of-memory kill) is started again after a backoff (1 s, doubling
up to 30 s while it keeps dying young, back to 1 s once it has run ``stable_after`` seconds), and the
supervisor says so on its output with the reason (exit code or signal). The other children and the
databases (owned by the supervisor's process, ``audioseal_site.embedded``) are not touched.

Each child runs in its own process group, so Ctrl-C in the terminal reaches the supervisor only, which then
stops the children in order (SIGTERM; the worker finishes or requeues its job) and waits for them; a second
Ctrl-C kills what is left. On Linux a child also gets SIGTERM if the supervisor itself is killed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def describe_exit(returncode: int) -> str:
    """``exit code 1``, ``killed by SIGKILL``…"""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


if sys.platform.startswith("linux"):
    import ctypes

    _libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only calls it
    _PR_SET_PDEATHSIG = 1

    def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)  # SIGTERM when the supervisor dies
else:  # pragma: no cover
    _child_setup = None


@dataclass
class Program:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 0.0
    restart_at: float | None = None  # when a crashed program is due to start again


class Supervisor:
    def __init__(
        self,
        programs: list[Program],
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        stable_after: float = 30.0,
        stop_timeout: float = 30.0,
        poll_interval: float = 0.2,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.programs = programs
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval
        self.say = say or (lambda text: print(f"[supervisor] {text}", flush=True))
        self.stopping = False
        self.killing = False

    # --- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        for program in self.programs:
            self._spawn(program)

    def run(self) -> None:
        """Supervise until SIGINT/SIGTERM, then stop every child; returns when they are gone."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self.stopping:
                self.check()
                time.sleep(self.poll_interval)
            self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum, _frame) -> None:
        if self.stopping:
            self.killing = True  # a second Ctrl-C: do not wait any longer
        self.stopping = True

    def check(self) -> None:
        """One supervision step: notice exits, restart what is due."""
        now = time.monotonic()
        for program in self.programs:
            proc = program.proc
            if proc is not None and proc.poll() is not None:
                self._exited(program, proc, now)
            if program.proc is None and program.restart_at is not None and now >= program.restart_at:
                program.restart_at = None
                program.restarts += 1
                self._spawn(program)
                self.say(f"{program.name} restarted (pid {program.proc.pid}, restart {program.restarts})")

    def _exited(self, program: Program, proc: subprocess.Popen, now: float) -> None:
        ran = now - program.started_at
        if ran >= self.stable_after or program.backoff == 0:
            program.backoff = self.backoff_initial
        else:
            program.backoff = min(self.backoff_max, program.backoff * 2)
        program.proc = None
        program.restart_at = now + program.backoff
        self.say(
            f"{program.name} (pid {proc.pid}) {describe_exit(proc.returncode)} after {ran:.1f} s; "
            f"restarting in {program.backoff:g} s"
        )

    def _spawn(self, program: Program) -> None:
        # Its own process group: the terminal's Ctrl-C reaches the supervisor, which stops the children in
        # order. (The supervisor runs no threads when it spawns, so the pre-exec hook is safe.)
        program.proc = subprocess.Popen(
            program.argv, env=program.env, cwd=program.cwd, process_group=0, preexec_fn=_child_setup
        )
        program.started_at = time.monotonic()

    def stop(self) -> None:
        """SIGTERM to every child, in order; wait up to ``stop_timeout`` (or a second signal); then SIGKILL."""
        self.stopping = True
        running = [p for p in self.programs if p.proc is not None and p.proc.poll() is None]
        for program in running:
            program.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for program in running:
            while program.proc.poll() is None and time.monotonic() < deadline and not self.killing:
                time.sleep(0.1)
        for program in running:
            if program.proc.poll() is None:
                self.say(f"{program.name} (pid {program.proc.pid}) did not stop: killing it")
                program.proc.kill()
                program.proc.wait()

    def pids(self) -> dict[str, int | None]:
        return {p.name: (p.proc.pid if p.proc is not None and p.proc.poll() is None else None) for p in self.programs}
