"""int8 copies: made by `quantize` (and `train`), stored in the model file, used by the engine when they match."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.model_file import LoadedModel, ModelMetadata, load_model, save_model
from fer_realtime.core.preprocessing import normalize
from fer_realtime.data.loader import load_dataset
from fer_realtime.inference.calibration import apply_temperature
from fer_realtime.inference.engine import InferenceEngine
from fer_realtime.inference.runtimes import convert_int8
from helpers import fitted_tiny_model, tiny_model, write_train_val


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantize_data")
    return write_train_val(root, train_per_class=12)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A tiny network fitted briefly on the synthetic faces, saved with its selection split recorded."""
    model = fitted_tiny_model(data, seed=3, epochs=8)
    metadata = ModelMetadata(architecture="cnn", command="python -m fer_realtime train (the original command)",
                             training_data={"config": {"seed": 1234, "selection_fraction": 0.1}})
    return save_model(model, metadata, tmp_path_factory.mktemp("models") / "tiny.keras")


def test_quantize_stores_an_int8_copy_that_the_engine_uses_and_evaluate_reports(trained, data, tmp_path, capsys):
    out = tmp_path / "tiny_int8.keras"
    assert main(["quantize", str(trained), "--data", str(data), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "int8 copy on the selection split" in capsys.readouterr().out

    loaded = load_model(out)
    info = loaded.metadata.int8
    assert info["used"] is True and loaded.int8_tflite is not None
    assert info["calibration_faces"] > 0 and 0.0 <= info["agreement_with_float"] <= 1.0
    assert loaded.metadata.command == "python -m fer_realtime train (the original command)"
    engine = InferenceEngine(loaded)
    faces = normalize(load_dataset(data).splits["val"].images[:5], loaded.metadata.preprocessing)
    float_net = apply_temperature(loaded.model.predict(faces, verbose=0), loaded.metadata.temperature)  # quantize calibrates
    np.testing.assert_allclose(engine.predict(faces), float_net, atol=0.05)
    assert "int8" in engine.runtime and engine.tflite_problem == ""

    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["quantize_command"].startswith("python -m fer_realtime quantize")
    assert metrics["int8"]["weights_digest"] == info["weights_digest"]
    assert main(["evaluate", str(data / "val"), "--model", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == metrics["heldout"]["accuracy"]
    assert evaluated["confusion"] == metrics["heldout"]["confusion"]


def test_a_copy_made_from_other_weights_is_not_used(trained, data, tmp_path, capsys):
    quantized = tmp_path / "q.keras"
    assert main(["quantize", str(trained), "--data", str(data), "--out", str(quantized),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    loaded = load_model(quantized)
    # The weights change after quantizing (say, further training) but the old copy is still in the file.
    weights = [w + 0.01 for w in loaded.model.get_weights()]
    loaded.model.set_weights(weights)
    changed = save_model(loaded.model, loaded.metadata, tmp_path / "changed.keras", int8_tflite=loaded.int8_tflite)
    reloaded = load_model(changed)
    assert reloaded.int8_tflite is None
    assert "int8" not in InferenceEngine(reloaded).runtime


def test_the_engine_refuses_an_int8_copy_that_disagrees_with_the_network(trained, data):
    loaded = load_model(trained)
    keras.utils.set_random_seed(11)
    stranger = tiny_model()
    calibration = np.random.default_rng(0).random((16, 48, 48, 1), dtype=np.float32)
    engine = InferenceEngine(LoadedModel(loaded.model, loaded.metadata, loaded.path,
                                         int8_tflite=convert_int8(stranger, calibration)))
    faces = normalize(load_dataset(data).splits["val"].images[:3], loaded.metadata.preprocessing)
    np.testing.assert_allclose(engine.predict(faces), loaded.model.predict(faces, verbose=0), atol=1e-3)
    assert "int8 copy not used" in engine.tflite_problem and "int8" not in engine.runtime


def test_quantize_needs_the_recorded_selection_split(trained, data, tmp_path, capsys):
    loaded = load_model(trained)
    bare = save_model(loaded.model, dataclasses.replace(loaded.metadata, training_data={}), tmp_path / "bare.keras")
    assert main(["quantize", str(bare), "--data", str(data), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "selection split" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["bare.keras"]


def test_quantize_refuses_a_dataset_of_another_size_than_the_models(trained, data, tmp_path, capsys):
    loaded = load_model(trained)
    training_data = {**loaded.metadata.training_data, "n_fit": 500, "n_selection": 50}
    other = save_model(loaded.model, dataclasses.replace(loaded.metadata, training_data=training_data),
                       tmp_path / "other.keras")
    assert main(["quantize", str(other), "--data", str(data), "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "trained on 550 images" in capsys.readouterr().err
