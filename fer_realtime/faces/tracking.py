"""Video mode: faces matched across frames by box overlap, probabilities smoothed per track."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .boxes import Box, box_iou

DETECTED, PREDICTED, COASTED = "detected", "predicted", "coasted"  # where a box fed to FaceTracker.update came from


@dataclass
class Track:
    track_id: int
    box: Box
    probabilities: np.ndarray
    missed: int = 0
    age: int = 1
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre motion in pixels per frame, from detections
    frames_since_detection: int = 0
    detected_box: Box | None = None  # the last box that came from the detector
    angle: float = 0.0  # the face's tilt (degrees) at its last detection, for turning predicted crops upright

    def __post_init__(self):
        if self.detected_box is None:
            self.detected_box = self.box

    def predicted_box(self, width: int, height: int) -> Box:
        """The box moved one frame further at its velocity, kept inside a width x height frame."""
        x, y, w, h = self.box
        x = int(round(min(max(x + self.velocity[0], 0), max(0, width - w))))
        y = int(round(min(max(y + self.velocity[1], 0), max(0, height - h))))
        return x, y, w, h


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

    def update(self, boxes: list[Box], probabilities: np.ndarray, kinds=None) -> list[Track]:
        """Feed one frame's boxes; returns the track of each box, in the same order.

        `kinds` says where each box came from (default: all DETECTED). PREDICTED boxes (frames without detection)
        and COASTED boxes (an established face the detector missed in this frame) move their track and update
        its probabilities but not its velocity; a coasted track also counts the frame as missed.
        """
        kinds = [DETECTED] * len(boxes) if kinds is None else list(kinds)
        pairs = sorted(
            ((box_iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
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
            track.frames_since_detection += 1
            if kinds[bi] == DETECTED:
                old, new, steps = track.detected_box, boxes[bi], track.frames_since_detection
                vx = (new[0] + new[2] / 2 - old[0] - old[2] / 2) / steps
                vy = (new[1] + new[3] / 2 - old[1] - old[3] / 2) / steps
                # Half-and-half with the previous estimate: detector jitter would otherwise shake predicted boxes.
                track.velocity = (0.5 * (track.velocity[0] + vx), 0.5 * (track.velocity[1] + vy))
                track.detected_box = new
                track.frames_since_detection = 0
            track.box = boxes[bi]
            track.probabilities = self.smoothing * track.probabilities + (1 - self.smoothing) * probabilities[bi]
            if kinds[bi] == DETECTED:
                track.missed = 0
            elif kinds[bi] == COASTED:
                track.missed += 1
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
