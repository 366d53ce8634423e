"""The quick start's supervisor with small programs: restarts with a growing backoff and says why, resets the
backoff once a program ran long enough, and stops children that ignore SIGTERM."""

from __future__ import annotations

import sys

from audioseal_site.supervisor import Program, Supervisor, describe_exit
from testing.assertions import wait_until


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_crashing_program_is_restarted_with_a_doubling_backoff():
    said: list[str] = []
    crasher = Program("crasher", python("raise SystemExit(3)"))
    steady = Program("steady", python("import time; time.sleep(60)"))
    sup = Supervisor([crasher, steady], backoff_initial=0.05, backoff_max=0.2, stable_after=30,
                     poll_interval=0.01, say=said.append)
    sup.start()
    steady_pid = steady.proc.pid
    try:
        wait_until(lambda: (sup.check(), crasher.restarts >= 4)[1], timeout=30, interval=0.01,
                   what="four restarts")
        assert steady.proc.pid == steady_pid and steady.proc.poll() is None  # the others are not touched
        exits = [line for line in said if line.startswith("crasher (pid")]
        assert all("exit code 3" in line for line in exits)
        assert [line.rsplit("restarting in ", 1)[1] for line in exits[:4]] == ["0.05 s", "0.1 s", "0.2 s", "0.2 s"]
        assert any(line.startswith("crasher restarted (pid") for line in said)
    finally:
        sup.stop()
    assert steady.proc.returncode == -15 and sup.pids() == {"crasher": None, "steady": None}


def test_the_backoff_starts_over_after_a_stable_run():
    said: list[str] = []
    program = Program("p", python("import time; time.sleep(0.3); raise SystemExit(1)"))
    sup = Supervisor([program], backoff_initial=0.05, stable_after=0.2, poll_interval=0.01, say=said.append)
    sup.start()
    try:
        wait_until(lambda: (sup.check(), program.restarts >= 2)[1], timeout=30, interval=0.01, what="restarts")
    finally:
        sup.stop()
    assert all(line.endswith("restarting in 0.05 s") for line in said if "exit code 1" in line)


def test_stop_kills_what_ignores_sigterm(tmp_path):
    ready = tmp_path / "ready"
    stubborn = Program("stubborn", python(
        "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    ))
    said: list[str] = []
    sup = Supervisor([stubborn], stop_timeout=0.5, say=said.append)
    sup.start()
    wait_until(ready.exists, timeout=30, what="the program to ignore SIGTERM")
    sup.stop()
    assert stubborn.proc.returncode == -9 and "did not stop: killing it" in said[-1]


def test_exit_descriptions():
    assert describe_exit(-9) == "killed by SIGKILL" and describe_exit(2) == "exit code 2"
