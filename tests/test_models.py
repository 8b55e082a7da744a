"""Model builders: the row-reading RNN and transfer learning from our FER CNN or a keras.applications backbone."""

import keras
import numpy as np
import pytest

from fer_realtime.core.errors import FerError, ModelLoadError
from fer_realtime.core.model_file import ModelMetadata, load_model, save_model
from fer_realtime.training.architectures import (
    CNNConfig,
    PretrainedWeightsError,
    RNNConfig,
    TransferConfig,
    build_cnn,
    build_rnn,
    build_transfer,
)


def faces(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 48, 48, 1), dtype=np.float32), rng.integers(0, 7, n)


@pytest.fixture(scope="module")
def fer_model_file(tmp_path_factory):
    """A small saved CNN of our architecture, standing in for the shipped model."""
    keras.utils.set_random_seed(3)
    path = tmp_path_factory.mktemp("fer") / "small_cnn.keras"
    model = build_cnn(CNNConfig(stage_filters=(4, 8), convs_per_stage=(1, 1)))
    return save_model(model, ModelMetadata(metrics={"heldout_accuracy": 0.5}), path)


@pytest.mark.parametrize(
    "cell, bidirectional, layers",
    [("lstm", True, 2), ("gru", False, 1), ("gru", True, 1), ("lstm", False, 1)],
)
def test_rnn_reads_the_face_row_by_row(cell, bidirectional, layers):
    model = build_rnn(RNNConfig(cell=cell, bidirectional=bidirectional, layers=layers, units=4, augment=False))
    assert model.output_shape == (None, 7)
    assert model.get_layer("rows").output.shape == (None, 48, 48)  # 48 time steps (rows) of 48 pixels
    first = model.get_layer("rnn1")
    assert tuple(first.input.shape) == (None, 48, 48)
    recurrent = first.forward_layer if bidirectional else first
    assert isinstance(first, keras.layers.Bidirectional) == bidirectional
    assert isinstance(recurrent, {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell])
    assert first.output.shape[-1] == 4 * (2 if bidirectional else 1)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


def test_rnn_trains_and_round_trips_in_safe_mode(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_rnn(RNNConfig(units=4, layers=2))  # bidirectional LSTM with augmentation: the default shape
    # Eager: tracing a stacked bidirectional LSTM costs far more than one epoch of 32 faces.
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], run_eagerly=True)
    x, y = faces(16)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = save_model(model, ModelMetadata(architecture="rnn"), tmp_path / "rnn.keras")
    loaded = load_model(path)  # safe mode
    assert loaded.metadata.architecture == "rnn"
    np.testing.assert_allclose(loaded.model(x[:4], training=False), model(x[:4], training=False), atol=1e-6)


def test_rnn_rejects_an_unknown_cell():
    with pytest.raises(ValueError, match="lstm"):
        build_rnn(RNNConfig(cell="transformer"))


def test_transfer_from_our_fer_model_keeps_its_trained_stages(fer_model_file, tmp_path):
    source = load_model(fer_model_file).model
    built = build_transfer(TransferConfig(weights_path=str(fer_model_file), head_units=8), base="fer")
    model, backbone = built.model, built.model.get_layer("backbone")
    assert model.output_shape == (None, 7)
    assert built.backbone_blocks == [
        ["stage1_conv1", "stage1_bn1", "stage1_relu1", "stage1_pool"],
        ["stage2_conv1", "stage2_bn1", "stage2_relu1", "stage2_pool"],
    ]
    assert built.block_names == ["stage1", "stage2"]
    assert "small_cnn.keras" in built.base_description
    for name in ("stage1_conv1", "stage1_bn1", "stage2_conv1", "stage2_bn1"):
        for ours, theirs in zip(backbone.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    # Built as stage 0: the backbone frozen, only the new head trains.
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"head_dense", "emotion"}
    assert [layer.name for layer in model.layers[-5:]] == built.head_layers
    # The new model is a plain fer-realtime model file too.
    path = save_model(model, ModelMetadata(architecture="transfer"), tmp_path / "transfer.keras")
    x, _ = faces(3)
    np.testing.assert_allclose(load_model(path).model(x, training=False), model(x, training=False), atol=1e-6)


def test_transfer_from_a_missing_fer_model_says_so(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        build_transfer(TransferConfig(base="fer", weights_path=str(tmp_path / "none.keras")))


@pytest.mark.parametrize("base", ["mobilenet_v2", "resnet50", "efficientnet_b0", "vgg16"])
def test_application_base_without_weights_is_refused_not_randomly_initialised(base, tmp_path):
    with pytest.raises(PretrainedWeightsError, match="not available offline") as info:
        build_transfer(TransferConfig(base=base))
    message = str(info.value)
    assert "weights_path" in message and "base='fer'" in message
    assert isinstance(info.value, FerError) and isinstance(info.value, ValueError)
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        build_transfer(TransferConfig(base=base, weights_path=str(tmp_path / "missing.h5")))


def test_unknown_base_is_refused():
    with pytest.raises(ValueError, match="mobilenet_v2"):
        build_transfer(TransferConfig(base="alexnet"))


def test_application_base_loads_the_supplied_weights_file(tmp_path, fer_model_file):
    keras.utils.set_random_seed(1)
    source = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.35)
    weights = tmp_path / "mobilenet_v2_0.35_no_top.weights.h5"
    source.save_weights(weights)
    built = build_transfer(TransferConfig(base="mobilenet_v2", weights_path=str(weights), alpha=0.35,
                                          image_size=32, head_units=8, augment=False))
    model, backbone = built.model, built.model.get_layer("backbone")
    for layer in source.layers[1:]:  # its input layer aside
        for ours, theirs in zip(backbone.get_layer(layer.name).get_weights(), layer.get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    assert model.get_layer("resize").output.shape == (None, 32, 32, 1)
    assert not model.get_layer("to_rgb").trainable
    assert built.block_names == ["stem", *(f"block_{i}" for i in range(1, 17)), "top"]
    flat = [name for block in built.backbone_blocks for name in block]
    assert flat == [layer.name for layer in backbone.layers[1:]]  # every layer once, in order
    assert all(name.startswith("block_16_") for name in built.backbone_blocks[-2])
    assert "MobileNetV2" in built.base_description and weights.name in built.base_description
    x, _ = faces(2)
    assert model(x, training=False).shape == (2, 7)

    # A file for another network is refused with the same kind of error, never half-loaded.
    other = tmp_path / "cnn.weights.h5"
    load_model(fer_model_file).model.save_weights(other)
    with pytest.raises(PretrainedWeightsError, match="does not fit"):
        build_transfer(TransferConfig(base="mobilenet_v2", weights_path=str(other), alpha=0.35, image_size=32))
