import json
import zipfile

import keras
import numpy as np
import pytest

from fer_realtime.core.errors import ModelLoadError
from fer_realtime.core.labels import EMOTIONS
from fer_realtime.core.model_file import METADATA_ENTRY, ModelMetadata, load_model, read_metadata, save_model
from helpers import save_tiny_model, tiny_model


def test_round_trip_keeps_metadata_and_predictions(tmp_path):
    model = tiny_model()
    meta = ModelMetadata(metrics={"heldout_accuracy": 0.5}, command="python -m fer_realtime train ...")
    path = save_model(model, meta, tmp_path / "m.keras")
    loaded = load_model(path)
    assert loaded.metadata.classes == EMOTIONS
    assert loaded.metadata.input_size == (48, 48)
    assert loaded.metadata.metrics["heldout_accuracy"] == 0.5
    x = np.random.default_rng(0).random((2, 48, 48, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.model.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary file left behind


def test_not_a_zip(tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelLoadError, match="not a Keras .keras model file"):
        load_model(path)


def test_missing_and_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope.keras")
    with pytest.raises(ModelLoadError, match="folder"):
        read_metadata(tmp_path)


def test_zip_that_is_not_keras(tmp_path):
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ModelLoadError, match="not a Keras model"):
        load_model(path)


def test_keras_model_that_is_not_ours(tmp_path):
    path = tmp_path / "plain.keras"
    tiny_model().save(path)
    with pytest.raises(ModelLoadError, match="not a fer-realtime model"):
        load_model(path)


def test_lambda_layer_is_refused_by_safe_mode(tmp_path):
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(7, activation="softmax")(x)
    path = save_model(keras.Model(inputs, outputs), ModelMetadata(), tmp_path / "lambda.keras")
    with pytest.raises(ModelLoadError, match="Lambda|safe mode"):
        load_model(path)


def test_wrong_number_of_classes(tmp_path):
    path = tmp_path / "m.keras"
    save_model(tiny_model(num_classes=5), ModelMetadata(), path)  # metadata says 7 classes
    with pytest.raises(ModelLoadError, match="5"):
        load_model(path)


def test_bad_metadata(tmp_path):
    path = save_tiny_model(tmp_path / "m.keras")
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(METADATA_ENTRY + ".x", "")
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == METADATA_ENTRY:
                data = json.dumps({"format": "something-else"}).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelLoadError, match="metadata is invalid"):
        load_model(bad)


def test_flip_setting_round_trips_and_training_state_is_not_saved(tmp_path):
    import zipfile

    import keras

    from fer_realtime.core.model_file import ModelMetadata, load_model, save_model
    from helpers import tiny_model

    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy")
    model.fit(np.zeros((4, 48, 48, 1), np.float32), np.arange(4), epochs=1, verbose=0)  # optimizer has state now
    path = save_model(model, ModelMetadata(flip_tta=True), tmp_path / "m.keras")
    loaded = load_model(path)
    assert loaded.metadata.flip_tta is True
    with zipfile.ZipFile(path) as archive:
        assert "optimizer" not in archive.read("config.json").decode()
    x = np.random.default_rng(0).random((2, 48, 48, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.model(x, training=False), model(x, training=False), atol=1e-6)
