"""Averaging ensembles: `ensemble` command, the model file it writes, and the checks on its members."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.labels import EMOTIONS
from fer_realtime.core.model_file import ModelMetadata, load_model, save_model
from fer_realtime.inference.calibration import apply_temperature
from fer_realtime.inference.engine import InferenceEngine
from fer_realtime.training.architectures import TransferConfig, build_transfer
from helpers import tiny_model, write_train_val

SPLIT = {"seed": 1234, "selection_fraction": 0.1}


def save_member(path, seed: int, split=SPLIT, classes=EMOTIONS):
    keras.utils.set_random_seed(seed)
    metadata = ModelMetadata(classes=classes, architecture="cnn", command=f"member {seed}",
                             training_data={"config": dict(split), "n_fit": 63, "n_selection": 7})
    return save_model(tiny_model(len(classes)), metadata, path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble_data")
    return write_train_val(root, train_per_class=10)


def run_ensemble(tmp_path, data, members, *extra):
    out = tmp_path / "ensemble.keras"
    code = main(["ensemble", *map(str, members), "--data", str(data), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), *extra])
    return code, out


def test_ensemble_averages_its_members_and_matches_evaluate(tmp_path, data, capsys):
    members = [save_member(tmp_path / "a.keras", 1), save_member(tmp_path / "b.keras", 2)]
    code, out = run_ensemble(tmp_path, data, members, "--tta", "none")
    assert code == 0
    printed = capsys.readouterr().out
    assert "a.keras" in printed and "b.keras" in printed and "ensemble" in printed

    ensemble = load_model(out)  # safe mode
    assert ensemble.metadata.architecture == "ensemble of 2 (cnn, cnn)"
    assert [m["file"] for m in ensemble.metadata.training_data["members"]] == ["a.keras", "b.keras"]
    assert ensemble.metadata.training_data["n_fit"] == 63
    assert ensemble.metadata.flip_tta is False
    faces = np.random.default_rng(0).random((5, 48, 48, 1), dtype=np.float32)
    expected = np.mean([load_model(m).model.predict(faces, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.model.predict(faces, verbose=0), expected, atol=1e-6)
    calibrated = apply_temperature(expected[:3], ensemble.metadata.temperature)  # fitted on the selection split
    np.testing.assert_allclose(InferenceEngine(ensemble).predict(faces[:3]), calibrated, atol=1e-3)

    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert set(metrics["selection_metrics"]["members"]) == {"a.keras", "b.keras"}
    assert metrics["heldout"]["n"] == 21
    assert main(["evaluate", str(data / "val"), "--model", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == metrics["heldout"]["accuracy"] == ensemble.metadata.metrics["heldout_accuracy"]
    assert evaluated["confusion"] == metrics["heldout"]["confusion"]


def test_flip_averaging_can_be_forced(tmp_path, data):
    members = [save_member(tmp_path / "a.keras", 1), save_member(tmp_path / "b.keras", 2)]
    code, out = run_ensemble(tmp_path, data, members, "--tta", "flip")
    assert code == 0 and load_model(out).metadata.flip_tta is True


@pytest.mark.parametrize(
    "second, message",
    [
        (dict(split={"seed": 99, "selection_fraction": 0.1}), "different selection splits"),
        (dict(split={}), "does not record the selection split"),
        (dict(classes=tuple(f"c{i}" for i in range(7))), "differs from a.keras in classes"),
    ],
)
def test_members_that_cannot_be_averaged_are_refused_with_one_message(tmp_path, data, capsys, second, message):
    members = [save_member(tmp_path / "a.keras", 1), save_member(tmp_path / "b.keras", 2, **second)]
    code, out = run_ensemble(tmp_path, data, members)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_one_member_or_a_bad_member_file_is_refused(tmp_path, data, capsys):
    member = save_member(tmp_path / "a.keras", 1)
    assert run_ensemble(tmp_path, data, [member])[0] == 2
    assert "at least two" in capsys.readouterr().err
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a model")
    assert run_ensemble(tmp_path, data, [member, bad])[0] == 2
    assert "bad.keras" in capsys.readouterr().err


def test_an_ensemble_file_serves_as_the_transfer_backbone(tmp_path, data):
    members = [save_member(tmp_path / "a.keras", 1), save_member(tmp_path / "b.keras", 2)]
    code, out = run_ensemble(tmp_path, data, members, "--tta", "none")
    assert code == 0
    transfer = build_transfer(TransferConfig(base="fer", weights_path=str(out), head_units=8, augment=False))
    first_member = load_model(members[0]).model
    conv = transfer.model.get_layer("backbone").get_layer("stage1_conv1")
    np.testing.assert_array_equal(conv.get_weights()[0], first_member.get_layer("stage1_conv1").get_weights()[0])


def test_unpack_gives_back_each_member_to_join_another_ensemble(tmp_path, data, capsys):
    members = [save_member(tmp_path / "a.keras", 1), save_member(tmp_path / "b.keras", 2)]
    code, out = run_ensemble(tmp_path, data, members, "--tta", "flip")
    assert code == 0
    # as shipped: framed (crop margins chosen for the ensemble) after it was made
    framed = load_model(out)
    framing = dataclasses.replace(framed.metadata.preprocessing, crop_margin=0.0, detector_margins=(("haar", 0.0),))
    save_model(framed.model, dataclasses.replace(framed.metadata, preprocessing=framing), out)
    capsys.readouterr()

    assert main(["unpack", str(out), "--out-dir", str(tmp_path / "members")]) == 0
    printed = capsys.readouterr().out
    assert "a.keras" in printed and "member 1" in printed and "member 2" in printed
    faces = np.random.default_rng(1).random((4, 48, 48, 1), dtype=np.float32)
    for name, original in zip(("a.keras", "b.keras"), members):
        unpacked, before = load_model(tmp_path / "members" / name), load_model(original)  # safe mode
        np.testing.assert_array_equal(unpacked.model.predict(faces, verbose=0), before.model.predict(faces, verbose=0))
        assert unpacked.metadata.command == before.metadata.command
        assert unpacked.metadata.training_data == before.metadata.training_data
        # the ensemble's views and framing stay with the ensemble: the member reads as a newly trained model does
        assert unpacked.metadata.preprocessing == before.metadata.preprocessing
        assert not unpacked.metadata.flip_tta and unpacked.metadata.temperature == 1.0

    third = save_member(tmp_path / "c.keras", 3)
    code, again = run_ensemble(tmp_path / "members", data, [tmp_path / "members" / "a.keras", third], "--tta", "none")
    assert code == 0 and load_model(again).metadata.training_data["members"][0]["command"] == "member 1"


def test_unpack_refuses_a_single_network_in_one_sentence(tmp_path, capsys):
    single = save_member(tmp_path / "a.keras", 1)
    assert main(["unpack", str(single), "--out-dir", str(tmp_path / "members")]) == 2
    err = capsys.readouterr().err
    assert "a.keras is not an ensemble" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "members").exists()
