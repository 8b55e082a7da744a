"""framing: the crop margin chosen by reading the selection faces through the detectors, and what it records."""

import json

import numpy as np
import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.model_file import load_model
from fer_realtime.evaluation.framing import (FramingScores, best_margin, best_margins, checked_margins, face_in_frame,
                                             margins_by_width)
from fer_realtime.core.errors import FerError
from helpers import write_train_val


def test_best_margin_is_the_highest_mean_over_detectors_and_the_smaller_on_a_tie():
    haar = FramingScores("haar", 160, 10, 8, 0.7, {0.0: 0.6, 0.1: 0.5})
    mediapipe = FramingScores("mediapipe", 160, 10, 9, 0.7, {0.0: 0.4, 0.1: 0.6})
    assert best_margin([haar, mediapipe]) == 0.1  # mean 0.55 against 0.50
    assert best_margin([FramingScores("haar", 160, 10, 8, 0.7, {0.0: 0.5, 0.1: 0.5})]) == 0.0
    nothing_found = FramingScores("haar", 160, 10, 0, 0.0, {0.0: 0.0, 0.1: 0.0})
    assert best_margin([nothing_found, mediapipe]) == 0.1  # a detector that found nothing has no say
    with pytest.raises(FerError, match="No detector found"):
        best_margin([nothing_found])
    with pytest.raises(FerError, match=r"\[0, 0.5\]"):
        checked_margins([0.1, -0.1])
    assert checked_margins([0.1, 0, 0.1]) == (0.0, 0.1)
    small_haar = FramingScores("haar", 48, 10, 8, 0.7, {0.0: 0.55, 0.1: 0.5})
    assert best_margins([haar, mediapipe, small_haar]) == (0.1, {"haar": 0.0, "mediapipe": 0.1})


def test_a_detector_whose_best_margin_differs_between_face_sizes_gets_one_by_box_width():
    near = FramingScores("mediapipe", 160, 10, 9, 0.7, {0.0: 0.6, 0.1: 0.5, 0.15: 0.4}, box_width=141.0)
    small = FramingScores("mediapipe", 48, 10, 8, 0.7, {0.0: 0.4, 0.1: 0.5, 0.15: 0.6}, box_width=42.0)
    middle = FramingScores("mediapipe", 96, 10, 8, 0.7, {0.0: 0.5, 0.1: 0.6, 0.15: 0.5}, box_width=84.5)
    unfound = FramingScores("mediapipe", 24, 10, 0, 0.0, {0.0: 0.0, 0.1: 0.0, 0.15: 0.0})
    haar = [FramingScores("haar", size, 10, 8, 0.7, {0.0: 0.6, 0.1: 0.5}, box_width=size) for size in (48, 160)]
    assert margins_by_width([near, small, middle, unfound, *haar]) == {
        "mediapipe": ((42.0, 0.15), (84.5, 0.1), (141.0, 0.0))}  # haar wants none at every size: no curve


def test_face_in_frame_puts_the_upscaled_face_in_the_middle_of_a_camera_frame():
    face = np.full((48, 48), 200, dtype=np.uint8)
    frame, (x, y) = face_in_frame(face, 160, np.random.default_rng(0))
    assert frame.shape == (480, 640, 3) and (x, y) == (240, 160)
    assert (frame[y : y + 160, x : x + 160] == 200).all()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("framing")
    data = write_train_val(root / "data", train_per_class=12)
    model = root / "model.keras"
    assert main(["train", "--data", str(data), "--arch", "cnn", "--recipe", "v1", "--epochs", "1", "--batch-size",
                 "16", "--no-augment", "--out", str(model), "--cache-dir", str(root / "cache")]) == 0
    return data, model, root / "cache"


def test_framing_command_measures_each_margin_and_keeps_the_best(trained, tmp_path, capsys):
    data, model, cache = trained
    out = tmp_path / "framed.keras"
    capsys.readouterr()
    assert main(["framing", str(model), "--data", str(data), "--detectors", "mediapipe,haar", "--margins", "0,0.1",
                 "--face-sizes", "160,96", "--out", str(out), "--cache-dir", str(cache)]) == 0
    text = capsys.readouterr().out
    assert "mediapipe, 96 px faces (boxes " in text and "haar, 160 px faces (boxes " in text
    framing = json.loads(out.with_suffix(".metrics.json").read_text())["framing"]
    assert {(s["detector"], s["face_size"]) for s in framing["scores"]} == {
        (detector, size) for detector in ("mediapipe", "haar") for size in (96, 160)}
    for score in framing["scores"]:
        assert set(score["by_margin"]) == {"0", "0.1"} and 0 <= score["found"] <= score["n"]
    found_by = {s["detector"] for s in framing["scores"] if s["found"]}
    assert found_by and set(framing["detector_margins"]) == found_by
    prep = load_model(out).metadata.preprocessing
    assert prep.crop_margin == framing["crop_margin"] in (0.0, 0.1)
    for name, margin in framing["detector_margins"].items():
        assert prep.margin_for(name) == margin in (0.0, 0.1)
        assert f"chosen crop margin for {name}: {margin:g}" in text
    for score in framing["scores"]:
        assert (score["box_width"] > 0) == (score["found"] > 0)
    assert set(framing["margins_by_width"]) <= found_by
    for name, points in framing["margins_by_width"].items():
        assert [list(p) for p in dict(prep.detector_margins_by_width)[name]] == points
        assert [prep.margin_for(name, width) for width, _ in points] == [margin for _, margin in points]
        assert f"by box width for {name}: " in text
    assert load_model(out).metadata.metrics["framing"] == framing


@pytest.mark.parametrize("option, message", [
    (["--margins", "0,0.7"], "[0, 0.5]"),
    (["--margins", "0,x"], "comma-separated numbers"),
    (["--detectors", "dlib"], "--detectors must name"),
    (["--face-sizes", "20"], "--face-sizes"),
])
def test_framing_command_refuses_bad_options(trained, tmp_path, capsys, option, message):
    data, model, cache = trained
    out = tmp_path / "never.keras"
    assert main(["framing", str(model), "--data", str(data), "--out", str(out), "--cache-dir", str(cache),
                 *option]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_the_analyzer_cuts_faces_with_its_own_detectors_margin(tmp_path):
    import dataclasses

    from fer_realtime.faces.crops import crop_faces
    from fer_realtime.inference.analyzer import FaceAnalyzer
    from helpers import astronaut_bgr, save_tiny_model

    loaded = load_model(save_tiny_model(tmp_path / "tiny.keras"))
    prep = dataclasses.replace(loaded.metadata.preprocessing, crop_margin=0.1, detector_margins=(("haar", 0.0),))
    loaded = dataclasses.replace(loaded, metadata=dataclasses.replace(loaded.metadata, preprocessing=prep))
    frame, box = astronaut_bgr(), (177, 66, 95, 95)
    for detector, margin in (("haar", 0.0), ("mediapipe", 0.1)):
        with FaceAnalyzer(detector=detector, model=loaded) as analyzer:
            crops = analyzer.crops(frame, [box])
        assert np.array_equal(crops, crop_faces(frame, [box], loaded.metadata, detector=detector))
        plain = dataclasses.replace(loaded.metadata, preprocessing=dataclasses.replace(prep, crop_margin=margin,
                                                                                       detector_margins=()))
        assert np.array_equal(crops, crop_faces(frame, [box], plain))
    by_width = dataclasses.replace(prep, detector_margins_by_width=(("mediapipe", ((45.0, 0.2), (145.0, 0.0))),))
    loaded = dataclasses.replace(loaded, metadata=dataclasses.replace(loaded.metadata, preprocessing=by_width))
    with FaceAnalyzer(detector="mediapipe", model=loaded) as analyzer:
        crops = analyzer.crops(frame, [box])
    plain = dataclasses.replace(loaded.metadata, preprocessing=dataclasses.replace(prep, crop_margin=0.1,
                                                                                   detector_margins=()))
    assert np.array_equal(crops, crop_faces(frame, [box], plain))  # 95 px: halfway, 0.1
