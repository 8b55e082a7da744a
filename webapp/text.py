"""Figures as the page writes them."""

from __future__ import annotations

import time


def percent(value, missing: str = "–") -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else missing


def duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def clock_time(stamp) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if isinstance(stamp, (int, float)) else "?"
