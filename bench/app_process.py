"""app.py in a subprocess for the benchmarks, and what /proc says about a process (RSS, CPU).

psutil is not installed, so memory and CPU come from /proc (Linux).
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import PYTHON, REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / VmSize of a process in bytes (from /proc; psutil is not installed)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "VmSize", "Threads"):
                    parts = value.split()
                    out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    except FileNotFoundError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_rss(pid: int) -> int:
    """RSS of a process plus its children (the app may start helpers)."""
    total = proc_status(pid).get("VmRSS", 0)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        total += tree_rss(int(child))
    return total


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the bench dies (Linux), so a killed or
    timed-out bench leaves no app running."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class AppProcess:
    """app.py in a subprocess, its log in a file; stopped with SIGINT, then SIGKILL."""

    def __init__(self, args: list[str], log_path: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        self.log = open(log_path, "wb")
        full_env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
                        PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen([PYTHON, str(REPO / "app.py"), *args, "--port",
                                      str(self.port)], cwd=str(REPO), env=full_env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        self.started = time.perf_counter()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 600.0, sample: Callable[[], None] | None = None) -> float:
        """Seconds until the server answers HTTP; raises if the process dies or times out."""
        import urllib.error
        import urllib.request
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sample:
                sample()
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}; log:\n"
                                   + self.tail())
            try:
                with urllib.request.urlopen(self.url + "config", timeout=2):
                    return time.perf_counter() - self.started
            except urllib.error.HTTPError as exc:  # 401 behind a login: the app is up;
                if exc.code != 503:                # 503: still starting (hitl/starting.py)
                    return time.perf_counter() - self.started
                time.sleep(0.25)
            except Exception:
                time.sleep(0.25)
        raise TimeoutError(f"app.py not ready after {timeout} s; log:\n" + self.tail())

    def first_answers(self, paths: Sequence[str], timeout: float = 300.0,
                      every: float = 0.02) -> dict[str, float]:
        """Seconds from the start to each path's first 200, polled together every `every` s."""
        import urllib.request
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while len(seen) < len(paths) and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}; log:\n"
                                   + self.tail())
            for path in paths:
                if path in seen:
                    continue
                try:
                    with urllib.request.urlopen(self.url + path, timeout=2) as answer:
                        if answer.status == 200:
                            seen[path] = time.perf_counter() - self.started
                except Exception:
                    pass
            time.sleep(every)
        if len(seen) < len(paths):
            raise TimeoutError(f"app.py: {set(paths) - set(seen)} not answered after "
                               f"{timeout} s; log:\n" + self.tail())
        return seen

    def tail(self, n: int = 4000) -> str:
        if not self.log.closed:
            self.log.flush()
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        if self.log.closed and self.proc.poll() is not None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
