"""Video mode: faces matched across frames by box overlap, probabilities smoothed per track."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[int, int, int, int]


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    track_id: int
    box: Box
    probabilities: np.ndarray
    missed: int = 0
    age: int = 1


@dataclass
class FaceTracker:
    """Greedy IoU matching of detections to tracks; exponential smoothing of each track's probabilities.

    `smoothing` is the weight kept from the past (0 = no smoothing). A track not matched for more than
    `max_missed` consecutive frames is dropped, so a face that leaves loses its track and its id.
    """

    min_iou: float = 0.3
    smoothing: float = 0.6
    max_missed: int = 5
    tracks: list[Track] = field(default_factory=list)
    _next_id: int = 1

    def update(self, boxes: list[Box], probabilities: np.ndarray) -> list[Track]:
        """Feed one frame's detections; returns the track of each detection, in the same order."""
        pairs = sorted(
            ((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
            reverse=True,
        )
        assigned: dict[int, Track] = {}
        used_tracks: set[int] = set()
        for overlap, ti, bi in pairs:
            if overlap < self.min_iou:
                break
            if ti in used_tracks or bi in assigned:
                continue
            track = self.tracks[ti]
            track.box = boxes[bi]
            track.probabilities = self.smoothing * track.probabilities + (1 - self.smoothing) * probabilities[bi]
            track.missed = 0
            track.age += 1
            assigned[bi] = track
            used_tracks.add(ti)
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for bi, box in enumerate(boxes):
            if bi not in assigned:
                track = Track(self._next_id, box, np.asarray(probabilities[bi], dtype=np.float32).copy())
                self._next_id += 1
                self.tracks.append(track)
                assigned[bi] = track
        return [assigned[bi] for bi in range(len(boxes))]

    def reset(self) -> None:
        self.tracks.clear()
