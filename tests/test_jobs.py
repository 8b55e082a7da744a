"""Background training runs: one worker process per run, state in files, cancel, no duplicates."""

import json
import os
import time

import pytest

from fer_realtime.core.atomic import write_json_atomic
from fer_realtime.core.errors import FerError
from fer_realtime.core.model_file import load_model
from fer_realtime.training.experiments import ExperimentConfig
from fer_realtime.training.jobs import WORKER_NICENESS, active_run, cancel_run, list_runs, run_status, start_run
from helpers import write_class_folders

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.fixture()
def dataset(tmp_path):
    write_class_folders(tmp_path / "data" / "train", {c: 8 for c in CLASSES}, seed=1)
    write_class_folders(tmp_path / "data" / "val", {c: 2 for c in CLASSES}, seed=2)
    return tmp_path / "data"


def wait_for(run_dir, states=("finished", "failed", "cancelled"), timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = run_status(run_dir)
        if status["state"] in states:
            return status
        time.sleep(0.5)
    raise AssertionError(f"run did not reach {states} in {timeout}s: {run_status(run_dir)}")


def test_run_trains_saves_and_exports_and_refuses_a_duplicate(dataset, tmp_path):
    runs, models = tmp_path / "runs", tmp_path / "models"
    config = ExperimentConfig(archs=("cnn",), epochs=2, batch_size=16)
    run_dir = start_run(str(dataset), config, runs, models, name="tiny")
    with pytest.raises(FerError, match="already in progress"):
        start_run(str(dataset), config, runs, models)
    status = wait_for(run_dir)
    assert status["state"] == "finished", status.get("error")
    assert [r["epoch"] for r in status["history"]] == [1, 2]
    assert all(0 <= r["heldout_accuracy"] <= 1 for r in status["history"])
    result = status["results"]["cnn"]
    assert load_model(result["model_path"]).metadata.metrics["heldout_accuracy"] == result["heldout_accuracy"]
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["models"]["cnn"]["heldout_accuracy"]) == 2
    assert (run_dir / "comparison.png").read_bytes().startswith(b"\x89PNG")
    assert (run_dir / "history.csv").read_text().startswith("model,epoch")
    assert active_run(runs) is None
    assert [r["run_id"] for r in list_runs(runs)] == [run_dir.name]


def test_cancel_leaves_no_model(dataset, tmp_path):
    runs, models = tmp_path / "runs", tmp_path / "models"
    run_dir = start_run(str(dataset), ExperimentConfig(archs=("cnn",), epochs=200, batch_size=8), runs, models)
    running = wait_for(run_dir, states=("running",), timeout=120)
    # the worker runs below the server's priority (the page stays responsive while it trains)
    expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, running["pid"]) == expected
    while not run_status(run_dir).get("progress"):
        time.sleep(0.3)
    cancel_run(run_dir)
    status = wait_for(run_dir)
    assert status["state"] == "cancelled"
    assert not models.exists() or not any(models.iterdir())


def test_bad_dataset_fails_with_one_sentence(tmp_path):
    run_dir = start_run(str(tmp_path / "nowhere"), ExperimentConfig(archs=("cnn",), epochs=1), tmp_path / "runs",
                        tmp_path / "models")
    status = wait_for(run_dir)
    assert status["state"] == "failed"
    assert "nowhere" in status["error"] and "Traceback" not in status["error"]


def test_a_dead_worker_is_reported_as_failed(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    write_json_atomic(run_dir / "request.json", {})
    write_json_atomic(run_dir / "status.json", {"state": "running", "pid": 2**22 + 12345, "created": 0})
    assert run_status(run_dir)["state"] == "failed"
    assert active_run(tmp_path / "runs") is None
