"""The public API: detect faces, classify all of them in one batched call, return typed results."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .detection import DEFAULT_DETECTOR, FaceDetector, FaceDetectorOptions, create_detector
from .engine import InferenceEngine
from .model_io import LoadedModel, default_model_path, load_model
from .preprocessing import crop_faces


class FaceResult(NamedTuple):
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    label: str
    confidence: float
    scores: dict[str, float]  # every class -> probability; sums to 1
    track_id: int | None = None  # set in video mode


_ENGINES: dict[tuple[str, float], InferenceEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(model: str | os.PathLike | None = None) -> InferenceEngine:
    """Load a model file once per process (keyed by path and modification time) and share its engine."""
    path = Path(model) if model is not None else default_model_path()
    resolved = str(path.resolve())
    key = (resolved, path.stat().st_mtime if path.exists() else 0.0)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = InferenceEngine(load_model(path))
            engine.warm_up()
            for stale in [k for k in _ENGINES if k[0] == resolved]:  # the file was replaced: drop its old version
                del _ENGINES[stale]
            _ENGINES[key] = engine
        return engine


def results_from_probabilities(boxes, probabilities: np.ndarray, classes, track_ids=None) -> list[FaceResult]:
    results = []
    for i, (box, probs) in enumerate(zip(boxes, probabilities)):
        probs = np.asarray(probs, dtype=np.float64)
        probs = probs / probs.sum() if probs.sum() > 0 else np.full(len(classes), 1.0 / len(classes))
        best = int(np.argmax(probs))
        results.append(
            FaceResult(
                box=tuple(int(v) for v in box),
                label=classes[best],
                confidence=float(probs[best]),
                scores={name: float(p) for name, p in zip(classes, probs)},
                track_id=None if track_ids is None else track_ids[i],
            )
        )
    return results


class EmotionRecognizer:
    """Facial-expression recognition on still images and video frames.

    >>> rec = EmotionRecognizer()                      # shipped model, MediaPipe detector
    >>> faces = rec.analyze(frame_bgr)                 # HxWx3 uint8 BGR
    >>> faces[0].label, faces[0].confidence, faces[0].scores

    `detector` is a name ("haar", "mediapipe"), a FaceDetectorOptions or a detector object; `model` is the path
    of a fer-realtime `.keras` file (default: the shipped model), a LoadedModel or an InferenceEngine.
    A recognizer owns its detector (detectors are not shared between threads); the engine is shared, thread-safe.
    """

    def __init__(
        self,
        detector: str | FaceDetectorOptions | FaceDetector = DEFAULT_DETECTOR,
        model: str | os.PathLike | LoadedModel | InferenceEngine | None = None,
    ):
        if isinstance(model, InferenceEngine):
            self.engine = model
        elif isinstance(model, LoadedModel):
            self.engine = InferenceEngine(model)
            self.engine.warm_up()
        else:
            self.engine = get_engine(model)
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

    def classify_boxes(self, frame_bgr: np.ndarray, boxes, angles=None) -> np.ndarray:
        """Probabilities (N, K) for the given face boxes of one frame, in one batched model call; `angles` (the
        faces' tilt in degrees, Detection.roll) turns each crop upright first."""
        return self.engine.predict(crop_faces(frame_bgr, boxes, self.engine.metadata, angles))

    def analyze(self, frame_bgr: np.ndarray) -> list[FaceResult]:
        """Detect and classify every face of an independent image (no tracking); tilted faces are turned upright
        by their eyes before they are classified."""
        frame_bgr = _as_frame(frame_bgr)
        detections = self.detector.detect(frame_bgr)
        boxes = [d.box for d in detections]
        probabilities = self.classify_boxes(frame_bgr, boxes, [d.roll for d in detections])
        return results_from_probabilities(boxes, probabilities, self.classes)

    def video_processor(self, **tracker_options):
        from .video import VideoProcessor

        return VideoProcessor(self, **tracker_options)

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
