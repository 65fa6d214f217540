"""Shared helpers for the test environment: ports, readiness polling, process control."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class TestenvError(RuntimeError):
    """A server could not be started or stopped; the message says which and why."""

    __test__ = False  # not a pytest test class


# Listening ports come from below the kernel's ephemeral range (32768-60999 by default):
# a port the kernel hands out as ephemeral can be taken, between our check and the server's
# bind, by the source port of any outgoing connection (etcd clients, mon sessions, ...).
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def reserve_port(port: int) -> None:
    """Never hand out ``port`` (a server binds it by itself, such as OpenBao's port + 1)."""
    with _handed_out_lock:
        _handed_out.add(port)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now and not handed out before."""
    low, high = _PORT_RANGE
    for _ in range(1000):
        port = random.randrange(low, high)
        with _handed_out_lock:
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    raise TestenvError(f"no free TCP port on 127.0.0.1 in {low}-{high}")


def require_free(port: int, what: str) -> None:
    """Fail with a clear message when ``port`` on 127.0.0.1 is already taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise TestenvError(f"{what}: port 127.0.0.1:{port} is busy ({exc.strerror})") from exc


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``ready`` (a real request to the server) until it is true.

    Fails early when ``process`` exits, and on timeout; the error names the server and quotes
    the tail of its log.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if process is not None and process.poll() is not None:
            raise TestenvError(
                f"{what} exited with code {process.returncode} before it was ready{log_tail(log)}"
            )
        try:
            if ready():
                return
        except Exception:  # noqa: S110 - any failure of the probe means "not yet"
            pass
        if time.monotonic() > deadline:
            raise TestenvError(f"{what} not ready after {timeout:.0f} s{log_tail(log)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def log_tail(log: Path | None, lines: int = 8) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"; last lines of {log}:\n  " + "\n  ".join(tail) if tail else ""


def spawn(
    argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a server in its own process group, stdout and stderr to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def stop_pid(pid: int, *, timeout: float = 10.0) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL if it lingers. Missing is fine."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); reap it if it is ours
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Server:
    """A started server process: what it is, its pid and its log."""

    name: str
    pid: int
    log: Path


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line or environment mentions ``text``.

    The safety net of ``testenv/down``: every server we start names its data folder in its
    arguments or environment, so a process restarted behind our back (a mon restarted by a test)
    is still found.
    """
    needle = text.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (
                needle in (entry / "cmdline").read_bytes()
                or needle in (entry / "environ").read_bytes()
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if pid_alive(pid)]


def sweep(text: str) -> list[int]:
    """Stop every process that mentions ``text`` (see ``processes_mentioning``)."""
    pids = processes_mentioning(text)
    for pid in pids:
        stop_pid(pid, timeout=5.0)
    return pids
