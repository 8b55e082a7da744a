"""Faces of a frame found, cropped and classified in one batched model call, as typed results."""

from __future__ import annotations

import os

import numpy as np

from ..core.model_file import LoadedModel
from ..faces.crops import crop_faces
from ..faces.detector import FaceDetector, FaceDetectorOptions
from ..faces.detectors import DEFAULT_DETECTOR, create_detector
from .engine import InferenceEngine, get_engine
from .remote import model_classifier
from .results import FaceResult, results_from_probabilities


class FaceAnalyzer:
    """A detector and a model: every face of a frame found, turned upright, classified in one batched call.

    `detector` is a name ("haar", "mediapipe"), a FaceDetectorOptions or a detector object; `model` is the path
    of a fer-realtime `.keras` file (default: the shipped model), a LoadedModel or an InferenceEngine.
    An analyzer owns its detector (detectors are not shared between threads); the engine is shared, thread-safe.
    """

    def __init__(
        self,
        detector: str | FaceDetectorOptions | FaceDetector = DEFAULT_DETECTOR,
        model: str | os.PathLike | LoadedModel | InferenceEngine | None = None,
    ):
        if isinstance(model, InferenceEngine) or hasattr(model, "predict"):
            self.engine = model
        elif isinstance(model, LoadedModel):
            self.engine = InferenceEngine(model)
            self.engine.warm_up()
        else:  # a model file: on the model server when $FER_REALTIME_SERVE_URL is set (inference/remote.py)
            self.engine = model_classifier(get_engine(model))
        if isinstance(detector, (str, FaceDetectorOptions)):
            self.detector = create_detector(detector)
        else:
            self.detector = detector

    @property
    def metadata(self):
        return self.engine.metadata

    @property
    def classes(self) -> tuple[str, ...]:
        return self.engine.metadata.classes

    @property
    def device(self) -> str:
        return self.engine.device

    def detect(self, frame_bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
        return [d.box for d in self.detector.detect(frame_bgr)]

    def crops(self, frame_bgr: np.ndarray, boxes, angles=None) -> np.ndarray:
        """The model's input batch for the given face boxes of one frame (found by this analyzer's detector, whose
        crop margin the model's metadata gives); `angles` (the faces' tilt in degrees, Detection.roll) turns each crop
        upright."""
        return crop_faces(frame_bgr, boxes, self.engine.metadata, angles, getattr(self.detector, "name", None))

    def classify_boxes(self, frame_bgr: np.ndarray, boxes, angles=None) -> np.ndarray:
        """Probabilities (N, K) for the given face boxes of one frame, in one batched model call."""
        return self.engine.predict(self.crops(frame_bgr, boxes, angles))

    def analyze(self, frame_bgr: np.ndarray) -> list[FaceResult]:
        """Detect and classify every face of an independent image (no tracking); tilted faces are turned upright
        by their eyes before they are classified."""
        frame_bgr = _as_frame(frame_bgr)
        detections = self.detector.detect(frame_bgr)
        boxes = [d.box for d in detections]
        probabilities = self.classify_boxes(frame_bgr, boxes, [d.roll for d in detections])
        return results_from_probabilities(boxes, probabilities, self.classes)

    def close(self) -> None:
        self.detector.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _as_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[..., :3]
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3))):
        raise ValueError(f"frames must be HxW or HxWx3, got shape {frame.shape}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    return np.ascontiguousarray(frame)
