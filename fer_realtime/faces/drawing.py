"""Drawing results on frames: a box, the emotion and its confidence, readable on any background."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

# BGR colours per emotion, saturated enough to stand out; text goes on a filled label of that colour.
EMOTION_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 230),
    "disgust": (40, 150, 40),
    "fear": (160, 60, 160),
    "happy": (0, 215, 255),
    "sad": (200, 120, 30),
    "surprise": (0, 140, 255),
    "neutral": (200, 200, 200),
    "uncertain": (110, 110, 110),  # a face below the confidence the user asked for
}
_DEFAULT_COLOR = (255, 255, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    b, g, r = background
    luminance = 0.114 * b + 0.587 * g + 0.299 * r
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def shown_label(face) -> str:
    return getattr(face, "shown_label", face.label)


def label_text(face) -> str:
    return f"{shown_label(face)} {face.confidence * 100:.0f}%"


def draw_faces(image: np.ndarray, faces: Iterable, copy: bool = True) -> np.ndarray:
    """Draw each face's box and "label NN%" on a BGR image (a copy unless copy=False).

    Faces need `.box` (x, y, w, h), `.label` and `.confidence`. The box has a dark outline under the coloured
    line and the text sits on a filled tag, so both stay visible on light, dark and busy backgrounds.
    """
    out = image.copy() if copy else image
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    height, width = out.shape[:2]
    scale = max(0.4, min(1.2, width / 900))
    thickness = max(1, int(round(scale * 2)))
    for face in faces:
        x, y, w, h = (int(v) for v in face.box)
        color = EMOTION_COLORS.get(shown_label(face), _DEFAULT_COLOR)
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thickness, cv2.LINE_AA)
        text = label_text(face)
        (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
        tag_h = th + baseline + 6
        tag_y = y - tag_h if y - tag_h >= 0 else min(y + h, height - tag_h)  # above the box, else below it
        tag_x = min(max(0, x), max(0, width - tw - 8))
        cv2.rectangle(out, (tag_x, tag_y), (tag_x + tw + 8, tag_y + tag_h), color, cv2.FILLED)
        cv2.rectangle(out, (tag_x, tag_y), (tag_x + tw + 8, tag_y + tag_h), (0, 0, 0), 1)
        cv2.putText(out, text, (tag_x + 4, tag_y + th + 3), _FONT, scale, _text_color(color), thickness, cv2.LINE_AA)
    return out
