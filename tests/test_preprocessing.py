import json

import numpy as np
import pytest

from fer_realtime.core.model_file import ModelMetadata, Preprocessing
from fer_realtime.core.preprocessing import normalize
from fer_realtime.faces.crops import crop_faces, expand_box


def test_expand_box_clips_to_frame():
    assert expand_box((10, 10, 100, 100), 0.1, 640, 480) == (0, 0, 120, 120)
    assert expand_box((600, 440, 40, 40), 0.25, 640, 480) == (590, 430, 50, 50)


def test_crop_faces_batch_shape_and_scaling():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[100:200, 100:200] = 255
    meta = ModelMetadata(preprocessing=Preprocessing(crop_margin=0.0))
    batch = crop_faces(frame, [(100, 100, 100, 100), (300, 300, 20, 30)], meta)
    assert batch.shape == (2, 48, 48, 1) and batch.dtype == np.float32
    assert np.allclose(batch[0], 1.0)  # white face, scaled by 1/255
    assert np.allclose(batch[1], 0.0)


def test_crop_faces_empty_and_grayscale_input():
    meta = ModelMetadata()
    assert crop_faces(np.zeros((10, 10, 3), np.uint8), [], meta).shape == (0, 48, 48, 1)
    gray = np.full((100, 100), 128, np.uint8)
    batch = crop_faces(gray, [(10, 10, 50, 50)], meta)
    assert np.allclose(batch, 128 / 255)


def test_normalize_follows_metadata():
    faces = np.full((1, 4, 4), 200, np.uint8)
    out = normalize(faces, Preprocessing(scale=1 / 127.5, offset=-1.0))
    assert out.shape == (1, 4, 4, 1)
    assert np.allclose(out, 200 / 127.5 - 1.0)


def test_each_detector_can_have_its_own_crop_margin():
    prep = Preprocessing(crop_margin=0.1, detector_margins=[["haar", 0.0]])
    assert prep.detector_margins == (("haar", 0.0),)
    assert prep.margin_for("haar") == 0.0 and prep.margin_for("mediapipe") == 0.1 and prep.margin_for(None) == 0.1
    with pytest.raises(ValueError, match="crop margins"):
        Preprocessing(detector_margins=(("haar", 0.9),))
    meta = ModelMetadata(preprocessing=prep)
    assert ModelMetadata.from_dict(json.loads(meta.to_json())).preprocessing == prep
    frame = np.zeros((200, 200, 3), dtype=np.uint8)
    frame[50:150, 50:150] = 255  # a white square on black: its box, cut with a margin, shows black edges
    tight = crop_faces(frame, [(50, 50, 100, 100)], meta, detector="haar")
    loose = crop_faces(frame, [(50, 50, 100, 100)], meta, detector="mediapipe")
    assert tight.min() == 1.0 and loose.min() == 0.0


def test_a_detectors_margin_can_follow_the_width_of_its_boxes():
    prep = Preprocessing(crop_margin=0.1, detector_margins=[["mediapipe", 0.05]],
                         detector_margins_by_width=[["mediapipe", [[40, 0.15], [140, 0.0]]]])
    assert prep.detector_margins_by_width == (("mediapipe", ((40.0, 0.15), (140.0, 0.0))),)
    assert prep.margin_for("mediapipe", 20) == 0.15 and prep.margin_for("mediapipe", 400) == 0.0
    assert prep.margin_for("mediapipe", 90) == pytest.approx(0.075)  # halfway between the widths
    assert prep.margin_for("mediapipe") == 0.05 and prep.margin_for("haar", 40) == 0.1  # no width; no curve
    for bad in ([["mediapipe", [[140, 0.0], [40, 0.15]]]], [["mediapipe", [[40, 0.9]]]], [["mediapipe", []]]):
        with pytest.raises(ValueError, match="crop margins"):
            Preprocessing(detector_margins_by_width=bad)
    meta = ModelMetadata(preprocessing=prep)
    assert ModelMetadata.from_dict(json.loads(meta.to_json())).preprocessing == prep
    frame = np.zeros((400, 400, 3), dtype=np.uint8)
    frame[20:60, 20:60] = 255  # a small white square and a large one, each on black
    frame[200:360, 200:360] = 255
    small, large = crop_faces(frame, [(20, 20, 40, 40), (200, 200, 160, 160)], meta, detector="mediapipe")
    assert small.min() == 0.0 and large.min() == 1.0  # the small box is cut with room around it, the large without
