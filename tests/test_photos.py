"""Photos analysed as a batch for the Photos tab (fer_realtime.app.photos): results in `predict --json`'s shape,
CSV rows, the annotated zip, and a bad file among good ones."""

import csv
import io
import json
import zipfile

import cv2
import numpy as np
import pytest

from fer_realtime import EMOTIONS, EmotionRecognizer
from fer_realtime.app.photos import analyze_photo, annotated_zip, csv_columns, results_csv, results_json
from fer_realtime.cli.main import main
from fer_realtime.faces.detectors import still_image_options
from helpers import astronaut_bgr


def encode(image: np.ndarray, suffix: str) -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def results():
    with EmotionRecognizer(detector=still_image_options("mediapipe")) as recognizer:
        return [analyze_photo("astronaut.png", encode(astronaut_bgr(), ".png"), recognizer),
                analyze_photo("astronaut.jpg", encode(astronaut_bgr(), ".jpg"), recognizer),
                analyze_photo("wall.png", encode(np.full((200, 300, 3), 120, np.uint8), ".png"), recognizer),
                analyze_photo("broken.jpg", b"\xff\xd8 not a jpeg", recognizer)]


def test_a_bad_photo_is_one_sentence_and_the_others_are_analysed(results):
    good, _, wall, broken = results
    assert len(good.faces) == 1 and good.error is None and good.annotated.shape == astronaut_bgr().shape
    assert wall.faces == [] and wall.error is None
    assert broken.faces == [] and broken.annotated is None
    assert "broken.jpg" in broken.error and "\n" not in broken.error and broken.error.endswith(".")


def test_results_json_has_the_shape_predict_prints(results, tmp_path, capsys):
    ours = json.loads(results_json(results[:1]))
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), astronaut_bgr())
    assert main(["predict", str(path), "--detector", "mediapipe", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert ours[0]["faces"] == printed[0]["faces"]  # the same faces, box, label, confidence and scores
    assert json.loads(results_json(results[3:]))[0] == {"image": "broken.jpg", "error": results[3].error}


def test_results_csv_has_a_row_per_face_and_one_per_photo_without(results):
    rows = list(csv.DictReader(io.StringIO(results_csv(results, EMOTIONS).decode())))
    assert list(rows[0]) == csv_columns(EMOTIONS)
    assert [(r["image"], r["face"], r["error"] != "") for r in rows] == [
        ("astronaut.png", "1", False), ("astronaut.jpg", "1", False), ("wall.png", "", False),
        ("broken.jpg", "", True)]
    face = results[0].faces[0]
    assert rows[0]["label"] == face.label and float(rows[0]["happy"]) == pytest.approx(face.scores["happy"], abs=1e-6)


def test_the_annotated_zip_holds_a_png_per_readable_photo(results):
    archive = zipfile.ZipFile(io.BytesIO(annotated_zip(results)))
    assert archive.namelist() == ["astronaut_annotated.png", "astronaut_annotated_2.png", "wall_annotated.png"]
    image = cv2.imdecode(np.frombuffer(archive.read("astronaut_annotated.png"), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(image, results[0].annotated)
