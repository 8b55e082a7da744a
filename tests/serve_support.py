"""What the Ray tests (model server, videos on a cluster) and benchmarks/serve_throughput.py share: a free port,
and the processes of one Ray instance started with its own session folder (so that only they are stopped, never
another Ray instance's)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def session_processes(ray_dir: str) -> set[int]:
    """Processes of the server's own Ray instance: those naming its session folder, and their children (the
    raylet's workers: Serve's controller, proxy and replicas)."""
    named, parents = set(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if ray_dir.encode() in (entry / "cmdline").read_bytes():
                named.add(int(entry.name))
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return named | {pid for pid, parent in parents.items() if parent in named}


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie counts as gone)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_session(process: subprocess.Popen, ray_dir: str, timeout: float = 30) -> set[int]:
    """SIGTERM to the process group of `process` (started with start_new_session; SIGKILL if it lingers), then
    wait for the Ray processes of its session folder to go, killing those left after `timeout`. Returns their ids."""
    pids = session_processes(ray_dir)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in pids | session_processes(ray_dir):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    return pids
