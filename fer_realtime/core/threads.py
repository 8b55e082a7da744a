"""How many threads one network call may use: all the CPUs, unless the process shares them with others."""

from __future__ import annotations

import os

THREADS_ENV = "FER_REALTIME_THREADS"


def compute_threads(default: int | None = None) -> int:
    """`$FER_REALTIME_THREADS` when set (a process among several on one machine, such as a Ray worker, sets it to
    its share of the cores), else `default`, else the CPU count."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return default or os.cpu_count() or 1
