import cv2
import numpy as np
import pytest

from fer_realtime import EMOTIONS, EmotionRecognizer
from helpers import ASTRONAUT_FACE, astronaut_bgr, box_iou


@pytest.fixture(scope="module")
def recognizer():
    with EmotionRecognizer() as rec:
        yield rec


def four_face_frame():
    face = astronaut_bgr()[40:200, 150:300]
    frame = np.full((480, 640, 3), 90, np.uint8)
    spots = [(20, 20), (340, 20), (20, 250), (340, 250)]
    for x, y in spots:
        frame[y : y + 200, x : x + 188] = cv2.resize(face, (188, 200))
    return frame


def test_analyze_one_face(recognizer):
    faces = recognizer.analyze(astronaut_bgr())
    assert len(faces) == 1
    face = faces[0]
    assert box_iou(face.box, ASTRONAUT_FACE) > 0.5
    assert all(isinstance(v, int) for v in face.box)
    assert face.label in EMOTIONS
    assert set(face.scores) == set(EMOTIONS)
    assert sum(face.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert face.confidence == pytest.approx(max(face.scores.values()))
    assert face.scores[face.label] == face.confidence


def test_all_faces_of_a_frame_go_through_one_batched_call(recognizer, monkeypatch):
    calls = []
    original = recognizer.engine.predict
    monkeypatch.setattr(recognizer.engine, "predict", lambda batch: calls.append(len(batch)) or original(batch))
    faces = recognizer.analyze(four_face_frame())
    assert len(faces) == 4
    assert calls == [4]


def test_no_face_and_unusual_frames(recognizer):
    assert recognizer.analyze(np.full((480, 640, 3), 255, np.uint8)) == []
    gray = cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY)
    assert len(recognizer.analyze(gray)) == 1
    with pytest.raises(ValueError, match="uint8"):
        recognizer.analyze(np.zeros((10, 10, 3), np.float32))


def test_mediapipe_detector_end_to_end():
    with EmotionRecognizer(detector="mediapipe") as rec:
        faces = rec.analyze(astronaut_bgr())
    assert len(faces) == 1 and box_iou(faces[0].box, ASTRONAUT_FACE) > 0.4


def test_video_mode_keeps_ids_and_draws(recognizer):
    processor = recognizer.video_processor()
    frame = four_face_frame()
    ids = None
    for _ in range(4):
        result = processor.process(frame)
        current = sorted(f.track_id for f in result.faces)
        assert ids is None or current == ids
        ids = current
    assert len(ids) == 4
    assert not np.array_equal(result.image, frame)
    stats = processor.stats()
    assert stats.frames == 4 and stats.faces == 4 and stats.ms_median > 0
    processor.process(np.zeros_like(frame))
    assert processor.stats().faces == 4  # established faces are carried through a frame the detector misses...
    for _ in range(processor.coast_frames):
        processor.process(np.zeros_like(frame))
    assert processor.stats().faces == 0  # ...for coast_frames frames at most
