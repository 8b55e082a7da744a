"""compare-models: two models on the same faces, McNemar's exact test, and the command's refusals."""

import json
import shutil
from math import comb

import numpy as np
import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.labels import EMOTIONS
from fer_realtime.core.model_file import ModelMetadata, save_model
from fer_realtime.data.loader import load_dataset
from fer_realtime.evaluation.paired_comparison import compare_predictions, mcnemar_exact_p
from helpers import fitted_tiny_model, save_tiny_model, write_train_val


def test_mcnemar_exact_p_values():
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact_p(9, 1) == pytest.approx(2 * (1 + 10) / 1024)
    assert mcnemar_exact_p(3, 7) == mcnemar_exact_p(7, 3)
    assert mcnemar_exact_p(46, 47) == 1.0  # a near-even split is no evidence at all
    expected = 2 * sum(comb(129, k) for k in range(46)) / 2**129
    assert mcnemar_exact_p(45, 84) == pytest.approx(expected)
    assert mcnemar_exact_p(45, 84) < 0.001


def test_compare_predictions_counts_the_faces_each_model_alone_gets_right():
    true = np.array([0, 1, 2, 2, 1])
    a = np.eye(3)[[0, 1, 2, 0, 0]] * 0.8 + 0.2 / 3  # right on faces 0, 1, 2
    b = np.eye(3)[[0, 2, 2, 2, 1]] * 0.8 + 0.2 / 3  # right on faces 0, 2, 3, 4
    result = compare_predictions(true, a, b)
    assert (result.n, result.only_a_right, result.only_b_right) == (5, 1, 2)
    assert result.accuracy_a == pytest.approx(0.6) and result.accuracy_b == pytest.approx(0.8)
    right, wrong = 0.8 + 0.2 / 3, 0.2 / 3
    assert result.log_loss_a == pytest.approx(-(3 * np.log(right) + 2 * np.log(wrong)) / 5)
    assert result.log_loss_b < result.log_loss_a
    assert result.p_value == pytest.approx(mcnemar_exact_p(1, 2))
    with pytest.raises(ValueError):
        compare_predictions(true, a, b[:4])


def _fitted_model(path, data, seed: int, split_seed: int):
    """A tiny network fitted briefly, recording the selection split (seed, 10 %) of a `train` run on `data`."""
    n = len(load_dataset(data).train)
    metadata = ModelMetadata(classes=EMOTIONS, architecture="cnn", command=f"fitted, seed {seed}",
                             training_data={"config": {"seed": split_seed, "selection_fraction": 0.1},
                                            "n_fit": n - n // 10, "n_selection": n // 10})
    return save_model(fitted_tiny_model(data, seed, epochs=2), metadata, path)


@pytest.fixture(scope="module")
def two_trained_models(tmp_path_factory):
    """Two different models of the same selection split (seed 7), and one of another split (seed 8). Fitted
    directly rather than by `train` (three full-size runs took 30 s): `compare-models` reads only the files."""
    root = tmp_path_factory.mktemp("paired")
    data = write_train_val(root / "data", train_per_class=8)
    models = {name: _fitted_model(root / f"{name}.keras", data, seed, split_seed)
              for name, seed, split_seed in (("a", 1, 7), ("b", 2, 7), ("other_split", 3, 8))}
    return data, models, root / "cache"


@pytest.mark.parametrize("split", ["heldout", "selection"])
def test_compare_models_reports_both_models_on_the_same_faces(two_trained_models, capsys, split):
    data, models, cache = two_trained_models
    capsys.readouterr()
    assert main(["compare-models", str(models["a"]), str(models["b"]), "--data", str(data), "--split", split,
                 "--json", "--cache-dir", str(cache)]) == 0
    report = json.loads(capsys.readouterr().out)
    n_val = len(load_dataset(data / "val").train)
    assert report["n"] == n_val if split == "heldout" else 0 < report["n"] < n_val * 8 / 3
    for side in ("a", "b"):
        assert 0.0 <= report[f"accuracy_{side}"] <= 1.0 and report[f"log_loss_{side}"] > 0
    assert report["only_a_right"] + report["only_b_right"] <= report["n"]
    assert 0.0 < report["p_value"] <= 1.0
    # the same model against itself: no face is right for one and wrong for the other
    assert main(["compare-models", str(models["a"]), str(models["a"]), "--data", str(data), "--split", split,
                 "--cache-dir", str(cache)]) == 0
    text = capsys.readouterr().out
    assert "only a.keras gets right: 0; only a.keras: 0" in text and "p = 1" in text


def test_compare_models_refuses_models_of_different_splits_or_classes(two_trained_models, tmp_path, capsys):
    data, models, cache = two_trained_models
    capsys.readouterr()
    assert main(["compare-models", str(models["a"]), str(models["other_split"]), "--data", str(data),
                 "--split", "selection", "--cache-dir", str(cache)]) != 0
    assert "different selection splits" in capsys.readouterr().err
    five_classes = save_tiny_model(tmp_path / "five.keras", num_classes=5)
    assert main(["compare-models", str(models["a"]), str(five_classes), "--data", str(data),
                 "--cache-dir", str(cache)]) != 0
    assert "differ in their classes" in capsys.readouterr().err


def test_compare_models_on_every_face_of_another_dataset(two_trained_models, tmp_path, capsys):
    """--split all: a cross-dataset check such as CK+48, whose folders need not match the models' classes."""
    data, models, cache = two_trained_models
    other = tmp_path / "other"
    shutil.copytree(data / "val", other)
    shutil.rmtree(other / "neutral")
    (other / "contempt").mkdir()
    shutil.copy(next((other / "happy").iterdir()), other / "contempt" / "extra.png")
    n_faces = sum(1 for folder in other.iterdir() if folder.name != "contempt" for _ in folder.iterdir())
    capsys.readouterr()
    assert main(["compare-models", str(models["a"]), str(models["b"]), "--data", str(other), "--split", "all",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == n_faces and "skipped: contempt" in report["faces"]
    assert report["only_a_right"] + report["only_b_right"] <= n_faces
