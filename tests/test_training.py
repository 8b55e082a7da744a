import json

import numpy as np

from fer_realtime.cli.main import main
from fer_realtime.core.model_file import load_model
from fer_realtime.training.recipes import recipe_config
from fer_realtime.training.trainer import build_model, class_weights
from helpers import write_class_folders


def test_class_weights_favour_rare_classes():
    labels = np.repeat(np.arange(3), [100, 10, 50])
    w = class_weights(labels, 3, power=0.5)
    assert w[1] > w[2] > w[0]
    assert class_weights(labels, 3, power=0.0) == {0: 1.0, 1: 1.0, 2: 1.0}


def test_tiny_end_to_end_training_run(model_made_by_train):
    out = model_made_by_train.out
    loaded = load_model(out)
    assert "val" in loaded.metadata.metrics["heldout_data"]
    assert 0.0 <= loaded.metadata.metrics["heldout_accuracy"] <= 1.0
    assert loaded.metadata.command.startswith("python -m fer_realtime ")
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["heldout"]["n"] == 21
    assert metrics["heldout"]["accuracy"] == loaded.metadata.metrics["heldout_accuracy"]
    assert sorted(p.name for p in out.parent.iterdir() if p.is_file()) == ["tiny.keras", "tiny.metrics.json"]


def test_named_recipes_build_the_networks_they_describe():
    assert recipe_config("v2", epochs=3).epochs == 3
    v1 = build_model(recipe_config("v1"), (48, 48, 1), 7)
    v2 = build_model(recipe_config("v2"), (48, 48, 1), 7)
    v3 = build_model(recipe_config("v3"), (48, 48, 1), 7)
    assert "stage1_conv2" not in [layer.name for layer in v1.layers]
    assert v2.get_layer("stage4_conv2").filters == 256 and v3.get_layer("stage4_conv2").filters == 384
    assert v1.count_params() < v2.count_params() < v3.count_params()
    v5 = build_model(recipe_config("v5"), (48, 48, 1), 7)
    assert v5.count_params() == v2.count_params() and v5.get_layer("stage1_conv1").input.shape[1:3] == (40, 40)


def test_a_centre_crop_recipe_chooses_among_its_ten_crops_too(tmp_path):
    counts = {name: 8 for name in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")}
    write_class_folders(tmp_path / "data" / "train", counts, seed=3)
    write_class_folders(tmp_path / "data" / "val", {k: 2 for k in counts}, seed=4)
    out = tmp_path / "v5.keras"
    assert main(["train", "--data", str(tmp_path / "data"), "--recipe", "v5", "--epochs", "1", "--batch-size", "16",
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    metadata = load_model(out).metadata
    assert list(metadata.metrics["selection_accuracy_by_tta"]) == [
        "none", "flip", "flip + rotate +8/-8", "flip + corner crops ±4"]
    assert metadata.training_data["config"]["crop"] == 40
