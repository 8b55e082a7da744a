"""Video clips built from face crops, for the benchmarks of video processing (many videos, long videos).

    >>> crops = fer_faces(Path("../shared/datasets/fer2013/val"))
    >>> write_face_clip("long.mp4", crops, seconds=1800, fps=10)

Every `hold_s` seconds each face slot shows another crop (upscaled, as MediaPipe misses faces below ~110 px),
drifting slowly on a noisy grey background; now and then a slot stays empty, so faces come and go and tracks start
and end all along the clip. Frames are written as they are made, so a long clip needs no more memory than a frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..core.errors import FerError


def fer_faces(folder: Path, per_class: int = 20, seed: int = 0) -> list[np.ndarray]:
    """`per_class` BGR crops from each class folder of `folder` (FER2013's val/, say), drawn with `seed`."""
    rng = np.random.default_rng(seed)
    crops = []
    for class_dir in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        files = sorted(class_dir.glob("*.jpg")) + sorted(class_dir.glob("*.png"))
        for i in rng.choice(len(files), size=min(per_class, len(files)), replace=False):
            gray = cv2.imread(str(files[int(i)]), cv2.IMREAD_GRAYSCALE)
            if gray is not None:
                crops.append(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    if not crops:
        raise FerError(f"{folder} has no face images in class folders.")
    return crops


def write_face_clip(path: str | os.PathLike, crops: list[np.ndarray], seconds: float, fps: float = 15.0,
                    size: tuple[int, int] = (640, 360), faces: int = 1, face_size: tuple[int, int] = (120, 150),
                    hold_s: float = 3.0, empty_share: float = 0.1, seed: int = 0) -> int:
    """Write an MJPG .avi or MPEG-4 .mp4 clip of `seconds` at `fps` with up to `faces` faces side by side;
    returns its frame count."""
    path = Path(path)
    width, height = size
    fourcc = {".avi": "MJPG", ".mp4": "mp4v"}.get(path.suffix.lower())
    if fourcc is None:
        raise FerError(f"Clips are .avi or .mp4, not {path.name}.")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise FerError(f"OpenCV cannot write {path}.")
    rng = np.random.default_rng(seed)
    background = rng.normal(90, 12, (height, width, 3)).clip(0, 255).astype(np.uint8)
    slot_width = width // faces
    hold = max(1, round(hold_s * fps))
    frames = round(seconds * fps)
    shown: list[tuple[np.ndarray, int, int, int] | None] = [None] * faces
    try:
        for index in range(frames):
            if index % hold == 0:
                shown = [_new_face(crops, rng, face_size, slot_width, height, empty_share) for _ in range(faces)]
            frame = background.copy()
            phase = (index % hold) / hold
            for slot, face in enumerate(shown):
                if face is not None:
                    patch, x, y, drift = face
                    left = slot * slot_width + x + int(drift * phase)
                    frame[y : y + patch.shape[0], left : left + patch.shape[1]] = patch
            writer.write(frame)
    finally:
        writer.release()
    return frames


def _new_face(crops, rng, face_size, slot_width, height, empty_share):
    if rng.random() < empty_share:
        return None
    side = int(rng.integers(face_size[0], face_size[1] + 1))
    side = min(side, slot_width - 2, height - 2)
    patch = cv2.resize(crops[int(rng.integers(len(crops)))], (side, side), interpolation=cv2.INTER_CUBIC)
    drift = int(rng.integers(-12, 13))
    x = int(rng.integers(max(1, abs(drift)), max(2, slot_width - side - abs(drift))))
    y = int(rng.integers(0, height - side))
    return patch, x, y, drift
