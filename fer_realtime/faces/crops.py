"""Detected faces cut out of a frame as a model's metadata says: margin, upright turn by the eye line, colour,
size, normalisation; all faces of a frame in one batch."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..core.model_file import ModelMetadata
from ..core.preprocessing import normalize
from .boxes import Box

_INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def expand_box(box: Box, margin: float, frame_width: int, frame_height: int) -> Box:
    """Grow a box by `margin` of its size on each side, clipped to the frame."""
    x, y, w, h = box
    dx, dy = int(round(w * margin)), int(round(h * margin))
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(frame_width, x + w + dx), min(frame_height, y + h + dy)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def to_model_color(frame_bgr: np.ndarray, color: str) -> np.ndarray:
    """Convert an OpenCV BGR (or already single-channel) frame to the model's color mode once per frame."""
    if color == "grayscale":
        return frame_bgr if frame_bgr.ndim == 2 else cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    if frame_bgr.ndim == 2:
        return cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


# Faces tilted less than this are cropped as they are (test-time views already cover small turns, and eye
# keypoints of small faces jitter by a few degrees); more than MAX_UPRIGHT_TURN is taken for a keypoint error.
MIN_UPRIGHT_TURN = 4.0
MAX_UPRIGHT_TURN = 45.0


def crop_faces(frame_bgr: np.ndarray, boxes: Sequence[Box], metadata: ModelMetadata,
               angles: Sequence[float] | None = None, detector: str | None = None,
               min_turn: float = MIN_UPRIGHT_TURN) -> np.ndarray:
    """Crop every box (with the metadata's margin for boxes of `detector` of its width), turned upright by its
    angle (degrees, the tilt of the eye line; see detection.Detection.roll) if that is at least `min_turn`, convert,
    resize and normalise into one batch."""
    prep = metadata.preprocessing
    height, width = metadata.input_size
    batch = np.empty((len(boxes), height, width, metadata.channels), dtype=np.float32)
    if not boxes:
        return batch
    frame_h, frame_w = frame_bgr.shape[:2]
    interpolation = _INTERPOLATION.get(prep.interpolation, cv2.INTER_AREA)
    crops = []
    margins = prep.margins_for(detector, [box[2] for box in boxes])
    for i, (box, margin) in enumerate(zip(boxes, margins)):
        angle = float(angles[i]) if angles is not None else 0.0
        if min_turn <= abs(angle) <= MAX_UPRIGHT_TURN:
            crops.append(to_model_color(_upright_crop(frame_bgr, box, angle, margin, (width, height)),
                                        prep.color))
            continue
        x, y, w, h = expand_box(box, margin, frame_w, frame_h)
        # Colour conversion per crop, not per frame: faces are a small part of a video frame.
        crop = to_model_color(np.ascontiguousarray(frame_bgr[y : y + h, x : x + w]), prep.color) if w and h else None
        if crop is None or crop.size == 0:
            crop = np.zeros((height, width) if prep.color == "grayscale" else (height, width, 3), dtype=np.uint8)
        # INTER_AREA is for shrinking; enlarging small faces with it degenerates to nearest-neighbour.
        interp = interpolation if (w >= width and h >= height) or interpolation != cv2.INTER_AREA else cv2.INTER_LINEAR
        crops.append(cv2.resize(crop, (width, height), interpolation=interp))
    batch[...] = normalize(np.stack(crops), prep)
    return batch


def _upright_crop(frame: np.ndarray, box: Box, angle: float, margin: float, size: tuple[int, int]) -> np.ndarray:
    """The box's region with margin, turned by `angle` degrees about the box's centre so the eyes are level, at
    `size` (width, height): one affine warp (border pixels repeated), then an area resize for large faces."""
    x, y, w, h = box
    crop_w, crop_h = w * (1 + 2 * margin), h * (1 + 2 * margin)
    # Warp at up to twice the output size, then shrink with INTER_AREA: a direct bilinear warp of a large face
    # to 48 px would alias.
    warp_w = int(round(min(max(size[0], crop_w), 2 * size[0])))
    warp_h = int(round(min(max(size[1], crop_h), 2 * size[1])))
    turn = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), angle, 1.0)
    sx, sy = warp_w / crop_w, warp_h / crop_h
    to_output = np.array([[sx, 0, -sx * (x + w / 2 - crop_w / 2)], [0, sy, -sy * (y + h / 2 - crop_h / 2)]])
    matrix = to_output @ np.vstack([turn, [0, 0, 1]])
    warped = cv2.warpAffine(frame, matrix, (warp_w, warp_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if (warp_w, warp_h) != size:
        warped = cv2.resize(warped, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(warped)
