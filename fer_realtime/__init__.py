"""fer-realtime: real-time facial-expression recognition (library; no UI code here)."""

from .core.errors import DatasetError, DetectorError, FerError, ImageReadError, ModelLoadError
from .core.labels import EMOTIONS

__all__ = [
    "EMOTIONS",
    "EmotionRecognizer",
    "FaceResult",
    "FerError",
    "ImageReadError",
    "ModelLoadError",
    "DatasetError",
    "DetectorError",
]


def __getattr__(name):
    # The recognizer pulls in TensorFlow; import it only when asked for, so `fer_realtime.core` etc. stay light.
    if name in ("EmotionRecognizer", "FaceResult"):
        from . import recognizer

        return getattr(recognizer, name)
    raise AttributeError(name)
