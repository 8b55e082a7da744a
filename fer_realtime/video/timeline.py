"""The per-face emotion timeline of a video or a live stream: one row per face per frame, as a CSV and as
summaries (the mean probabilities over time, each face's share of time per emotion)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

import numpy as np


def timeline_columns(classes) -> list[str]:
    """frame, time_s, track_id, x, y, w, h, label (as shown: "uncertain" below the bar), confidence, the classes."""
    return ["frame", "time_s", "track_id", "x", "y", "w", "h", "label", "confidence", *classes]


def face_row(frame: int, time_s: float, face, classes) -> dict:
    x, y, w, h = face.box
    return {"frame": frame, "time_s": round(time_s, 4), "track_id": face.track_id, "x": x, "y": y, "w": w, "h": h,
            "label": getattr(face, "shown_label", face.label), "confidence": round(face.confidence, 4),
            **{c: round(face.scores[c], 4) for c in classes}}


def write_timeline(handle, rows: Iterable[dict], classes) -> None:
    table = csv.DictWriter(handle, fieldnames=timeline_columns(classes))
    table.writeheader()
    table.writerows(rows)


def timeline_csv(rows: Iterable[dict], classes) -> bytes:
    """The timeline as CSV bytes (UTF-8), with its header even when there is no row."""
    text = io.StringIO(newline="")
    write_timeline(text, rows, classes)
    return text.getvalue().encode()


def emotion_shares_over_time(timeline: list[dict], classes, video_fps: float, bin_seconds: float = 1.0):
    """Mean score of each class over all faces, per time bin: {'time_s': [...], class: [...]} for a line chart.

    Bins hold whole frames (round(bin_seconds * fps) of them), counted by frame index; time_s is a bin's start.
    """
    if not timeline:
        return {"time_s": [], **{c: [] for c in classes}}
    bin_frames = max(1, round(bin_seconds * video_fps))
    bins: dict[int, list[dict]] = {}
    for row in timeline:
        bins.setdefault(int(row["frame"]) // bin_frames, []).append(row)
    keys = sorted(bins)
    chart = {"time_s": [k * bin_frames / video_fps for k in keys]}
    for c in classes:
        chart[c] = [float(np.mean([r[c] for r in bins[k]])) for k in keys]
    return chart


def label_shares_per_track(timeline: Iterable[dict]) -> dict[int, dict[str, float]]:
    """Each face (track id) -> the share of its rows shown with each label (the labels it had, summing to 1)."""
    counts: dict[int, dict[str, int]] = {}
    for row in timeline:
        labels = counts.setdefault(int(row["track_id"]), {})
        labels[row["label"]] = labels.get(row["label"], 0) + 1
    return {track: {label: n / sum(labels.values()) for label, n in sorted(labels.items(), key=lambda kv: -kv[1])}
            for track, labels in sorted(counts.items())}


def shares_by_time(timeline: Iterable[dict], classes, bin_seconds: float, track: int | None = None) -> dict:
    """Mean score of each class per time bin of `bin_seconds` (by time_s), over all faces or one track's:
    {'time_s': [...], class: [...]} for a line chart."""
    bins: dict[int, list[dict]] = {}
    for row in timeline:
        if track is None or int(row["track_id"]) == track:
            bins.setdefault(int(float(row["time_s"]) // bin_seconds), []).append(row)
    keys = sorted(bins)
    chart = {"time_s": [k * bin_seconds for k in keys]}
    for c in classes:
        chart[c] = [float(np.mean([r[c] for r in bins[k]])) for k in keys]
    return chart
