"""Test-time augmentation: the views, their averaging in the engine, the choice on the selection split, `tta`."""

import dataclasses
import json

import numpy as np
import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.model_file import ModelMetadata, load_model, read_metadata, save_model
from fer_realtime.inference.engine import InferenceEngine
from fer_realtime.core.errors import FerError
from fer_realtime.inference.tta import (CANDIDATES, NO_TTA, PRESETS, TestTimeAugmentation, candidates_for, choose,
                                        crop_margin, preset_candidates, rotate, shift, ten_crops)
from fer_realtime.training.architectures import CNNConfig, build_cnn
from fer_realtime.training.ensemble import build_ensemble
from helpers import fitted_tiny_model, save_tiny_model, tiny_model, write_train_val

ROTATE = PRESETS["flip+rotate"]
CROPS = ten_crops(4)


def test_rotate_turns_counter_clockwise_about_the_centre_and_keeps_shape():
    batch = np.zeros((2, 49, 49, 1), np.float32)
    batch[:, 24, 40, 0] = 1.0  # a dot right of the centre
    turned = rotate(batch, 90.0)
    assert turned.shape == batch.shape and turned.dtype == np.float32
    y, x = np.unravel_index(np.argmax(turned[0, :, :, 0]), (49, 49))
    assert (y, x) == (8, 24)  # counter-clockwise: now above the centre
    np.testing.assert_array_equal(rotate(batch, 0.0), batch)
    rgb = np.random.default_rng(0).random((3, 48, 48, 3), dtype=np.float32)
    assert rotate(rgb, 8.0).shape == rgb.shape


def test_expand_lays_out_views_and_combine_averages_them():
    batch = np.random.default_rng(1).random((3, 48, 48, 1), dtype=np.float32)
    views = ROTATE.expand(batch)
    assert ROTATE.views == 6 and views.shape == (18, 48, 48, 1)
    np.testing.assert_array_equal(views[:3], batch)
    np.testing.assert_array_equal(views[3:6], rotate(batch, 8.0))
    np.testing.assert_array_equal(views[9:12], batch[:, :, ::-1])
    per_view = np.arange(18 * 2, dtype=np.float32).reshape(18, 2)
    np.testing.assert_allclose(ROTATE.combine(per_view, 3), per_view.reshape(6, 3, 2).mean(axis=0))
    first = per_view[:3]
    assert NO_TTA.expand(batch) is batch and NO_TTA.combine(first, 3) is first


def test_shifted_faces_show_a_centre_crop_network_its_corner_crops():
    batch = np.random.default_rng(3).random((2, 48, 48, 1), dtype=np.float32)
    centre = slice(4, 44)
    corners = set()
    for dy, dx in CROPS.shifts:
        moved = shift(batch, dy, dx)
        assert moved.shape == batch.shape
        top, left = 4 - dy, 4 - dx
        np.testing.assert_array_equal(moved[:, centre, centre], batch[:, top:top + 40, left:left + 40])
        corners.add((top, left))
    assert corners == {(0, 0), (0, 8), (8, 0), (8, 8)}
    moved = shift(batch, 3, -2)
    np.testing.assert_array_equal(moved[:, :3], np.repeat(moved[:, 3:4], 3, axis=1))  # the edge row repeated
    np.testing.assert_array_equal(moved[:, 3:, :46], batch[:, :45, 2:])
    assert shift(batch, 0, 0) is batch


def test_ten_crops_lay_out_the_centre_and_corners_each_mirrored():
    batch = np.random.default_rng(5).random((3, 48, 48, 1), dtype=np.float32)
    views = CROPS.expand(batch)
    assert CROPS.views == 10 and views.shape == (30, 48, 48, 1)
    np.testing.assert_array_equal(views[:3], batch)
    np.testing.assert_array_equal(views[3:6], shift(batch, 4, 4))
    np.testing.assert_array_equal(views[18:21], shift(batch, 4, 4)[:, :, ::-1])
    assert CROPS.name == "flip + corner crops ±4"
    assert CROPS.describe().startswith("on: the face upright and moved (+4, +4) px, (+4, -4) px")
    assert "10 views" in CROPS.describe()


def test_the_crop_margin_of_a_network_decides_whether_crops_are_a_candidate():
    whole = build_cnn(CNNConfig(augment=False))
    cropped = build_cnn(CNNConfig(crop=40))
    assert crop_margin(whole) == 0 and crop_margin(cropped) == 4
    assert cropped.get_layer("stage1_conv1").input.shape[1:3] == (40, 40)
    assert whole.count_params() == cropped.count_params()
    assert crop_margin(build_ensemble([cropped, build_cnn(CNNConfig(crop=40))])) == 4
    assert candidates_for(None, 4) == (*CANDIDATES, CROPS) and candidates_for(None) == CANDIDATES
    assert candidates_for(True, 4) == (PRESETS["flip"], ROTATE, CROPS) and candidates_for(False, 4) == (NO_TTA,)
    assert preset_candidates("auto", 4)[-1] == CROPS and preset_candidates("flip+crops", 4) == (CROPS,)
    with pytest.raises(FerError, match="centre crop"):
        preset_candidates("flip+crops", 0)
    with pytest.raises(ValueError, match="crop"):
        build_cnn(CNNConfig(crop=48))


def test_names_and_descriptions():
    assert [c.name for c in CANDIDATES] == ["none", "flip", "flip + rotate +8/-8"]
    assert ROTATE.describe().startswith("on: the face upright and turned +8°, -8°, each with its mirror image")
    assert "6 views" in ROTATE.describe() and NO_TTA.describe().startswith("off")


@pytest.mark.parametrize("tta", [ROTATE, CROPS], ids=["rotations", "ten crops"])
def test_the_engine_averages_all_views_in_one_call(tmp_path, tta):
    if tta.shifts:
        path = save_model(build_cnn(CNNConfig(crop=40)), ModelMetadata(), tmp_path / "m.keras")
    else:
        path = save_tiny_model(tmp_path / "m.keras")
    loaded = load_model(path)
    with_tta = dataclasses.replace(loaded, metadata=dataclasses.replace(loaded.metadata, **tta.metadata_fields()))
    plain = InferenceEngine(loaded, runtime="tensorflow")
    batch = np.random.default_rng(4).random((3, 48, 48, 1), dtype=np.float32)
    expected = np.mean([plain.predict(v) for v in np.split(tta.expand(batch), tta.views)], axis=0)
    for runtime in ("auto", "tensorflow"):
        engine = InferenceEngine(with_tta, runtime=runtime)
        calls = []
        forward = engine._forward
        engine._forward = lambda x: calls.append(len(x)) or forward(x)
        np.testing.assert_allclose(engine.predict(batch), expected, atol=1e-5)
        if runtime == "tensorflow":
            assert calls == [3 * tta.views]  # one batched call for every view of every face


def test_choose_takes_the_most_accurate_candidate_and_the_cheaper_on_a_tie():
    rng = np.random.default_rng(2)
    y = np.arange(40) % 2
    x = np.where(y[:, None, None, None] == 1, 0.8, 0.2) * np.ones((40, 48, 48, 1), np.float32)
    x[:, :, :6] = 1.0  # a bright band on the left: a mirrored view has it on the right
    x += rng.random(x.shape, dtype=np.float32) * 0.05

    def sure_only_when_mirrored(views):
        # The class is the brightness of the centre; upright views lean wrongly, mirrored ones are surely right.
        right = (views[:, 16:32, 16:32].mean(axis=(1, 2, 3)) > 0.5).astype(int)
        mirrored = views[:, :, -6:].mean(axis=(1, 2, 3)) > views[:, :, :6].mean(axis=(1, 2, 3))
        p_right = np.where(mirrored, 0.9, 0.45)
        probabilities = np.empty((len(views), 2))
        probabilities[np.arange(len(views)), right] = p_right
        probabilities[np.arange(len(views)), 1 - right] = 1 - p_right
        return probabilities

    choice = choose(sure_only_when_mirrored, x, y)
    assert choice.accuracy == {"none": 0.0, "flip": 1.0, "flip + rotate +8/-8": 1.0}
    assert choice.chosen == PRESETS["flip"]  # flip and flip + rotate tie; the cheaper one wins
    assert choice.probabilities.shape == (40, 2)
    assert choose(sure_only_when_mirrored, x, y, [NO_TTA]).chosen is NO_TTA


def test_metadata_keeps_rotations_and_refuses_wild_ones(tmp_path):
    path = save_model(tiny_model(), ModelMetadata(flip_tta=True, tta_rotations=(8.0, -8.0)), tmp_path / "m.keras")
    assert TestTimeAugmentation.of(read_metadata(path)) == ROTATE
    assert load_model(path).metadata.tta_rotations == (8.0, -8.0)
    data = json.loads(ModelMetadata(tta_rotations=(90.0,)).to_json())
    with pytest.raises(Exception, match="beyond"):
        ModelMetadata.from_dict(data)
    path = save_model(tiny_model(), ModelMetadata(**CROPS.metadata_fields()), tmp_path / "crops.keras")
    assert TestTimeAugmentation.of(read_metadata(path)) == CROPS
    data = json.loads(ModelMetadata(tta_shifts=((4, 13),)).to_json())
    with pytest.raises(Exception, match="beyond ±12 pixels"):
        ModelMetadata.from_dict(data)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_train_val(tmp_path_factory.mktemp("tta_data"), train_per_class=10)


def test_tta_command_chooses_on_the_selection_split_and_rewrites_the_figures(data, tmp_path, capsys):
    model = fitted_tiny_model(data, seed=5, epochs=4)
    metadata = ModelMetadata(architecture="cnn", command="python -m fer_realtime train (original)",
                             training_data={"config": {"seed": 1234, "selection_fraction": 0.1}},
                             metrics={"heldout_accuracy": 0.01, "selection_accuracy_with_flip": 0.3})
    source = save_model(model, metadata, tmp_path / "m.keras")
    out = tmp_path / "m_tta.keras"
    assert main(["tta", str(source), "--data", str(data), "--tta", "flip+rotate", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    assert "tta flip + rotate +8/-8" in printed and "chosen: flip + rotate +8/-8" in printed

    loaded = load_model(out)
    assert TestTimeAugmentation.of(loaded.metadata) == ROTATE and loaded.metadata.command == "python -m fer_realtime train (original)"
    assert set(loaded.metadata.metrics["selection_accuracy_by_tta"]) == {"flip + rotate +8/-8"}
    assert "selection_accuracy_with_flip" not in loaded.metadata.metrics  # superseded by the figures by tta
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["tta"] == "flip + rotate +8/-8" and metrics["tta_command"].startswith("python -m fer_realtime tta")
    assert main(["evaluate", str(data / "val"), "--model", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == metrics["heldout"]["accuracy"] == loaded.metadata.metrics["heldout_accuracy"]


def test_tta_command_refuses_a_model_without_a_selection_split(data, tmp_path, capsys):
    source = save_tiny_model(tmp_path / "m.keras")
    out = tmp_path / "out.keras"
    assert main(["tta", str(source), "--data", str(data), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "does not record the selection split" in err and err.count("\n") == 1
    assert not out.exists()
