"""Stochastic weight averaging: `average` command, the averaged weights, and the batch-norm statistics."""

import json

import keras
import numpy as np
import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.model_file import load_model
from fer_realtime.training.architectures import CNNConfig, build_cnn
from fer_realtime.training.weight_averaging import _averaging_callback, recompute_batch_norm_statistics
from helpers import save_tiny_model


@pytest.fixture(scope="module")
def trained(model_made_by_train):
    """A model made by `train` on a small synthetic dataset (conftest's, shared with the tests of `train`): (dataset
    root, model file)."""
    return model_made_by_train.data, model_made_by_train.out


def test_batch_norm_statistics_become_the_means_over_the_unaugmented_data():
    keras.utils.set_random_seed(0)
    model = build_cnn(CNNConfig(stage_filters=(4,), convs_per_stage=(1,), augment=True, erasing=0.5))
    x = np.random.default_rng(0).random((64, 48, 48, 1)).astype("float32")
    norm = model.get_layer("stage1_bn1")
    recompute_batch_norm_statistics(model, x, batch_size=16)
    conv_out = keras.Model(model.input, model.get_layer("stage1_conv1").output).predict(x, verbose=0)
    np.testing.assert_allclose(np.asarray(norm.moving_mean), conv_out.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    batch_variances = [conv_out[i : i + 16].var(axis=(0, 1, 2)) for i in range(0, 64, 16)]
    np.testing.assert_allclose(np.asarray(norm.moving_variance), np.mean(batch_variances, axis=0), rtol=1e-3)
    assert norm.momentum == 0.99


def test_average_is_the_mean_of_the_epoch_end_weights_and_survives_a_restart(tmp_path):
    model = build_cnn(CNNConfig(stage_filters=(4,), convs_per_stage=(1,), augment=False))
    snapshots = [[np.full_like(w, float(k)) for w in model.get_weights()] for k in (1, 2, 6)]
    first = _averaging_callback(tmp_path)
    first.set_model(model)
    for epoch, weights in enumerate(snapshots[:2]):
        model.set_weights(weights)
        first.on_epoch_end(epoch)
    resumed = _averaging_callback(tmp_path)  # a new process after an interruption at epoch 2
    resumed.set_model(model)
    assert resumed.count == 2
    model.set_weights(snapshots[0])
    resumed.on_epoch_end(1)  # replayed by BackupAndRestore: already in the average
    model.set_weights(snapshots[2])
    resumed.on_epoch_end(2)
    assert resumed.count == 3 and all(np.all(a == 3.0) for a in resumed.average)
    resumed.on_train_end()
    assert not (tmp_path / "average.npz").exists()


def test_average_command_writes_an_averaged_model_with_its_figures(tmp_path, trained, capsys):
    data, base = trained
    out = tmp_path / "averaged.keras"
    checkpoints = tmp_path / "runs"
    code = main(["average", str(base), "--data", str(data), "--epochs", "2", "--out", str(out),
                 "--checkpoints", str(checkpoints), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "selection split: tta none" in printed
    averaged, original = load_model(out), load_model(base)
    assert averaged.metadata.training_data["weight_averaging"]["epochs"] == 2
    assert averaged.metadata.training_data["averaged_from"]["command"] == original.metadata.command
    assert averaged.metadata.command.startswith("python -m fer_realtime average ")
    kernel = averaged.model.get_layer("stage1_conv1").get_weights()[0]
    assert not np.allclose(kernel, original.model.get_layer("stage1_conv1").get_weights()[0])
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["heldout"]["accuracy"] == averaged.metadata.metrics["heldout_accuracy"]
    assert metrics["averaging_epochs"] == 2
    assert len((checkpoints / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs
    assert sorted(p.name for p in checkpoints.iterdir()) == ["config.json", "history.csv"]


def test_average_refuses_a_model_without_its_training_split(tmp_path, trained, capsys):
    data, _ = trained
    model = save_tiny_model(tmp_path / "plain.keras")
    code = main(["average", str(model), "--data", str(data), "--out", str(tmp_path / "out.keras"),
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
    assert "not a CNN trained by `train`" in capsys.readouterr().err
    assert not (tmp_path / "out.keras").exists()
