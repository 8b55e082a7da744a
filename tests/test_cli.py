import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.labels import EMOTIONS
from helpers import astronaut_bgr, write_class_folders

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def images(tmp_path):
    good = tmp_path / "astronaut.png"
    cv2.imwrite(str(good), astronaut_bgr())
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return good, bad


def test_predict_json_reports_faces_and_per_file_errors(images, tmp_path, capsys):
    good, bad = images
    code = main(["predict", str(good), str(bad), str(tmp_path / "missing.png"), "--json", "--out", str(tmp_path / "out")])
    assert code != 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == [str(good), str(bad), str(tmp_path / "missing.png")]
    (face,) = results[0]["faces"]
    assert set(face) == {"box", "label", "confidence", "scores"}
    assert face["label"] in EMOTIONS and len(face["box"]) == 4
    assert set(face["scores"]) == set(EMOTIONS)
    for failed in results[1:]:
        assert set(failed) == {"image", "error"} and failed["error"].endswith(".")
    annotated = tmp_path / "out" / "astronaut_annotated.png"
    assert cv2.imread(str(annotated)).shape == (512, 512, 3)


def test_predict_text_output_and_success_exit_code(images, capsys):
    good, _ = images
    assert main(["predict", str(good)]) == 0
    assert "face 1 at" in capsys.readouterr().out


def test_evaluate_json_with_aliases_and_skipped_folders(tmp_path, capsys):
    write_class_folders(tmp_path, {"Happiness": 3, "sadness": 2, "contempt": 2})
    assert main(["evaluate", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"accuracy", "macro_recall", "calibration_error", "n", "per_class", "confusion", "classes",
                           "skipped", "labels", "left_out"}
    assert report["n"] == 5 and report["skipped"] == ["contempt"]
    assert report["per_class"]["angry"]["recall"] is None  # absent from the data: no figure, not 0
    present = [report["per_class"][c]["recall"] for c in ("happy", "sad")]
    assert report["macro_recall"] == pytest.approx(sum(present) / 2) and 0 <= report["calibration_error"] <= 1
    assert report["classes"] == list(EMOTIONS)
    assert report["per_class"]["happy"]["n"] == 3 and report["per_class"]["sad"]["n"] == 2
    assert sum(map(sum, report["confusion"])) == 5


def test_evaluate_bad_folder_is_one_clear_message(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err


def test_installed_entry_point_runs(images):
    good, bad = images
    proc = subprocess.run(
        [sys.executable, "-m", "fer_realtime", "predict", str(bad), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 1
    assert json.loads(proc.stdout)[0]["error"]
    assert "Traceback" not in proc.stderr
