"""Runs that outlive the machine: state saved every epoch, compact handover files, resumption."""

import numpy as np
import pytest

from fer_realtime.cli.main import main
from fer_realtime.core.errors import FerError
from fer_realtime.data.loader import load_dataset
from fer_realtime.training.run_state import STATE_FILE, RunState, load_state, newest_state, runs_root, save_state
from fer_realtime.training.recipes import recipe_config
from fer_realtime.training.trainer import train_classifier
from helpers import Interrupted, interrupt_before_epoch, write_train_val

TINY = dict(epochs=3, batch_size=16, stage_filters=(8, 16), convs_per_stage=(1, 1))


def _state(epochs_done: int) -> RunState:
    rng = np.random.default_rng(epochs_done)
    return RunState(epochs_done, [rng.random((3, 4), dtype=np.float32), np.array([5, 6], dtype=np.int64)],
                    [np.array(7, dtype=np.int64), rng.random(4, dtype=np.float32)], None, {"config": {"a": 1}})


def test_state_round_trip_full_and_compact(tmp_path):
    state = _state(2)
    save_state(tmp_path / "full.npz", state)
    save_state(tmp_path / "compact.npz", state, compact=True)
    full, compact = load_state(tmp_path / "full.npz"), load_state(tmp_path / "compact.npz")
    assert full.epochs_done == compact.epochs_done == 2 and full.best_variables is None
    np.testing.assert_array_equal(full.model_variables[0], state.model_variables[0])
    np.testing.assert_array_equal(compact.model_variables[1], [5, 6])  # integers stay exact
    assert compact.model_variables[0].dtype == np.float32
    np.testing.assert_allclose(compact.model_variables[0], state.model_variables[0], atol=1e-3)
    assert not np.array_equal(compact.model_variables[0], state.model_variables[0])  # it was float16
    assert compact.record == {"config": {"a": 1}, "compact": True}
    with np.load(tmp_path / "compact.npz", allow_pickle=False) as saved:
        assert saved["m0"].dtype == np.float16


def test_newest_state_and_unreadable_files(tmp_path):
    save_state(tmp_path / "one.npz", _state(1))
    save_state(tmp_path / "three.npz", _state(3))
    assert newest_state(tmp_path / "one.npz", tmp_path / "three.npz", tmp_path / "missing.npz")[1].name == "three.npz"
    assert newest_state(tmp_path / "missing.npz", None) is None
    save_state(tmp_path / "three_compact.npz", _state(3), compact=True)  # a run folder and its handover, same epoch
    assert newest_state(tmp_path / "three.npz", tmp_path / "three_compact.npz")[1].name == "three.npz"
    assert newest_state(tmp_path / "three_compact.npz", tmp_path / "three.npz")[1].name == "three_compact.npz"
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FerError, match="not a readable fer-realtime run state"):
        load_state(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(FerError, match="not a fer-realtime run state"):
        load_state(tmp_path / "other.npz")


@pytest.fixture(scope="module")
def tiny_train(tmp_path_factory):
    root = write_train_val(tmp_path_factory.mktemp("data"), train_per_class=12)
    return load_dataset(root).train


def test_an_interrupted_run_continues_from_its_folder_or_its_handover_file(tmp_path, tiny_train):
    config = recipe_config("v4", **TINY)
    whole = train_classifier(tiny_train, config, tmp_path / "whole", verbose=0)
    with pytest.raises(Interrupted):
        train_classifier(tiny_train, config, tmp_path / "cut", verbose=0, callbacks=[interrupt_before_epoch(2)],
                         handover=tmp_path / "handover.npz")
    assert load_state(tmp_path / "cut" / STATE_FILE).epochs_done == 2
    assert load_state(tmp_path / "handover.npz").record["compact"] is True

    resumed = train_classifier(tiny_train, config, tmp_path / "cut", verbose=0)
    # Weights, optimizer, schedule position, seeds and shuffling all come back: the same third epoch.
    assert resumed.history["loss"] == whole.history["loss"]
    # On a fresh machine only the committed compact file is there: float16 weights, so nearly the same epoch.
    handed_over = train_classifier(tiny_train, config, tmp_path / "fresh", verbose=0,
                                   handover=tmp_path / "handover.npz", resume=True)
    assert handed_over.history["loss"][:2] == whole.history["loss"][:2]
    assert handed_over.history["loss"][2] == pytest.approx(whole.history["loss"][2], rel=0.02)
    assert len(handed_over.history["val_accuracy"]) == 3


def test_a_run_folder_of_another_config_is_refused(tmp_path, tiny_train):
    with pytest.raises(Interrupted):
        train_classifier(tiny_train, recipe_config("v4", **TINY), tmp_path / "run", verbose=0,
                         callbacks=[interrupt_before_epoch(1)])
    with pytest.raises(FerError, match="different training config"):
        train_classifier(tiny_train, recipe_config("v4", **{**TINY, "batch_size": 8}), tmp_path / "run", verbose=0)
    with pytest.raises(FerError, match="Nothing to resume"):
        train_classifier(tiny_train, recipe_config("v4", **TINY), tmp_path / "empty", verbose=0, resume=True)


def test_train_command_hands_over_and_cleans_up(model_made_by_train, capsys):
    made = model_made_by_train
    printed = made.printed
    assert f"run state in {made.runs_root / 'tiny'}" in printed and "epoch 2/2" in printed
    assert made.out.exists() and not made.handover.exists() and not (made.runs_root / "tiny" / STATE_FILE).exists()
    assert "calibration on the selection split: temperature" in printed
    assert main([*made.args, "--resume"]) == 2  # the handover file is gone, and this test's runs folder is empty
    assert "Nothing to resume" in capsys.readouterr().err


@pytest.fixture(scope="module")
def runs_root_seen_by_module_fixtures():
    return runs_root()


def test_module_fixtures_keep_runs_out_of_the_users_cache(runs_root_seen_by_module_fixtures, tmp_path_factory):
    # module fixtures that train (test_paired_comparison) left empty run folders in ~/.cache/fer-realtime/runs,
    # next to real campaign runs whose names they could share
    assert runs_root_seen_by_module_fixtures.is_relative_to(tmp_path_factory.getbasetemp())
