"""`train --devices N` and TF_CONFIG: data-parallel training on logical CPU devices and on two local workers.

TensorFlow's devices are fixed when it starts, so every training run on several devices (and the one-device run
compared with one) is a process of its own (started side by side where they are independent), each with a timeout,
so that a hung collective fails the test. The recipe networks are slow on a 2-core CPU, so the runs are a few dozen
steps: enough for the training accuracy to leave chance (1/3) far behind, not for the held-out accuracy. Batch
normalisation's moving statistics (momentum 0.99) are still mostly their initial values after so few steps, and until
they settle a network's inference-mode predictions collapse onto one class; the held-out figures are compared between
device counts only as figures both runs measured alike.
"""

import json
import re
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest

from distributed_support import environment, finish, start, train_tiny, write_fer_csv, write_heldout_folders
from fer_realtime.cli.main import main
from fer_realtime.core.errors import FerError
from fer_realtime.core.model_file import load_model
from fer_realtime.training.run_state import STATE_FILE, load_state
from fer_realtime.training.recipes import TrainConfig, recipe_config, scaled_learning_rate
from fer_realtime.training.trainer import _same_config, _validation_batch_size
from serve_support import free_port

TIMEOUT_S = 300  # per run: several times its normal length, so only a hang hits it
EPOCH_LINE = re.compile(r"epoch \d+/\d+: loss ([\d.]+) accuracy ([\d.]+) selection accuracy ([\d.]+)")
# 30 training rows per class: 3 of each are the selection split, so 81 images are fitted; at a global batch of 16
# that is 5 whole batches on several devices (the last image sits the epoch out), 6 batches on one.
BATCH = "16"


def _epochs(output: str) -> list[tuple[float, float, float]]:
    """(loss, training accuracy, selection accuracy) of each epoch a --verbose run printed."""
    return [tuple(float(x) for x in match.groups()) for match in EPOCH_LINE.finditer(output)]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    return write_fer_csv(tmp_path_factory.mktemp("data") / "small.csv", train_per_class=30, heldout_per_class=10)


def _train_args(csv, out, cache, *extra) -> list[str]:
    return ["-m", "fer_realtime", "train", "--data", str(csv), "--batch-size", BATCH, "--out", str(out),
            "--cache-dir", str(cache), "--verbose", *extra]


def test_two_logical_cpu_devices_train_like_one(small_csv, tmp_path, capsys):
    env = environment(tmp_path / "runs")
    outs = {n: tmp_path / f"devices{n}" / "model.keras" for n in (1, 2)}
    runs = [start(_train_args(small_csv, outs[n], tmp_path / "cache", "--epochs", "2", "--learning-rate", "0.003",
                              "--devices", str(n)), env) for n in (1, 2)]
    (code1, output1), (code2, output2) = finish(runs, TIMEOUT_S)
    assert code1 == 0 and code2 == 0, output1 + output2
    assert ("training on 2 logical CPU devices with MirroredStrategy; global batch 16, 8 per device, 5 steps per "
            "epoch, peak learning rate 0.003") in output2
    assert "10 training steps done on 2 logical CPU devices" in output2
    assert "Strategy" not in output1 and "training steps done" not in output1  # one device: no strategy at all
    epochs1, epochs2 = _epochs(output1), _epochs(output2)
    assert len(epochs1) == len(epochs2) == 2
    # Both learn, alike: the last epoch's training accuracy (augmented faces, three classes) far above chance.
    assert min(epochs1[-1][1], epochs2[-1][1]) >= 0.6, (epochs1, epochs2)
    assert abs(epochs1[-1][1] - epochs2[-1][1]) <= 0.25, (epochs1, epochs2)

    metrics = {n: json.loads(outs[n].with_suffix(".metrics.json").read_text()) for n in (1, 2)}
    assert metrics[1]["heldout"]["n"] == metrics[2]["heldout"]["n"] == 30
    # 30 faces of 3 classes: two runs whose predictions collapse onto different classes differ by 1/3.
    assert abs(metrics[1]["heldout"]["accuracy"] - metrics[2]["heldout"]["accuracy"]) <= 0.34
    for out in outs.values():
        loaded = load_model(out)
        assert loaded.metadata.training_data["config"]["learning_rate"] == 0.003
        assert all(np.isfinite(w).all() for w in loaded.model.get_weights())
    # The two-device model is a plain model: `evaluate` reads it and measures what its metrics file says.
    assert main(["evaluate", str(write_heldout_folders(small_csv, tmp_path / "heldout")), "--model",
                 str(outs[2]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 30 and report["accuracy"] == pytest.approx(metrics[2]["heldout"]["accuracy"], abs=1e-9)
    assert sorted(p.name for p in outs[2].parent.iterdir()) == ["model.keras", "model.metrics.json"]


def test_two_workers_train_one_network_and_only_the_chief_writes_it(small_csv, tmp_path):
    ports = [free_port()]
    while len(ports) < 2:
        ports += [port for port in [free_port()] if port not in ports]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    out, private = tmp_path / "models" / "model.keras", [tmp_path / f"tmp{i}" for i in (0, 1)]
    runs = []
    for index in (0, 1):
        private[index].mkdir()
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        runs.append(start(_train_args(small_csv, out, tmp_path / "cache", "--epochs", "2"),
                          environment(tmp_path / "runs", TF_CONFIG=tf_config, TMPDIR=str(private[index]))))
    (chief_code, chief), (worker_code, worker) = finish(runs, TIMEOUT_S)
    assert chief_code == 0 and worker_code == 0, chief + worker
    for output, role in ((chief, "worker 0, the chief"), (worker, "worker 1, not the chief")):
        assert (f"training on 2 workers, 1 CPU device each, with MultiWorkerMirroredStrategy (this is {role}); "
                "global batch 16, 8 per device, 5 steps per epoch") in output
        assert "10 training steps done on 2 workers" in output
    # One network, kept in step: both workers saw the same losses and accuracies.
    assert len(_epochs(chief)) == 2 and _epochs(chief) == _epochs(worker)
    assert "saved" in chief and "saved" not in worker
    assert "this worker's part of the run is done; the chief writes the model" in worker
    assert all(np.isfinite(w).all() for w in load_model(out).model.get_weights())
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.keras", "model.metrics.json"]
    assert list(private[1].iterdir()) == []  # the other worker's run state went to a private folder, now removed
    assert not (tmp_path / "runs" / "model" / STATE_FILE).exists()  # the chief ended the run


def test_a_run_started_on_one_device_continues_on_two(small_csv, tmp_path):
    """Through train_classifier with a tiny network (tests/distributed_support.py): a run stopped after its first
    epoch on one device (in this process: one device needs no process of its own), continued on two from the state
    it saved."""
    run_dir, env = tmp_path / "run", environment(tmp_path / "runs")
    train_tiny(small_csv, 2, int(BATCH), run_dir, tmp_path / "a.json", stop_before_epoch=1)
    assert json.loads((tmp_path / "a.json").read_text())["stopped"]
    tiny = ["tests/distributed_support.py", "--data", str(small_csv), "--epochs", "2", "--batch-size", BATCH,
            "--run-dir", str(run_dir)]
    first = load_state(run_dir / STATE_FILE)
    assert first.epochs_done == 1 and int(first.optimizer_variables[0]) == 6  # 81 images, one device: 6 steps

    [(code, output)] = finish([start([*tiny, "--result", str(tmp_path / "b.json"), "--devices", "2", "--resume"],
                                     env)], TIMEOUT_S)
    assert code == 0, output
    assert f"resuming after epoch 1 of 2 from {run_dir / STATE_FILE}" in output
    assert "11 training steps done on 2 logical CPU devices" in output  # 6 on one device, then 5 on two
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["history"]["loss"][0] == first.record["history"]["loss"][0]
    assert len(result["history"]["loss"]) == 2 and np.isfinite(result["history"]["loss"]).all()
    assert result["n_heldout"] == 30 and 0.0 <= result["heldout_accuracy"] <= 1.0


# Run in a process of its own with two logical CPU devices: the augmentation block of the recipe network under the
# strategy, fed the same faces on both devices, and a moving statistic whose two copies were set apart.
REPLICA_CHECK = """
import numpy as np, tensorflow as tf
from fer_realtime.training.devices import decorrelate_random_layers, replica_statistics_averager, training_strategy
from fer_realtime.training.recipes import recipe_config
from fer_realtime.training.trainer import build_model
placement = training_strategy(2, 8)
with placement.scope():
    model = build_model(recipe_config("v2"), (48, 48, 1), 7)
faces = tf.constant(np.random.default_rng(0).random((4, 48, 48, 1), dtype=np.float32))
def gap():
    out = placement.strategy.run(lambda: model.get_layer("augment")(faces, training=True))
    first, second = (t.numpy() for t in placement.strategy.experimental_local_results(out))
    return float(np.abs(first - second).max())
before = gap()
decorrelate_random_layers(model, placement)
after = gap()
mean = model.get_layer("stage1_bn1").moving_mean
for k, copy in enumerate(placement.strategy.experimental_local_results(mean.value)):
    copy.assign(np.full(mean.shape, 2.0 * k, np.float32))
replica_statistics_averager(model, placement).on_test_begin()
copies = [c.numpy() for c in placement.strategy.experimental_local_results(mean.value)]
print("RESULT", before, after, float(copies[0].min()), float(copies[1].max()))
"""


def test_each_device_draws_its_own_augmentation_and_the_statistics_are_averaged(tmp_path):
    [(code, output)] = finish([start(["-c", REPLICA_CHECK], environment(tmp_path / "runs"))], TIMEOUT_S)
    assert code == 0, output
    before, after, low, high = (float(x) for x in output.split("RESULT")[1].split())
    assert before == 0.0  # Keras alone: every device flips, shifts and erases its faces the same way
    assert after > 0.1  # each device its own seeds
    assert low == high == 1.0  # copies at 0 and 2: both at their mean


@pytest.mark.parametrize("options, message", [
    (["--devices", "2", "--batch-size", "63"],
     "--batch-size 63 does not split evenly across 2 devices: give a multiple of 2."),
    (["--devices", "0"], "--devices must be at least 1, got 0."),
    (["--devices", "2", "--arch", "rnn"], "--devices applies to the cnn recipes"),
])
def test_a_plan_that_cannot_run_is_one_sentence_and_writes_nothing(small_csv, tmp_path, capsys, options, message):
    out = tmp_path / "models" / "model.keras"
    assert main(["train", "--data", str(small_csv), "--out", str(out), *options]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {message}") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.out + captured.err
    assert not out.parent.exists() and not (tmp_path / "fer-runs").exists()


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG is not TensorFlow's cluster description"),
    ('{"cluster": {"worker": ["a:1", "b:2"], "ps": ["c:3"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG names ps tasks"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "TF_CONFIG's task worker 2 is not in its cluster."),
])
def test_a_cluster_description_that_cannot_run_is_refused(small_csv, tmp_path, capsys, monkeypatch, tf_config,
                                                          message):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    assert main(["train", "--data", str(small_csv), "--out", str(tmp_path / "m.keras")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")


def test_devices_cannot_be_set_up_once_tensorflow_runs(monkeypatch):
    import tensorflow as tf

    from fer_realtime.training.devices import plan_devices, training_strategy

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("with GPUs, --devices 2 uses two of them and needs no logical devices")
    tf.constant(0)  # starts the runtime of this process (if an earlier test had not)
    with pytest.raises(FerError, match="TensorFlow has already started in this process"):
        training_strategy(2, 8)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    with pytest.raises(FerError, match="a worker without GPUs trains on one CPU device; give --devices 1"):
        plan_devices(2, 8)
    plan = plan_devices(1, 8)
    assert (plan.workers, plan.replicas, plan.chief) == (2, 2, False)


def test_the_learning_rate_follows_the_global_batch_by_the_recipes_rule():
    assert recipe_config("v2").learning_rate == 1e-3  # the reference batch of 64: unchanged
    assert recipe_config("v2", batch_size=256).learning_rate == pytest.approx(2e-3)  # adam: square root
    assert recipe_config("v3", batch_size=16).learning_rate == pytest.approx(5e-4)
    assert recipe_config("v4").learning_rate == 0.01
    assert recipe_config("v4", batch_size=128).learning_rate == pytest.approx(0.02)  # sgd: linear (Goyal et al.)
    assert recipe_config("v4", batch_size=128, learning_rate=0.01).learning_rate == 0.01  # given: kept
    assert scaled_learning_rate(0.1, 32, "sgd") == pytest.approx(0.05)
    # The campaign's run v2L (recipe v2, batch 64, recorded before the rule) still continues: the same config.
    recorded = {"arch": "cnn", "epochs": 100, "batch_size": 64, "learning_rate": 0.001, "weight_decay_l2": 0.0001,
                "selection_fraction": 0.1, "class_weight_power": 0.5, "seed": 1234, "augment": True,
                "stage_filters": [32, 64, 128, 256], "convs_per_stage": [2, 2, 2, 2], "dropout": 0.4,
                "label_smoothing": 0.1, "photometric": 0.1, "erasing": 0.25, "flip_tta": None, "optimizer": "adam",
                "momentum": 0.9, "init_seed": 2}
    # What `train --recipe v2 --epochs 100 --init-seed 2` makes today:
    current = json.loads(json.dumps(asdict(recipe_config("v2", epochs=100, batch_size=64, seed=1234, augment=True,
                                                         arch="cnn", init_seed=2))))
    assert _same_config(recorded, current)
    assert not _same_config(recorded, {**current, "learning_rate": 0.001 * 0.5**0.5})
    assert "devices" not in TrainConfig.__dataclass_fields__  # a run may continue on another number of devices


def test_every_device_gets_images_in_every_selection_batch():
    two = SimpleNamespace(plan=SimpleNamespace(replicas=2))
    assert _validation_batch_size(9, 16, two) == 6  # 8 would leave one image for the last batch: a device with none
    assert _validation_batch_size(21, 16, two) == 16  # batches of 16 and 5
    assert _validation_batch_size(32, 16, two) == 16
    assert _validation_batch_size(2, 16, two) == 2
    for images in (*range(6, 60), 2, 4):
        size = _validation_batch_size(images, 16, two)
        assert size % 2 == 0 and size <= 16 and (images % size == 0 or images % size >= 2)
    for images in (1, 3, 5):  # no even batch size leaves the last batch an image per device
        with pytest.raises(FerError, match="give each of the 2 devices an image"):
            _validation_batch_size(images, 16, two)
