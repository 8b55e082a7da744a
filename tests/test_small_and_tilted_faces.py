"""Small, far, tilted and turned faces (skimage photographs; no dataset needed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fer_realtime.core.model_file import ModelMetadata
from fer_realtime.evaluation.bench_scenes import CAMERAMAN_FACE, photo_scene, photographs
from fer_realtime.evaluation.benchmark import count_found, matches
from fer_realtime.faces.blazeface_detector import FAR_EVERY, FAR_REACH, TILE_OVERLAP, search_tiles
from fer_realtime.faces.boxes import box_iou
from fer_realtime.faces.crops import crop_faces
from fer_realtime.faces.detector import FaceDetectorOptions
from fer_realtime.faces.detectors import create_detector, still_image_options
from fer_realtime.recognizer import EmotionRecognizer

ASTRONAUT_FACE = (176, 82, 94, 94)


def astronaut():
    return photographs()["astronaut"][0]


def turned(image, angle, centre=(223, 129)):
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def mediapipe():
    with create_detector("mediapipe") as detector:
        yield detector


def test_tiles_hold_every_small_face_whole():
    width, height, smallest = 1280, 720, 24
    tiles = search_tiles(width, height, smallest)
    assert tiles and all(x >= 0 and y >= 0 and x + w <= width and y + h <= height for x, y, w, h in tiles)
    rng = np.random.default_rng(0)
    whole_frame_reach = FAR_REACH * width
    for _ in range(500):  # faces too small for the whole-frame pass must lie inside a tile they fill enough of
        size = int(rng.integers(smallest, int(whole_frame_reach) + 1))
        x, y = int(rng.integers(0, width - size)), int(rng.integers(0, height - size))
        holders = [t for t in tiles if t[0] <= x and t[1] <= y and x + size <= t[0] + t[2] and y + size <= t[1] + t[3]
                   and size >= FAR_REACH * max(t[2], t[3]) * 0.99]
        assert holders, (x, y, size)
        assert min(max(t[2], t[3]) for t in holders) * TILE_OVERLAP >= size * 0.99 or size <= whole_frame_reach
    assert search_tiles(640, 480, 200) == []  # the whole frame already reaches faces that large


def test_small_faces_in_a_720p_frame_are_found_by_the_full_search(mediapipe):
    frame = photo_scene("astronaut", 1, 6, (26, 40), (1280, 720), seed=3)[0]
    with create_detector(FaceDetectorOptions(backend="mediapipe", search="near")) as near:
        assert count_found(frame.faces, [d.box for d in near.detect(frame.image)]) <= 1
    found = mediapipe.detect(frame.image)  # search="auto": nothing near the camera, so it searches fully
    assert count_found(frame.faces, [d.box for d in found]) >= 5
    with create_detector(FaceDetectorOptions(backend="haar", search="full")) as haar:
        assert count_found(frame.faces, [d.box for d in haar.detect(frame.image)]) >= 3


def test_a_group_photo_is_one_model_call():
    frame = photo_scene("astronaut", 1, 12, (50, 80), (1280, 720), seed=4)[0]
    with EmotionRecognizer(detector=still_image_options("mediapipe")) as rec:
        calls = []
        predict = rec.engine.predict
        rec.engine.predict = lambda batch: calls.append(len(batch)) or predict(batch)
        try:
            faces = rec.analyze(frame.image)
        finally:
            rec.engine.predict = predict
    assert count_found(frame.faces, [f.box for f in faces]) >= 11
    assert calls == [len(faces)]


def test_keypoints_give_the_tilt_and_the_crop_is_turned_upright(mediapipe):
    upright = mediapipe.detect(astronaut())[0]
    assert len(upright.keypoints) == 6
    (rx, ry), (lx, ly) = upright.keypoints[:2]
    assert rx < lx  # the subject's right eye is on the image's left
    for angle in (-30, -15, 15, 30):
        (tilted,) = mediapipe.detect(turned(astronaut(), angle))
        # cv2 turns counter-clockwise for positive angles: the eye line's angle falls by about as much (BlazeFace's
        # eye keypoints are a few degrees off on turned heads).
        assert np.sign(tilted.roll - upright.roll) == -np.sign(angle)
        assert abs(tilted.roll - upright.roll) == pytest.approx(abs(angle), abs=12)

    meta = ModelMetadata()
    straight = crop_faces(astronaut(), [upright.box], meta, [upright.roll])[0, ..., 0]
    (tilted,) = mediapipe.detect(turned(astronaut(), 25))
    righted = crop_faces(turned(astronaut(), 25), [tilted.box], meta, [tilted.roll])[0, ..., 0]
    not_righted = crop_faces(turned(astronaut(), 25), [tilted.box], meta)[0, ..., 0]
    correlation = lambda a, b: float(np.corrcoef(a.ravel(), b.ravel())[0, 1])  # noqa: E731
    assert correlation(straight, righted) > 0.85
    assert correlation(straight, righted) > correlation(straight, not_righted) + 0.1


def test_a_tilted_head_is_read_like_an_upright_one():
    with EmotionRecognizer() as rec:
        (upright,) = rec.analyze(astronaut())
        for angle in (-30, 30):
            (tilted,) = rec.analyze(turned(astronaut(), angle))
            assert tilted.label == upright.label == "happy"
            assert abs(tilted.scores["happy"] - upright.scores["happy"]) < 0.1


def test_haar_finds_the_eyes_of_a_frontal_face_and_profiles_both_ways():
    with create_detector(FaceDetectorOptions(backend="haar")) as haar:
        (face,) = haar.detect(astronaut())
        assert len(face.keypoints) == 2 and 0 < face.roll < 20  # her head leans a little
        camera = photographs()["cameraman"][0]
        for image, truth in ((camera, CAMERAMAN_FACE),
                             (camera[:, ::-1].copy(), (512 - CAMERAMAN_FACE[0] - CAMERAMAN_FACE[2],
                                                       *CAMERAMAN_FACE[1:]))):
            assert any(box_iou(d.box, truth) > 0.2 for d in haar.detect(image))  # its boxes take in the hair


def test_video_mode_finds_a_small_face_within_its_search_cycle_and_keeps_it():
    frame = photo_scene("astronaut", 1, 3, (28, 36), (1280, 720), seed=5)[0]
    with EmotionRecognizer() as rec:
        processor = rec.video_processor()
        cycle = (1 + len(search_tiles(1280, 720, 24))) * FAR_EVERY + FAR_EVERY
        found_at = {}
        for t in range(cycle + 10):
            faces = processor.process(frame.image).faces
            for truth_index, _ in matches(frame.faces, [f.box for f in faces]):
                found_at.setdefault(truth_index, t)
        assert len(found_at) == 3 and max(found_at.values()) < cycle
        last = processor.process(frame.image).faces  # once found, kept: looked at again around its track
        assert count_found(frame.faces, [f.box for f in last]) == 3
