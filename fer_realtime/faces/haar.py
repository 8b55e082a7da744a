"""The haar backend: OpenCV's frontal and profile cascades, and its eye cascade inside each frontal face."""

from __future__ import annotations

import math
import os

import cv2
import numpy as np

from ..core.errors import DetectorError
from .detector import (
    AUTO,
    Detection,
    FaceDetector,
    FaceDetectorOptions,
    detection_scale,
    eye_line_angle,
    resized,
    to_gray,
)

HAAR_NEAR_WIDTH = 400  # haar's quick look: finds faces of about 60 px in a 640-wide frame at ~2/3 the cost of 480
HAAR_SMALLEST_FACE = 24  # pixels at which the frontal cascade (20x20 window) finds faces reliably
_RawDetection = tuple[tuple[float, float, float, float], float]  # (x, y, w, h) in detection-image pixels, score

# On LFW faces alt2 found as many as alt (default: fewer, plus false hits) at 2/3 of alt's cost; equalizeHist
# before detection lowered recall, so it is not used.
FRONTAL_CASCADE = "haarcascade_frontalface_alt2.xml"
PROFILE_CASCADE = "haarcascade_profileface.xml"
# Speed/recall trade-off measured on LFW faces: 1.2 costs half of 1.1 for ~1% fewer faces found.
SCALE_FACTOR = 1.2
MIN_NEIGHBORS = 4


EYE_CASCADE = "haarcascade_eye.xml"


class HaarFaceDetector(FaceDetector):
    name = "haar"

    def __init__(self, options: FaceDetectorOptions):
        super().__init__(options)
        self._frontal = _load_cascade(FRONTAL_CASCADE)
        self._profile = _load_cascade(PROFILE_CASCADE) if options.profile else None
        self._eyes = _load_cascade(EYE_CASCADE)

    def _stages(self, frame: np.ndarray):
        width = self.options.detection_width
        near = detection_scale(frame.shape[1], HAAR_NEAR_WIDTH if width == AUTO else width)
        fine = min(1.0, HAAR_SMALLEST_FACE / self.options.min_face_size)
        gray = to_gray(frame)
        stages = [(lambda: self._at_scale(gray, near), 1.5 * HAAR_SMALLEST_FACE / near)]
        if fine > near:
            stages.append((lambda: self._at_scale(gray, fine), 0.0))
        return stages

    def _at_scale(self, full_gray: np.ndarray, scale: float) -> list[Detection]:
        # INTER_AREA: the cascades find slightly more faces on area-averaged frames; its cost is small beside theirs.
        gray = resized(full_gray, scale, cv2.INTER_AREA)
        min_size = max(1, math.floor(self.options.min_face_size * scale))
        frontal = _cascade_detections(self._frontal, gray, min_size)
        found = [Detection(box, score, self._eye_keypoints(full_gray, box)) for box, score in _unscaled(frontal, scale)]
        if self._profile is not None:
            profiles = _cascade_detections(self._profile, gray, min_size)
            mirrored = _cascade_detections(self._profile, cv2.flip(gray, 1), min_size)
            profiles += [((gray.shape[1] - x - w, y, w, h), score) for (x, y, w, h), score in mirrored]
            found += [Detection(box, score) for box, score in _unscaled(profiles, scale)]
        return found

    def _eye_keypoints(self, gray: np.ndarray, box) -> tuple[tuple[float, float], ...]:
        """The eyes inside a frontal face box (the subject's right eye first), or () when the eye cascade does not
        find one in each upper quarter of the box."""
        x, y, w, h = (int(round(v)) for v in box)
        x, y = max(0, x), max(0, y)
        upper = gray[y : y + int(h * 0.6), x : x + w]
        if upper.size == 0 or w < 24:
            return ()
        eyes = self._eyes.detectMultiScale(upper, scaleFactor=1.1, minNeighbors=3, minSize=(max(4, w // 8),) * 2,
                                           maxSize=(w // 2, w // 2))
        centres = [(ex + ew / 2, ey + eh / 2) for ex, ey, ew, eh in np.reshape(eyes, (-1, 4))]
        left_half = [c for c in centres if c[0] < w * 0.5]
        right_half = [c for c in centres if c[0] >= w * 0.5]
        if not left_half or not right_half:
            return ()
        # The eye nearest the middle of each half: eyebrows and nostrils are the cascade's usual false hits.
        image_left = min(left_half, key=lambda c: abs(c[0] - w * 0.3) + abs(c[1] - h * 0.38))
        image_right = min(right_half, key=lambda c: abs(c[0] - w * 0.7) + abs(c[1] - h * 0.38))
        if abs(eye_line_angle([image_left, image_right])) > 40:
            return ()
        return ((x + image_left[0], y + image_left[1]), (x + image_right[0], y + image_right[1]))

    def _release(self) -> None:
        self._frontal = self._profile = self._eyes = None


def _unscaled(raw: list[_RawDetection], scale: float) -> list[_RawDetection]:
    return [((x / scale, y / scale, w / scale, h / scale), score) for (x, y, w, h), score in raw]


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


# The smallest face each BlazeFace network finds reliably, as a fraction of its input side, measured on
