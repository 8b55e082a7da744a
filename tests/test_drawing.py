from typing import NamedTuple

import numpy as np
import pytest

from fer_realtime.faces.drawing import EMOTION_COLORS, draw_faces


class Face(NamedTuple):
    box: tuple
    label: str
    confidence: float


@pytest.mark.parametrize("background", [0, 255, 128])
def test_box_and_label_are_drawn_on_any_background(background):
    frame = np.full((480, 640, 3), background, np.uint8)
    out = draw_faces(frame, [Face((200, 150, 120, 120), "happy", 0.87)])
    assert out is not frame and np.all(frame == background)  # the input is untouched
    color = np.array(EMOTION_COLORS["happy"])
    box_edge = out[150:271, 200]
    assert (np.abs(box_edge.astype(int) - color).sum(axis=1) < 60).sum() > 50
    tag = out[120:150, 200:320]  # the label tag sits above the box
    assert (np.abs(tag.astype(int) - color).sum(axis=2) < 60).sum() > 300
    assert (tag.sum(axis=2) < 100).sum() > 20  # dark text on the light tag


def test_faces_at_the_edges_and_grayscale_frames():
    frame = np.zeros((100, 100), np.uint8)
    out = draw_faces(frame, [Face((0, 0, 100, 100), "sad", 0.5), Face((90, 90, 30, 30), "angry", 0.4)])
    assert out.shape == (100, 100, 3)
    assert out.any()
