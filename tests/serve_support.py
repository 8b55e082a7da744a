"""What the model-server tests and benchmarks/serve_throughput.py share: a free port, and the processes of one
`fer-realtime serve`'s own Ray instance (so that only they are stopped, never another Ray instance's)."""

from __future__ import annotations

import socket
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
