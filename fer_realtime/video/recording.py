"""A live stream's record: every processed frame's faces (time, track id, box, label, confidence, all scores) in
a bounded ring of numpy rows, written by the frame callback's thread and read by the page's.

Memory: one face row takes ROW_BYTES (65 bytes with seven classes); the default ring holds MAX_ROWS = 216,000 rows,
30 minutes at 30 frames/s with four faces in view (13.4 MiB when full). Rows are allocated CHUNK_ROWS at a time;
when the ring is full the oldest chunk goes, so a longer stream keeps its last 30 minutes or more.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

import numpy as np

from .timeline import timeline_csv

MAX_ROWS = 30 * 60 * 30 * 4
CHUNK_ROWS = 4096
UNCERTAIN_INDEX = -1  # the label index stored for a face shown as "uncertain"


def _row_dtype(classes: int) -> np.dtype:
    return np.dtype([("frame", "<u4"), ("time_s", "<f8"), ("track_id", "<i4"), ("box", "<i4", (4,)),
                     ("label", "i1"), ("confidence", "<f4"), ("scores", "<f4", (classes,))])


ROW_BYTES = _row_dtype(7).itemsize


class FaceRecording:
    """The faces of consecutive frames of one stream, oldest rows dropped beyond `max_rows`. Thread-safe.

    >>> recording = FaceRecording(classes)
    >>> recording.add(result.faces)          # after each processed frame (the time is taken here)
    >>> recording.rows(), recording.csv()    # timeline rows as `video --csv` writes them
    """

    def __init__(self, classes: Sequence[str], max_rows: int = MAX_ROWS, chunk_rows: int = CHUNK_ROWS,
                 clock=time.monotonic):
        if max_rows < chunk_rows:
            raise ValueError(f"max_rows ({max_rows}) must be at least chunk_rows ({chunk_rows})")
        self.classes = tuple(classes)
        self.max_rows, self.chunk_rows = int(max_rows), int(chunk_rows)
        self._dtype = _row_dtype(len(self.classes))
        self._clock = clock
        self._lock = threading.Lock()
        self._chunks: deque[np.ndarray] = deque()
        self._filled = 0  # rows used in the newest chunk
        self._started: float | None = None
        self._last_time = 0.0
        self.frames = 0  # frames recorded, with or without faces
        self.dropped_rows = 0  # rows that left the ring

    def add(self, faces: Sequence, now: float | None = None) -> None:
        """Record one processed frame's faces (FaceResults with track ids), at `now` (default: the clock)."""
        now = self._clock() if now is None else now
        with self._lock:
            if self._started is None:
                self._started = now
            elapsed = now - self._started
            for face in faces:
                row = self._next_row()
                row["frame"], row["time_s"], row["track_id"] = self.frames, elapsed, face.track_id or 0
                row["box"] = face.box
                row["label"] = UNCERTAIN_INDEX if getattr(face, "uncertain", False) else \
                    self.classes.index(face.label)
                row["confidence"] = face.confidence
                row["scores"] = [face.scores[c] for c in self.classes]
            self.frames += 1
            self._last_time = elapsed

    def _next_row(self) -> np.ndarray:
        if not self._chunks or self._filled == self.chunk_rows:
            if (len(self._chunks) + 1) * self.chunk_rows > self.max_rows:
                self.dropped_rows += self.chunk_rows
                self._chunks.popleft()
            self._chunks.append(np.zeros(self.chunk_rows, dtype=self._dtype))
            self._filled = 0
        self._filled += 1
        return self._chunks[-1][self._filled - 1 : self._filled]

    def _array(self) -> np.ndarray:
        with self._lock:
            if not self._chunks:
                return np.zeros(0, dtype=self._dtype)
            parts = list(self._chunks)
            parts[-1] = parts[-1][: self._filled]
            return np.concatenate(parts)

    @property
    def face_rows(self) -> int:
        with self._lock:
            return max(0, len(self._chunks) - 1) * self.chunk_rows + self._filled if self._chunks else 0

    @property
    def duration_s(self) -> float:
        return self._last_time

    @property
    def memory_bytes(self) -> int:
        return len(self._chunks) * self.chunk_rows * self._dtype.itemsize

    def rows(self) -> list[dict]:
        """The recorded faces as timeline rows (timeline.timeline_columns), oldest first."""
        data = self._array()
        labels = [*self.classes, "uncertain"]  # index -1 is the last
        rows = []
        for frame, t, track, box, label, confidence, scores in zip(
                data["frame"].tolist(), data["time_s"].tolist(), data["track_id"].tolist(), data["box"].tolist(),
                data["label"].tolist(), data["confidence"].tolist(), data["scores"].tolist()):
            rows.append({"frame": frame, "time_s": round(t, 4), "track_id": track, "x": box[0], "y": box[1],
                         "w": box[2], "h": box[3], "label": labels[label], "confidence": round(confidence, 4),
                         **{c: round(s, 4) for c, s in zip(self.classes, scores)}})
        return rows

    def csv(self) -> bytes:
        return timeline_csv(self.rows(), self.classes)
