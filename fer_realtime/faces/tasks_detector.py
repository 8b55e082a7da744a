"""A MediaPipe Tasks FaceDetector (IMAGE mode) for a face detector model file of the user's own."""

from __future__ import annotations

import atexit
import weakref
from pathlib import Path

import cv2
import numpy as np

from ..core.errors import DetectorError
from .boxes import NMS_IOU_THRESHOLD
from .detector import Detection, detection_scale, resized

TASKS_WIDTH = 320


class TasksFaceDetector:
    """MediaPipe Tasks FaceDetector (IMAGE mode) for a model file of the user's own."""

    def __init__(self, model_path: str, score_threshold: float):
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise DetectorError(f"The face detector model file {path} does not exist.")
        try:  # deferred: takes seconds, as mediapipe imports TensorFlow when that is installed
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as error:
            raise DetectorError(
                "A MediaPipe Tasks face detector model needs the 'mediapipe' package; install it with: "
                "pip install mediapipe") from error
        self._mp = mp
        task_options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=score_threshold,
            min_suppression_threshold=NMS_IOU_THRESHOLD,
        )
        try:
            self._detector = vision.FaceDetector.create_from_options(task_options)
        except Exception as error:  # mediapipe reports bad models as ValueError, RuntimeError or even OSError
            reason = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
            raise DetectorError(f"{path} is not a usable MediaPipe face detector model ({reason}).") from error
        _OPEN_TASKS_DETECTORS.add(self)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        # Shrunk to TASKS_WIDTH first (area-averaged): MediaPipe's own resize does not low-pass, and on full-size
        # noise frames it reports faces.
        scale = detection_scale(rgb.shape[1], TASKS_WIDTH)
        small = resized(rgb, scale, cv2.INTER_AREA)
        height, width = small.shape[:2]
        result = self._detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB,
                                                      data=np.ascontiguousarray(small)))
        found = []
        for d in result.detections:
            box = d.bounding_box
            score = d.categories[0].score if d.categories else 0.0
            points = tuple((k.x * width / scale, k.y * height / scale) for k in (d.keypoints or []))
            found.append(Detection((box.origin_x / scale, box.origin_y / scale, box.width / scale, box.height / scale),
                                   float(score), points))
        return found

    def close(self) -> None:
        self._detector.close()


# mediapipe's own finalizer prints a traceback when a detector is still open at interpreter shutdown (its C
# bindings are already torn down), so close whatever the caller left open while everything still works.
_OPEN_TASKS_DETECTORS: weakref.WeakSet[TasksFaceDetector] = weakref.WeakSet()


@atexit.register
def _close_open_tasks_detectors() -> None:
    for detector in list(_OPEN_TASKS_DETECTORS):
        detector.close()


# --- shared pre- and post-processing ---------------------------------------------------------------------------
