"""Checks against the real FER2013 data set; skipped where ../shared/datasets/fer2013 is absent."""

import json
from pathlib import Path

import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.model_file import SHIPPED_MODEL_PATH

FER2013 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fer2013"
needs_fer2013 = pytest.mark.skipif(not (FER2013 / "val").is_dir(), reason=f"FER2013 not found at {FER2013}")


def test_shipped_model_and_metrics_file_exist():
    assert SHIPPED_MODEL_PATH.is_file()
    metrics = json.loads(SHIPPED_MODEL_PATH.with_suffix(".metrics.json").read_text())
    # Made by `average` from a model made by `train` (weights/README.md): both commands are on record.
    assert metrics["command"].startswith("python -m fer_realtime average ")
    assert metrics["averaged_model"]["command"].startswith("python -m fer_realtime train ")
    assert metrics["heldout"]["accuracy"] >= 0.66
    assert metrics["int8"]["used"]


def test_shipped_model_carries_an_int8_copy_of_its_own_weights():
    from fer_realtime.core.model_file import load_model
    from fer_realtime.inference.engine import InferenceEngine

    loaded = load_model(SHIPPED_MODEL_PATH)
    assert loaded.int8_tflite is not None and loaded.metadata.flip_tta
    engine = InferenceEngine(loaded, runtime="auto")
    engine.warm_up()
    if engine.device == "CPU":
        assert "int8" in engine.runtime, engine.tflite_problem


@needs_fer2013
def test_shipped_model_accuracy_on_val_matches_its_metrics_file(capsys):
    assert main(["evaluate", str(FER2013 / "val"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    metrics = json.loads(SHIPPED_MODEL_PATH.with_suffix(".metrics.json").read_text())
    assert report["n"] == 3589
    assert report["accuracy"] >= 0.64
    assert report["accuracy"] == pytest.approx(metrics["heldout"]["accuracy"], abs=0.002)


@needs_fer2013
def test_shipped_model_confidence_is_calibrated_on_val(capsys):
    from fer_realtime.core.model_file import load_model

    meta = load_model(SHIPPED_MODEL_PATH).metadata
    assert meta.temperature != 1.0 and "temperature" in meta.metrics["selection_calibration"]  # fitted, not assumed
    assert main(["evaluate", str(FER2013 / "val"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calibration_error"] <= 0.05
    assert 0.6 <= report["macro_recall"] <= report["accuracy"] + 0.05
