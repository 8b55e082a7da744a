"""Where a training run computes: one device as ever (no strategy at all), several devices of this machine
(tf.distribute.MirroredStrategy), or the workers a `TF_CONFIG` names (tf.distribute.MultiWorkerMirroredStrategy), as
in Keras' "Multi-GPU distributed training with TensorFlow" and TensorFlow's "Multi-worker training with Keras" guides.

Each device trains on its equal share of the global batch; gradients are summed across devices every step.
Without GPUs, the CPU is split into logical devices. Several workers: each uses its first `devices` GPUs, or one CPU
device; every worker loads the same data and runs the same command, and only the chief (the "chief" task, else
worker 0) keeps what the run produces.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

from ..core.errors import FerError

TF_CONFIG_ENV = "TF_CONFIG"
# Replica k's random layers start from seed + k * this: a stride far from the seeds' own small increments.
REPLICA_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class DevicePlan:
    devices: int  # per worker
    gpus: bool = False  # the devices are GPUs, not (logical) CPU devices
    workers: int = 1
    worker_index: int = 0  # 0 is the chief

    @property
    def replicas(self) -> int:
        return self.devices * self.workers

    @property
    def distributed(self) -> bool:
        return self.replicas > 1

    @property
    def chief(self) -> bool:
        return self.worker_index == 0

    def describe(self) -> str:
        kind = "GPU" if self.gpus else ("logical CPU device" if self.workers == 1 else "CPU device")
        devices = f"{self.devices} {kind}{'s' if self.devices > 1 else ''}"
        if self.workers == 1:
            return f"{devices} with MirroredStrategy"
        role = "the chief" if self.chief else "not the chief"
        return (f"{self.workers} workers, {devices} each, with MultiWorkerMirroredStrategy (this is worker "
                f"{self.worker_index}, {role})")


def plan_devices(devices: int, batch_size: int) -> DevicePlan:
    """The devices a run of `batch_size` (the global batch) trains on: `devices` per worker, the workers those of
    TF_CONFIG. Starts nothing in TensorFlow; FerError for a plan that cannot run."""
    if devices < 1:
        raise FerError(f"--devices must be at least 1, got {devices}.")
    workers, worker_index = _cluster()
    if devices == 1 and workers == 1:
        return DevicePlan(1)
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))  # finds the devices; the runtime is not started yet
    if gpus and devices > gpus:
        raise FerError(f"--devices {devices}: this machine has only {gpus} GPU{'s' if gpus > 1 else ''}.")
    if not gpus and workers > 1 and devices > 1:
        raise FerError(f"--devices {devices} with {workers} workers (TF_CONFIG): a worker without GPUs trains on "
                       "one CPU device; give --devices 1.")
    plan = DevicePlan(devices, gpus=bool(gpus), workers=workers, worker_index=worker_index)
    if batch_size % plan.replicas:
        where = f"{devices} devices" if workers == 1 else f"{workers} workers x {devices} device(s)"
        raise FerError(f"--batch-size {batch_size} does not split evenly across {where}: give a multiple of "
                       f"{plan.replicas}.")
    return plan


def _cluster() -> tuple[int, int]:
    """(number of workers, this one's index, the chief's 0) from TF_CONFIG; (1, 0) without it."""
    text = os.environ.get(TF_CONFIG_ENV, "").strip()
    if not text:
        return 1, 0
    try:
        config = json.loads(text)
        cluster, task = config.get("cluster") or {}, config.get("task") or {}
        other_jobs = sorted(set(cluster) - {"chief", "worker"})
        members = [("chief", i) for i in range(len(cluster.get("chief", [])))]
        members += [("worker", i) for i in range(len(cluster.get("worker", [])))]
        me = (task.get("type"), int(task.get("index", 0)))
    except (ValueError, TypeError, AttributeError):
        raise FerError(f"{TF_CONFIG_ENV} is not TensorFlow's cluster description, JSON like "
                       '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}.') from None
    if other_jobs:
        raise FerError(f"{TF_CONFIG_ENV} names {', '.join(other_jobs)} tasks; training runs on chief and worker "
                       "tasks only (MultiWorkerMirroredStrategy).")
    if me not in members:
        raise FerError(f"{TF_CONFIG_ENV}'s task {me[0]} {me[1]} is not in its cluster.")
    return len(members), members.index(me)


@dataclass
class TrainingStrategy:
    plan: DevicePlan
    strategy: object | None  # None: one device, no strategy

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def training_strategy(devices: int, batch_size: int) -> TrainingStrategy:
    """The strategy to build and fit a model under. It fixes TensorFlow's devices, so it must come before anything
    starts TensorFlow's runtime in this process (FerError if something has)."""
    plan = plan_devices(devices, batch_size)
    if not plan.distributed:
        return TrainingStrategy(plan, None)
    import tensorflow as tf

    try:
        if plan.workers > 1:
            if plan.gpus:
                tf.config.set_visible_devices(tf.config.list_physical_devices("GPU")[: plan.devices], "GPU")
            return TrainingStrategy(plan, _multi_worker_strategy())
        if plan.gpus:
            return TrainingStrategy(plan, tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(plan.devices)]))
        cpu = tf.config.list_physical_devices("CPU")[0]
        if len(tf.config.get_logical_device_configuration(cpu) or ()) != plan.devices:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * plan.devices)
        return TrainingStrategy(plan, tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(plan.devices)]))
    except RuntimeError:
        raise FerError(f"TensorFlow has already started in this process, so it can no longer be set up for "
                       f"{plan.describe()}; train on several devices in a fresh process (the train command "
                       "does).") from None


def _multi_worker_strategy():
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """TensorFlow's, with the `reduce` that Keras 3's fit needs (keras-team/keras#20585): Keras reduces a
        batch's (x, y, weights) as one nest, which this strategy's reduce does not take, and each scalar metric
        along axis 0. Here each value is reduced alone, and a scalar across the replicas only."""

        def reduce(self, reduce_op, value, axis):
            def reduce_one(one):
                rank = self.experimental_local_results(one)[0].shape.rank
                return super(MultiWorkerMirroredStrategy, self).reduce(reduce_op, one, None if rank == 0 else axis)

            return tf.nest.map_structure(reduce_one, value)

    return MultiWorkerMirroredStrategy()


def decorrelate_random_layers(model, placement: TrainingStrategy) -> None:
    """Give each replica's copy of the random layers' seeds (flips, shifts, erasing, dropout) its own stream.

    Keras keeps a layer's seed in a variable that every replica copies and advances alike, so all replicas would
    draw the same augmentation and dropout masks for their parts of the batch. Replica k's copy moves to seed +
    k * REPLICA_SEED_STRIDE; the chief's first replica keeps the seed, so a saved state is the one-device form.
    Call it once after the model's variables were set (built or restored).
    """
    if placement.strategy is None:
        return
    import numpy as np

    first_replica = placement.plan.worker_index * placement.plan.devices
    for variable in model.variables:
        if not variable.path.endswith("seed_generator_state"):
            continue
        for k, copy in enumerate(placement.strategy.experimental_local_results(variable.value)):
            if first_replica + k:
                copy.assign_add(np.array([(first_replica + k) * REPLICA_SEED_STRIDE, 0], copy.dtype.as_numpy_dtype))


def replica_statistics_averager(model, placement: TrainingStrategy):
    """A Keras callback that sets each batch-normalisation moving statistic, on every device of this worker, to its
    mean over them before each evaluation (so before an epoch's selection accuracy and its saved state).

    Keras' moving statistics are per-replica variables that each device updates from its own share of the batch,
    so the copies drift apart; tf.keras read them as their mean. They do not enter the gradients."""
    import keras
    import numpy as np

    statistics = [v for v in model.non_trainable_variables if "float" in str(v.dtype)]

    class AverageReplicaStatistics(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            for variable in statistics:
                copies = placement.strategy.experimental_local_results(variable.value)
                values = [copy.numpy() for copy in copies]
                if any(not np.array_equal(values[0], value) for value in values[1:]):
                    mean = np.mean(values, axis=0, dtype=np.float64).astype(values[0].dtype)
                    for copy in copies:
                        copy.assign(mean)

    return AverageReplicaStatistics()


def same_on_every_worker(placement: TrainingStrategy, value: int) -> bool:
    """Whether every worker of a multi-worker run passes the same `value` (all of them must call this, in the
    same order: it is a collective operation). True on one worker."""
    if placement.plan.workers == 1:
        return True
    import tensorflow as tf

    strategy = placement.strategy

    @tf.function
    def totals():
        per_replica = strategy.run(lambda: tf.constant([1.0, value, value * value], tf.float64))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    count, total, squares = (float(x) for x in totals().numpy())
    return count * squares == total * total  # no spread around the mean
