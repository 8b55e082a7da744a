"""The frame processor for live video: detect, classify in one batch, track, smooth, draw."""

from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple

import numpy as np

from .drawing import draw_faces
from .recognizer import EmotionRecognizer, FaceResult, results_from_probabilities
from .tracking import FaceTracker


class FrameResult(NamedTuple):
    faces: list[FaceResult]  # smoothed per track; track_id set
    image: np.ndarray  # the annotated BGR frame
    ms: float  # processing time of this frame (detection + classification + tracking + drawing)


class FrameStats(NamedTuple):
    fps: float  # frames processed per second of wall time, over the recent window
    ms_median: float
    faces: int
    frames: int


class VideoProcessor:
    """Processes consecutive frames of one stream; faces keep ids and labels do not flicker."""

    def __init__(self, recognizer: EmotionRecognizer, window: int = 60, **tracker_options):
        self.recognizer = recognizer
        self.tracker = FaceTracker(**tracker_options)
        self._ms = deque(maxlen=window)
        self._stamps = deque(maxlen=window)
        self._last_faces = 0
        self.frames = 0

    def process(self, frame_bgr: np.ndarray, draw: bool = True) -> FrameResult:
        start = time.perf_counter()
        rec = self.recognizer
        boxes = rec.detect(frame_bgr)
        probabilities = rec.classify_boxes(frame_bgr, boxes)
        tracks = self.tracker.update(boxes, probabilities)
        faces = results_from_probabilities(
            boxes, [t.probabilities for t in tracks], rec.classes, track_ids=[t.track_id for t in tracks]
        )
        image = draw_faces(frame_bgr, faces) if draw else frame_bgr
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self._ms.append(elapsed_ms)
        self._stamps.append(time.perf_counter())
        self._last_faces = len(faces)
        self.frames += 1
        return FrameResult(faces=faces, image=image, ms=elapsed_ms)

    def stats(self) -> FrameStats:
        fps = 0.0
        if len(self._stamps) > 1 and self._stamps[-1] > self._stamps[0]:
            fps = (len(self._stamps) - 1) / (self._stamps[-1] - self._stamps[0])
        ms = float(np.median(self._ms)) if self._ms else 0.0
        return FrameStats(fps=fps, ms_median=ms, faces=self._last_faces, frames=self.frames)

    def reset(self) -> None:
        self.tracker.reset()
        self._ms.clear()
        self._stamps.clear()
        self.frames = 0
