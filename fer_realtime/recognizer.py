"""The public API: `EmotionRecognizer` analyses still images and makes video processors (tracking, smoothing).

    >>> rec = EmotionRecognizer()                      # shipped model, MediaPipe detector
    >>> faces = rec.analyze(frame_bgr)                 # HxWx3 uint8 BGR
    >>> faces[0].label, faces[0].confidence, faces[0].scores
    >>> video = rec.video_processor()                  # video mode
    >>> result = video.process(frame_bgr)              # FrameResult(faces, image, ms)
"""

from __future__ import annotations

from .inference.analyzer import FaceAnalyzer
from .inference.results import FaceResult
from .video.processor import VideoProcessor

__all__ = ["EmotionRecognizer", "FaceResult"]


class EmotionRecognizer(FaceAnalyzer):
    """Facial-expression recognition on still images and video frames (see FaceAnalyzer for the arguments)."""

    def video_processor(self, **options) -> VideoProcessor:
        """A processor for consecutive frames of one stream, using this recognizer's detector and model."""
        return VideoProcessor(self, **options)
