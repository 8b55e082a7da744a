"""The frame processor for live video: detect, classify in one batch, track, smooth, draw."""

from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple

import numpy as np

from ..faces.drawing import draw_faces
from ..faces.boxes import box_iou
from ..faces.tracking import COASTED, DETECTED, PREDICTED, FaceTracker
from ..inference.analyzer import FaceAnalyzer
from ..inference.results import FaceResult, results_from_probabilities


class FrameTimings(NamedTuple):
    """Where one frame's processing time went, in ms."""

    detect: float = 0.0  # face detection (0 on frames whose boxes come from the tracks)
    crop: float = 0.0  # cutting out, turning upright and normalising the faces
    model: float = 0.0  # the model call (with a shared batching classifier: the wait for the batch too)
    track: float = 0.0  # matching faces to tracks, smoothing, results
    draw: float = 0.0


class FrameResult(NamedTuple):
    faces: list[FaceResult]  # smoothed per track; track_id set
    image: np.ndarray  # the annotated BGR frame
    ms: float  # processing time of this frame (detection + classification + tracking + drawing)
    timings: FrameTimings = FrameTimings()


class FrameStats(NamedTuple):
    fps: float  # frames processed per second of wall time, over the recent window
    ms_median: float  # processing time per frame over the recent window: median and 90th percentile
    faces: int
    frames: int
    ms_p90: float = 0.0


# Frames per detection in video mode, per detector, when the caller does not choose: haar costs ~10x mediapipe,
# so it detects every 3rd frame and the boxes in between are predicted from each track's motion (faces found on
# the benchmark's moving clip did not drop; see `fer-realtime bench`).
DEFAULT_DETECT_EVERY = {"haar": 3, "mediapipe": 1}

# How much of a face's past probabilities each frame keeps (FaceTracker.smoothing), by name. Measured on a steady
# face and on a change of expression (benchmarks/smoothing.py, README "Smoothing"): "normal" keeps labels steady
# and follows a change within a few frames.
SMOOTHING = {"off": 0.0, "light": 0.6, "normal": 0.8, "strong": 0.9}
DEFAULT_SMOOTHING = "normal"


def smoothing_weight(smoothing: str | float) -> float:
    """A SMOOTHING name, or a weight in [0, 1), as the weight kept from the past."""
    if isinstance(smoothing, str):
        if smoothing not in SMOOTHING:
            raise ValueError(f"smoothing must be one of {', '.join(SMOOTHING)} or a number in [0, 1), "
                             f"not {smoothing!r}")
        return SMOOTHING[smoothing]
    weight = float(smoothing)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), not {weight}")
    return weight


def checked_uncertain_below(value: float | None) -> float | None:
    if value is not None and not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"uncertain_below must be a confidence in [0, 1], not {value}")
    return None if value is None else float(value)


class VideoProcessor:
    """Processes consecutive frames of one stream; faces keep ids and labels do not flicker.

    `detect_every=k` runs the face detector on every k-th frame (and on every frame while no face is tracked);
    in between, each face's box is moved along its track's velocity and the faces are classified there.
    None: DEFAULT_DETECT_EVERY for the recognizer's detector.
    `coast_frames`: an established face (tracked for 3+ frames) that the detector misses keeps its predicted box
    for up to this many frames, so a face does not blink out for a frame the detector happens to miss.
    `smoothing`: how steady each face's probabilities are over frames, a SMOOTHING name ("off", "light", "normal",
    "strong") or the weight kept from the past; `uncertain_below`: faces whose (smoothed) confidence is below
    this are flagged uncertain and shown as "uncertain". Both may be changed between frames.
    """

    def __init__(self, recognizer: FaceAnalyzer, window: int = 60, detect_every: int | None = None,
                 coast_frames: int = 2, smoothing: str | float = DEFAULT_SMOOTHING,
                 uncertain_below: float | None = None, **tracker_options):
        self.recognizer = recognizer
        if detect_every is None:
            detect_every = DEFAULT_DETECT_EVERY.get(getattr(recognizer.detector, "name", ""), 1)
        if int(detect_every) < 1:
            raise ValueError(f"detect_every must be at least 1, got {detect_every}")
        self.detect_every = int(detect_every)
        self.coast_frames = int(coast_frames)
        self._since_detection = 0
        self._step = 0  # detections so far: which part of the detector's full search this frame looks at
        self.tracker = FaceTracker(smoothing=smoothing_weight(smoothing), **tracker_options)
        self.uncertain_below = checked_uncertain_below(uncertain_below)
        self._ms = deque(maxlen=window)
        self._stamps = deque(maxlen=window)
        self._last_faces = 0
        self.frames = 0

    def process(self, frame_bgr: np.ndarray, draw: bool = True) -> FrameResult:
        start = clock = time.perf_counter()
        stamps = []

        def lap() -> None:
            nonlocal clock
            now = time.perf_counter()
            stamps.append((now - clock) * 1000.0)
            clock = now

        rec = self.recognizer
        height, width = frame_bgr.shape[:2]
        if self._since_detection + 1 >= self.detect_every or not self.tracker.tracks:
            around = [t.predicted_box(width, height) for t in self.tracker.tracks]
            detect_video = getattr(rec.detector, "detect_video", None)  # a detector object of the caller's may lack it
            detections = detect_video(frame_bgr, self._step, around) if detect_video else rec.detector.detect(frame_bgr)
            self._step += 1
            boxes, angles = [d.box for d in detections], [d.roll for d in detections]
            kinds = [DETECTED] * len(boxes)
            self._since_detection = 0
            for track in self.tracker.tracks:
                if track.age >= 3 and track.missed < self.coast_frames and \
                        all(box_iou(track.box, box) < self.tracker.min_iou for box in boxes):
                    boxes.append(track.predicted_box(width, height))
                    angles.append(track.angle)
                    kinds.append(COASTED)
        else:
            coasting = [t for t in self.tracker.tracks if t.missed < self.coast_frames or t.missed == 0]
            boxes = [t.predicted_box(width, height) for t in coasting]
            angles = [t.angle for t in coasting]
            kinds = [PREDICTED] * len(boxes)
            self._since_detection += 1
        lap()
        crops = rec.crops(frame_bgr, boxes, angles)
        lap()
        probabilities = rec.engine.predict(crops)
        lap()
        tracks = self.tracker.update(boxes, probabilities, kinds)
        for track, angle, kind in zip(tracks, angles, kinds):
            if kind == DETECTED:
                track.angle = angle
        faces = results_from_probabilities(
            boxes, [t.probabilities for t in tracks], rec.classes, track_ids=[t.track_id for t in tracks],
            uncertain_below=self.uncertain_below,
        )
        lap()
        image = draw_faces(frame_bgr, faces) if draw else frame_bgr
        lap()
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self._ms.append(elapsed_ms)
        self._stamps.append(time.perf_counter())
        self._last_faces = len(faces)
        self.frames += 1
        return FrameResult(faces=faces, image=image, ms=elapsed_ms, timings=FrameTimings(*stamps))

    def set_options(self, smoothing: str | float | None = None, uncertain_below: float | None = None) -> None:
        """Change the smoothing (None: keep it) and the uncertainty bar (None: no bar) for the next frames."""
        if smoothing is not None:
            self.tracker.smoothing = smoothing_weight(smoothing)
        self.uncertain_below = checked_uncertain_below(uncertain_below)

    def stats(self) -> FrameStats:
        fps = 0.0
        if len(self._stamps) > 1 and self._stamps[-1] > self._stamps[0]:
            fps = (len(self._stamps) - 1) / (self._stamps[-1] - self._stamps[0])
        ms, p90 = (float(v) for v in np.percentile(self._ms, [50, 90])) if self._ms else (0.0, 0.0)
        return FrameStats(fps=fps, ms_median=ms, faces=self._last_faces, frames=self.frames, ms_p90=p90)

    def reset(self) -> None:
        self.tracker.reset()
        self._since_detection = 0
        self._step = 0
        self._ms.clear()
        self._stamps.clear()
        self.frames = 0
