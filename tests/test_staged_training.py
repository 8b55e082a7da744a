"""The ImageNet recipe: Lite0's head first, then its stages unfrozen from the top, on the FER+ votes or a mix, as a
run that survives an interruption at a stage boundary or inside a stage; and the votes for every architecture."""

import json

import numpy as np
import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.labels import EMOTIONS
from fer_realtime.core.model_file import load_model
from fer_realtime.data.ferplus import VOTE_COLUMNS, read_votes
from fer_realtime.data.loader import load_dataset
from fer_realtime.training.recipes import recipe_config
from fer_realtime.training.trainer import train_classifier
from helpers import Interrupted, interrupt_before_epoch, write_train_val

# Lite0 at 32 px (the smallest it takes): stages head (1 epoch), then + top for the rest (2 epochs).
TINY_T1 = dict(image_size=32, epochs=3, stage_epochs=(1,), batch_size=16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_train_val(tmp_path_factory.mktemp("data"), train_per_class=6, val_per_class=2)
    rows = ["file,fer2013_label,ferplus_image," + ",".join(VOTE_COLUMNS)]
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for path in sorted((root / split).rglob("*.png")):
            votes = rng.multinomial(10, [0.6, *[0.4 / 6] * 6])  # most faces mostly "neutral" to the annotators
            rows.append(f"{split}/{path.parent.name}/{path.name},{path.parent.name},x.png,"
                        + ",".join(map(str, votes)) + ",0,0,0")
    (root / "ferplus_votes.csv").write_text("\n".join(rows) + "\n")
    return root


def test_stages_unfreeze_from_the_top_and_a_cut_run_continues_exactly(tmp_path, data):
    train = load_dataset(data).train
    votes = read_votes(data / "ferplus_votes.csv")
    config = recipe_config("t1", labels="mix", votes_weight=0.5, **TINY_T1)
    whole = train_classifier(train, config, tmp_path / "whole", verbose=0, votes=votes)
    assert whole.history["stage"] == ["head", "head + top 1 block (top)", "head + top 1 block (top)"]
    stages = whole.metadata.metrics["stages"]
    assert [s["epochs"] for s in stages] == [1, 2]
    assert stages[1]["learning_rate"] == pytest.approx(stages[0]["learning_rate"] * 0.3)
    assert "ImageNet" in whole.metadata.training_data["pretrained_base"]
    assert whole.metadata.metrics["selection_labels"] == "mix"
    assert whole.metadata.flip_tta is not None and len(whole.metadata.tta_rotations) == 0  # at most 2 views

    # Cut at a stage boundary (before the second stage), then again inside the last stage (before its second
    # epoch): the run that ends is the one that never stopped.
    for cut in (1, 2):
        with pytest.raises(Interrupted):
            train_classifier(train, config, tmp_path / "cut", verbose=0, votes=votes,
                             callbacks=[interrupt_before_epoch(cut)], handover=tmp_path / "handover.npz")
    resumed = train_classifier(train, config, tmp_path / "cut", verbose=0, votes=votes)
    assert resumed.history["loss"] == pytest.approx(whole.history["loss"], rel=1e-5)
    assert resumed.history["stage"] == whole.history["stage"]


def test_votes_need_their_file_and_a_weight(tmp_path, data, capsys):
    args = ["train", "--data", str(data), "--recipe", "t1", "--epochs", "8", "--out", str(tmp_path / "m.keras")]
    assert main([*args, "--labels", "ferplus", "--votes", str(tmp_path / "none.csv")]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert main([*args, "--votes-weight", "0.3"]) == 2
    assert "--votes-weight goes with --labels mix" in capsys.readouterr().err
    assert main([*args, "--arch", "rnn"]) == 2
    assert "trains a transfer model" in capsys.readouterr().err
    assert main([*args, "--transfer-base", "fer"]) == 2
    assert "starts from ImageNet efficientnet_lite0" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["cnn", "rnn"])
def test_every_architecture_learns_from_the_votes(tmp_path, data, arch, capsys):
    out = tmp_path / f"{arch}.keras"
    extra = ["--recipe", "v1"] if arch == "cnn" else []
    code = main(["train", "--data", str(data), "--arch", arch, *extra, "--epochs", "1", "--batch-size", "16",
                 "--labels", "ferplus", "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    metadata = load_model(out).metadata
    if arch == "cnn":
        assert metadata.training_data["config"]["labels"] == "ferplus"
        assert metadata.training_data["config"]["votes_weight"] == 1.0
        # The selection split is scored against the votes' top class: mostly neutral here.
        assert metadata.metrics["selection_labels"] == "ferplus"
        assert json.loads(out.with_suffix(".metrics.json").read_text())["heldout"]["n"] == 14
    else:
        assert any("labels: ferplus" in note for note in metadata.training_data["notes"])
    assert EMOTIONS == tuple(metadata.classes)


def test_the_transfer_architecture_starts_from_imagenet_without_a_file(tmp_path, data, capsys):
    out = tmp_path / "transfer.keras"
    assert main(["train", "--data", str(data), "--arch", "transfer", "--epochs", "2", "--batch-size", "16",
                 "--out", str(out)]) == 0
    metadata = load_model(out).metadata
    assert [s["stage"] for s in metadata.metrics["stages"]] == ["head", "head + top 1 block (top)"]
    (note,) = [n for n in metadata.training_data["notes"] if n.startswith("pretrained base")]
    assert "EfficientNet-Lite0 with ImageNet weights" in note and "96x96" in note
    assert "head + top 1 block (top)" in capsys.readouterr().out  # each epoch's line names its stage


def test_recipe_t2_unfreezes_the_whole_backbone_one_stage_at_a_time():
    from fer_realtime.training.trainer import _plan_stages, build_network

    config = recipe_config("t2", image_size=32, epochs=14)
    _, transfer = build_network(config, (48, 48, 1), len(EMOTIONS))
    stages = _plan_stages(config, transfer)
    assert [s.epochs for s in stages] == [2, 1, 1, 1, 1, 1, 1, 1, 1, 4]
    assert [s.name.rsplit("(", 1)[-1].rstrip(")") for s in stages[1:]] == [
        "top", "stage7", "stage6", "stage5", "stage4", "stage3", "stage2", "stage1", "stem"]
    assert stages[-1].frozen_layers == () and "stem_conv" in stages[-1].trainable_layers
    assert stages[5].name.endswith("(stage4)") and "stage3_block1_expand_conv" in stages[5].frozen_layers
