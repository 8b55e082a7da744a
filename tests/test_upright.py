"""upright: when to turn a tilted face upright, measured through the detector path on a real face."""

import cv2
import numpy as np

from fer_realtime.core.model_file import SHIPPED_MODEL_PATH
from fer_realtime.evaluation.upright import format_scores, tilted_face_frame, upright_scores
from fer_realtime.faces.crops import crop_faces
from fer_realtime.inference.engine import get_engine
from helpers import ASTRONAUT_FACE, astronaut_bgr


def _astronaut_face() -> np.ndarray:
    x, y, w, h = ASTRONAUT_FACE
    gray = cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY)
    return cv2.resize(gray[y : y + h, x : x + w], (48, 48), interpolation=cv2.INTER_AREA)


def test_a_tilted_face_frame_turns_the_face_about_its_centre():
    face = np.zeros((48, 48), np.uint8)
    face[20:28, :] = 255  # a level bar through the middle
    frame, box = tilted_face_frame(face, 160, 90.0, np.random.default_rng(0))
    x, y, w, h = box
    assert frame.shape == (480, 640, 3) and box == (240, 160, 160, 160)
    middle = frame[y : y + h, x : x + w, 0]
    assert middle[80, 80] == 255 and middle[10, 80] == 255 and middle[80, 10] != 255  # the bar now stands


def test_crop_faces_turns_from_min_turn():
    frame = astronaut_bgr()
    engine = get_engine(SHIPPED_MODEL_PATH)
    box = ASTRONAUT_FACE
    as_found = crop_faces(frame, [box], engine.metadata, [0.0])
    assert np.array_equal(crop_faces(frame, [box], engine.metadata, [3.0]), as_found)  # below MIN_UPRIGHT_TURN
    assert not np.array_equal(crop_faces(frame, [box], engine.metadata, [3.0], min_turn=0.0), as_found)


def test_upright_scores_measure_the_tilt_and_each_smallest_turn():
    engine = get_engine(SHIPPED_MODEL_PATH)
    faces = np.stack([_astronaut_face()] * 6)
    labels = np.full(6, engine.metadata.classes.index("happy"))
    scores = upright_scores(engine, faces, labels, "mediapipe", 160, tilt=25.0, min_turns=(4.0, 90.0))
    assert [s.source for s in scores] == ["photo", "video"]
    for s in scores:
        assert s.n == 6 and s.found >= 5, s
        assert set(s.by_min_turn) == {4.0, 90.0} and all(0.0 <= a <= 1.0 for a in s.by_min_turn.values())
        # The measured tilt undoes the applied one but for the face's own tilt and the keypoints' error (about
        # 5 degrees each here); a sign error would leave twice the applied tilt (a median of about 25 degrees).
        assert s.roll_error < 10.0, s
    haar = upright_scores(engine, faces[:2], labels[:2], "haar", 160)
    assert [s.source for s in haar] == ["photo"]  # haar has no video mode of its own
    text = format_scores(scores + haar)
    assert "mediapipe  video" in text and "haar       photo" in text
