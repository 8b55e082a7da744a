"""Face detection with interchangeable backends, in the style of MediaPipe Tasks (options, detector, results).

    >>> with create_detector("haar") as detector:                 # or FaceDetectorOptions(backend="mediapipe")
    ...     detections = detector.detect(frame_bgr)             # [Detection(box=(x, y, w, h), score), ...]

Backends:
  haar       OpenCV Haar cascades: frontal faces, plus (option `profile`) the profile cascade on the frame and on
             its mirror image for faces turned either way. No confidence model: a detection's score is
             n / (n + MIN_NEIGHBORS), n being the number of overlapping raw hits the cascade grouped into it, so
             scores lie in [0.5, 1) and grow with how consistently the face was found; `score_threshold` is not
             applied. Its cost is set mostly by min_face_size relative to the frame (the finest scale searched),
             hardly by detection_width; the profile passes make it about 4x slower than frontal only.
  mediapipe  MediaPipe Tasks FaceDetector with the short-range BlazeFace model: meant for faces within ~2 m of the
             camera, it misses faces narrower than about 1/8 of the frame's longer side. Much faster than haar.
             The model is built offline on first use (see fer_realtime.mediapipe_model); creating the first
             detector imports mediapipe, which takes seconds as it also imports TensorFlow when installed.

A detector is safe to call from several threads (calls are serialized), but one detector per thread is faster.
"""

from __future__ import annotations

import abc
import atexit
import math
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from .errors import DetectorError

DETECTOR_NAMES = ("haar", "mediapipe")
AUTO = 0  # FaceDetectorOptions.detection_width: the backend's default
DEFAULT_DETECTION_WIDTH = {"haar": 400, "mediapipe": 320}
STILL_DETECTION_WIDTH = 1280
# The default for video and the API: ~4 ms per 640x480 frame against haar's ~50-200 ms on two CPU cores.
DEFAULT_DETECTOR = "mediapipe"
NMS_IOU_THRESHOLD = 0.3  # boxes overlapping more than this are the same face
# A box lying mostly inside another is the same face too: the profile cascade fires on one half of frontal faces.
NMS_CONTAINMENT_THRESHOLD = 0.6

Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels
_RawDetection = tuple[tuple[float, float, float, float], float]  # (x, y, w, h) in detection-image pixels, score


class Detection(NamedTuple):
    box: Box  # x, y, w, h in pixels of the frame passed to detect(), clipped to it, w and h > 0
    score: float  # confidence in [0, 1]; see the module docstring for the haar backend


@dataclass
class FaceDetectorOptions:
    backend: str = "haar"  # one of DETECTOR_NAMES
    min_face_size: int = 36  # pixels of the original frame; smaller boxes are dropped (haar: not even searched)
    score_threshold: float = 0.5  # mediapipe
    max_faces: int = 16
    # Wider frames are downscaled to this width for detection; None = full size; AUTO = the backend's default,
    # haar 400: still finds faces of about 60 px in a 640-wide frame (at 320 it loses them) at ~2/3 the cost
    # of 480; mediapipe 320: its input is 128x128, it finds as many faces as at 480, faster, and no false faces
    # in noise, which it reports on full-size noise frames (its own resize does not low-pass).
    detection_width: int | None = 0
    model_path: str | None = None  # mediapipe: a .tflite with metadata; None = the project's own BlazeFace build
    profile: bool = True  # haar: also detect faces turned sideways (about 4x the cost of frontal only)


class FaceDetector(abc.ABC):
    """Finds faces in BGR (or grayscale) frames; use create_detector() to make one."""

    name: str

    def __init__(self, options: FaceDetectorOptions):
        self.options = options
        self._lock = threading.Lock()
        self._closed = False

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """Faces in an HxWx3 uint8 BGR (or HxW grayscale) frame, largest first, duplicates merged."""
        frame = _validated_frame(frame_bgr)
        height, width = frame.shape[:2]
        detection_width = self.options.detection_width
        if detection_width == AUTO:
            detection_width = DEFAULT_DETECTION_WIDTH[self.name]
        scale = _detection_scale(width, detection_width)
        with self._lock:
            if self._closed:
                raise DetectorError(f"This {self.name} face detector has been closed; create a new one.")
            raw = self._detect_scaled(frame, scale)
        return _finalize(raw, scale, width, height, self.options)

    def close(self) -> None:
        """Release native resources; detect() fails afterwards. Closing twice is harmless."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()

    @abc.abstractmethod
    def _detect_scaled(self, frame: np.ndarray, scale: float) -> list[_RawDetection]:
        """Detections in the frame resized by `scale`, in that resized image's pixels."""

    def _release(self) -> None:
        """Free backend resources (called once, under the lock)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"


def still_image_options(backend: str) -> FaceDetectorOptions:
    """Options for photos rather than video frames: haar searches up to 1280 px wide, so the small faces of a
    group photo survive the downscale; mediapipe's 128x128 input gains nothing from a larger frame."""
    return FaceDetectorOptions(backend=backend, detection_width=STILL_DETECTION_WIDTH if backend == "haar" else AUTO)


def create_detector(options: FaceDetectorOptions | str = "haar") -> FaceDetector:
    """A detector for `options`; a backend name is shorthand for FaceDetectorOptions(backend=name)."""
    if isinstance(options, str):
        options = FaceDetectorOptions(backend=options)
    _check_options(options)
    if options.backend == "haar":
        return HaarFaceDetector(options)
    return MediaPipeFaceDetector(options)


def _check_options(options: FaceDetectorOptions) -> None:
    if options.backend not in DETECTOR_NAMES:
        raise DetectorError(f"Unknown face detector {options.backend!r}; choose one of: {', '.join(DETECTOR_NAMES)}.")
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

# On LFW faces alt2 found as many as alt (default: fewer, plus false hits) at 2/3 of alt's cost; equalizeHist
# before detection lowered recall, so it is not used.
FRONTAL_CASCADE = "haarcascade_frontalface_alt2.xml"
PROFILE_CASCADE = "haarcascade_profileface.xml"
# Speed/recall trade-off measured on LFW faces: 1.2 costs half of 1.1 for ~1% fewer faces found.
SCALE_FACTOR = 1.2
MIN_NEIGHBORS = 4


class HaarFaceDetector(FaceDetector):
    name = "haar"

    def __init__(self, options: FaceDetectorOptions):
        super().__init__(options)
        self._frontal = _load_cascade(FRONTAL_CASCADE)
        self._profile = _load_cascade(PROFILE_CASCADE) if options.profile else None

    def _detect_scaled(self, frame: np.ndarray, scale: float) -> list[_RawDetection]:
        # INTER_AREA: the cascades find slightly more faces on area-averaged frames; its cost is small beside theirs.
        gray = _resized(_to_gray(frame), scale, cv2.INTER_AREA)
        min_size = max(1, math.floor(self.options.min_face_size * scale))
        found = _cascade_detections(self._frontal, gray, min_size)
        if self._profile is not None:
            found += _cascade_detections(self._profile, gray, min_size)
            mirrored = _cascade_detections(self._profile, cv2.flip(gray, 1), min_size)
            found += [((gray.shape[1] - x - w, y, w, h), score) for (x, y, w, h), score in mirrored]
        return found

    def _release(self) -> None:
        self._frontal = self._profile = None


def _load_cascade(filename: str) -> cv2.CascadeClassifier:
    path = os.path.join(cv2.data.haarcascades, filename)
    cascade = cv2.CascadeClassifier()
    if not os.path.isfile(path) or not cascade.load(path):
        raise DetectorError(
            f"Cannot load the OpenCV face cascade {path}; reinstall opencv-contrib-python 4.x, which ships it."
        )
    return cascade


def _cascade_detections(cascade: cv2.CascadeClassifier, gray: np.ndarray, min_size: int) -> list[_RawDetection]:
    boxes, neighbours = cascade.detectMultiScale2(
        gray, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS, minSize=(min_size, min_size)
    )
    return [(tuple(map(float, box)), n / (n + MIN_NEIGHBORS)) for box, n in zip(boxes, np.ravel(neighbours))]


# --- mediapipe -------------------------------------------------------------------------------------------------


class MediaPipeFaceDetector(FaceDetector):
    """MediaPipe Tasks FaceDetector in IMAGE mode: every frame is independent."""

    name = "mediapipe"

    def __init__(self, options: FaceDetectorOptions):
        super().__init__(options)
        model_path = _mediapipe_model_path(options.model_path)
        try:  # deferred: takes seconds, as mediapipe imports TensorFlow when that is installed
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as error:
            raise DetectorError(
                "The mediapipe face detector needs the 'mediapipe' package; install it with: pip install mediapipe"
            ) from error

        self._mp = mp
        task_options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=options.score_threshold,
            min_suppression_threshold=NMS_IOU_THRESHOLD,
        )
        try:
            self._detector = vision.FaceDetector.create_from_options(task_options)
        except Exception as error:  # mediapipe reports bad models as ValueError, RuntimeError or even OSError
            reason = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
            raise DetectorError(f"{model_path} is not a usable MediaPipe face detector model ({reason}).") from error
        _OPEN_MEDIAPIPE_DETECTORS.add(self)

    def _detect_scaled(self, frame: np.ndarray, scale: float) -> list[_RawDetection]:
        rgb = _to_rgb(_resized(frame, scale))
        result = self._detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        return [_mediapipe_raw_detection(d) for d in result.detections]

    def _release(self) -> None:
        self._detector.close()


# mediapipe's own finalizer prints a traceback when a detector is still open at interpreter shutdown (its C
# bindings are already torn down), so close whatever the caller left open while everything still works.
_OPEN_MEDIAPIPE_DETECTORS: weakref.WeakSet[MediaPipeFaceDetector] = weakref.WeakSet()


@atexit.register
def _close_open_mediapipe_detectors() -> None:
    for detector in list(_OPEN_MEDIAPIPE_DETECTORS):
        detector.close()


def _mediapipe_model_path(user_path: str | None) -> Path:
    if user_path is None:
        from .mediapipe_model import ensure_face_detector_model

        return ensure_face_detector_model()
    path = Path(user_path).expanduser()
    if not path.is_file():
        raise DetectorError(f"The face detector model file {path} does not exist.")
    return path


def _mediapipe_raw_detection(detection) -> _RawDetection:
    box = detection.bounding_box
    score = detection.categories[0].score if detection.categories else 0.0
    return (float(box.origin_x), float(box.origin_y), float(box.width), float(box.height)), float(score)


# --- shared pre- and post-processing ---------------------------------------------------------------------------


def _validated_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] in (1, 4):  # single-channel or BGRA: keep the colour planes
        frame = frame[..., 0] if frame.shape[2] == 1 else frame[..., :3]
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)) or min(frame.shape[:2]) == 0:
        raise ValueError(f"frames must be HxWx3 BGR or HxW grayscale, got shape {frame.shape}")
    return np.ascontiguousarray(frame)


def _detection_scale(width: int, detection_width: int | None) -> float:
    return 1.0 if detection_width is None or width <= detection_width else detection_width / width


def _resized(image: np.ndarray, scale: float, interpolation: int | None = None) -> np.ndarray:
    if scale == 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    if interpolation is None:
        # INTER_AREA costs several times INTER_LINEAR at non-integer ratios; linear is as good down to half size.
        interpolation = cv2.INTER_LINEAR if scale >= 0.5 else cv2.INTER_AREA
    return cv2.resize(image, size, interpolation=interpolation)


def _to_gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB if frame.ndim == 2 else cv2.COLOR_BGR2RGB)


def _finalize(raw: list[_RawDetection], scale: float, width: int, height: int, options: FaceDetectorOptions):
    """Map to frame pixels, clip, drop small boxes, merge duplicates, sort by area (largest first), cap."""
    detections = []
    for (x, y, w, h), score in raw:
        box = _frame_box(x / scale, y / scale, (x + w) / scale, (y + h) / scale, width, height)
        if box is not None and min(box[2], box[3]) >= options.min_face_size:
            detections.append(Detection(box, float(min(1.0, max(0.0, score)))))
    detections = non_max_suppression(detections)
    detections.sort(key=lambda d: d.box[2] * d.box[3], reverse=True)
    return detections[: options.max_faces]


def _frame_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box | None:
    left, top = min(max(round(x0), 0), width), min(max(round(y0), 0), height)
    right, bottom = min(max(round(x1), 0), width), min(max(round(y1), 0), height)
    if right <= left or bottom <= top:
        return None
    return left, top, right - left, bottom - top


def non_max_suppression(
    detections: list[Detection],
    iou_threshold: float = NMS_IOU_THRESHOLD,
    containment_threshold: float = NMS_CONTAINMENT_THRESHOLD,
) -> list[Detection]:
    """Keep the best-scoring (then largest) box of every group of boxes of the same face.

    Two boxes are of the same face when their IoU exceeds `iou_threshold` or their intersection covers more than
    `containment_threshold` of the smaller one.
    """
    ranked = sorted(detections, key=lambda d: (d.score, d.box[2] * d.box[3]), reverse=True)
    kept: list[Detection] = []
    for candidate in ranked:
        if not any(_same_face(candidate.box, other.box, iou_threshold, containment_threshold) for other in kept):
            kept.append(candidate)
    return kept


def _same_face(a: Box, b: Box, iou_threshold: float, containment_threshold: float) -> bool:
    intersection = _intersection_area(a, b)
    smaller_area = min(a[2] * a[3], b[2] * b[3])
    return box_iou(a, b) > iou_threshold or intersection > containment_threshold * smaller_area


def _intersection_area(a: Box, b: Box) -> int:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy


def box_iou(a: Box, b: Box) -> float:
    intersection = _intersection_area(a, b)
    union = a[2] * a[3] + b[2] * b[3] - intersection
    return intersection / union if union > 0 else 0.0
