"""Detectors by name: `create_detector("mediapipe")`, and the options photos use."""

from __future__ import annotations

from .blazeface_detector import MediaPipeFaceDetector
from .detector import FaceDetector, FaceDetectorOptions, check_options
from .haar import HaarFaceDetector

# The default for video and the API: a few ms per 640x480 frame against haar's ~50-200 ms on two CPU cores.
DEFAULT_DETECTOR = "mediapipe"


def still_image_options(backend: str) -> FaceDetectorOptions:
    """Options for photos rather than video frames: every scale is searched, so the small faces of a group photo
    are found even beside a large one."""
    return FaceDetectorOptions(backend=backend, search="full")


def create_detector(options: FaceDetectorOptions | str = "haar") -> FaceDetector:
    """A detector for `options`; a backend name is shorthand for FaceDetectorOptions(backend=name)."""
    if isinstance(options, str):
        options = FaceDetectorOptions(backend=options)
    check_options(options)
    if options.backend == "haar":
        return HaarFaceDetector(options)
    return MediaPipeFaceDetector(options)
