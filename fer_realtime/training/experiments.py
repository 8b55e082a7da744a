"""Comparing architectures on one dataset: the same data, epochs and held-out split for every model.

Each model's accuracy is measured on the held-out split after every epoch (for the comparison chart); the
final figures are those of the last epoch, so the held-out data never picks an epoch and stays honest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..core.model_file import ModelMetadata, Preprocessing
from ..core.preprocessing import normalize
from ..core.errors import FerError
from ..data.dataset import FaceArrays
from ..data.ferplus import FerPlusVotes, training_targets
from ..evaluation.metrics import EvaluationReport, evaluate_predictions

ARCHITECTURES = ("cnn", "rnn", "transfer")


@dataclass(frozen=True)
class ExperimentConfig:
    archs: tuple[str, ...] = ("cnn", "rnn")
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    augment: bool = True
    pca_variance: float | None = None  # e.g. 0.95: keep the components explaining 95 % of the variance
    pca_components: int | None = None  # or a fixed count
    transfer_base: str = "fer"  # "fer" (our shipped model) or a keras.applications name with transfer_weights
    transfer_weights: str | None = None
    class_weight_power: float = 0.5
    seed: int = 1234
    # What the models learn (data/ferplus.py): "original" labels, "ferplus" vote shares or a "mix" of both, with
    # votes_weight the share of the votes; votes: the votes file (None: ferplus_votes.csv beside the dataset).
    labels: str = "original"
    votes_weight: float = 0.0
    votes: str | None = None


class Progress(NamedTuple):
    arch: str
    arch_index: int  # 0-based position in config.archs
    archs: int
    epoch: int  # 1-based, over the whole run of this model (transfer: across its stages)
    epochs: int
    batch: int  # 1-based batch within the epoch; 0 at an epoch's end
    batches: int
    logs: dict[str, float]
    stage: str = ""  # transfer: which stage is training


@dataclass
class ModelRun:
    arch: str
    history: dict[str, list[float]]  # epoch, accuracy, loss, heldout_accuracy, heldout_loss
    report: EvaluationReport  # held-out, final weights
    seconds: float
    model: Any = field(repr=False)
    metadata: ModelMetadata = field(repr=False)
    notes: list[str] = field(default_factory=list)  # e.g. which pretrained base was used
    stages: list[dict[str, Any]] = field(default_factory=list)  # transfer: each stage's schedule and accuracy


class Cancelled(Exception):
    """Raised when should_stop() turned true; nothing of the interrupted model is kept."""


def _progress_callback(arch, index, n_archs, total_epochs, epoch_offset, batches, on_progress, should_stop, stage=""):
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if should_stop():
                self.model.stop_training = True
                raise Cancelled()
            if on_progress and (batch % 5 == 0 or batch + 1 == batches):
                on_progress(Progress(arch, index, n_archs, epoch_offset + self._epoch + 1, total_epochs,
                                     batch + 1, batches, dict(logs or {}), stage))

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_epoch_end(self, epoch, logs=None):  # batch=0 marks an epoch's end; logs then hold held-out figures
            if on_progress:
                on_progress(Progress(arch, index, n_archs, epoch_offset + epoch + 1, total_epochs, 0, batches,
                                     dict(logs or {}), stage))

    return ProgressCallback()


def _compile(model, learning_rate: float, soft_targets: bool = False):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="categorical_crossentropy" if soft_targets else "sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def _fit(model, data, epochs, config, callbacks, weights) -> dict[str, list[float]]:
    x_train, y_train, x_held, y_held = data
    history = model.fit(
        x_train, y_train, batch_size=config.batch_size, epochs=epochs, validation_data=(x_held, y_held),
        class_weight=weights, callbacks=callbacks, verbose=0,
    )
    h = history.history
    return {"accuracy": h["accuracy"], "loss": h["loss"], "heldout_accuracy": h["val_accuracy"],
            "heldout_loss": h["val_loss"]}


def experiment_stages(blocks, epochs: int, learning_rate: float, block_names=None):
    """The transfer stages of an experiment of `epochs` epochs: a third of them for the new head, the rest spread
    over unfreezing blocks from the top, at most one block per epoch; each stage halves the learning rate so
    fine-tuning does not wreck what was learned."""
    from .transfer import plan_stages

    head_epochs = max(1, epochs // 3)
    tuning_epochs = max(0, epochs - head_epochs)
    n_stages = min(len(blocks), tuning_epochs)
    return plan_stages(blocks, head_epochs=head_epochs, epochs_per_stage=max(1, tuning_epochs // max(1, n_stages)),
                       base_lr=learning_rate, lr_decay=0.5, max_unfrozen_blocks=n_stages, block_names=block_names)


def build_architecture(arch: str, config: ExperimentConfig, input_shape, num_classes: int):
    """(model, backbone blocks and their names or None, notes) for one architecture name."""
    from . import architectures

    if arch == "cnn":
        return architectures.build_cnn(architectures.CNNConfig(input_shape=input_shape, num_classes=num_classes,
                                                 augment=config.augment)), None, []
    if arch == "rnn":
        return architectures.build_rnn(architectures.RNNConfig(input_shape=input_shape, num_classes=num_classes,
                                                 augment=config.augment)), None, []
    if arch == "transfer":
        built = architectures.build_transfer(
            architectures.TransferConfig(input_shape=input_shape, num_classes=num_classes, augment=config.augment,
                                  base=config.transfer_base, weights_path=config.transfer_weights)
        )
        return built.model, (built.backbone_blocks, built.block_names), [f"pretrained base: {built.base_description}"]
    raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")


def train_architecture(
    arch: str,
    train: FaceArrays,
    heldout: FaceArrays,
    config: ExperimentConfig,
    preprocessing: Preprocessing = Preprocessing(),
    index: int = 0,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    pca=None,
    votes: FerPlusVotes | None = None,
) -> ModelRun:
    """Train one architecture for config.epochs epochs, measuring held-out accuracy after each epoch (against the
    original labels). With config.labels other than "original", the targets mix in the FER+ `votes`."""
    import keras

    from .trainer import class_weights

    keras.utils.set_random_seed(config.seed)
    x_train, x_held = normalize(train.images, preprocessing), normalize(heldout.images, preprocessing)
    num_classes = len(train.classes)
    soft = config.labels != "original"
    if soft:
        if votes is None:
            raise FerError("Training on the FER+ votes needs the votes file (ferplus_votes.csv beside the dataset).")
        targets, with_votes = training_targets(train.labels, train.files, num_classes, votes, config.votes_weight,
                                               train.classes)
        data = (x_train, targets, x_held, np.eye(num_classes, dtype=np.float32)[heldout.labels])
    else:
        data = (x_train, train.labels, x_held, heldout.labels)
    model, blocks, notes = build_architecture(arch, config, x_train.shape[1:], num_classes)
    if soft:
        notes.append(f"labels: {config.labels} (FER+ votes for {with_votes} of {len(train)} training faces, weight "
                     f"{config.votes_weight:g})")
    if pca is not None:
        from .pca import with_pca_front

        model = with_pca_front(model, pca, preprocessing)
        notes.append(f"PCA: {pca.n_components} components, {pca.variance_retained:.1%} of the variance")
    weights = class_weights(train.labels, num_classes, config.class_weight_power)
    batches = int(np.ceil(len(x_train) / config.batch_size))
    started = time.monotonic()
    history: dict[str, list[float]] = {}
    stage_log: list[dict[str, Any]] = []

    def extend(part: dict[str, list[float]], stage: str = "") -> None:
        for key, values in part.items():
            history.setdefault(key, []).extend(values)
        history.setdefault("stage", []).extend([stage] * len(part["accuracy"]))

    if arch != "transfer":
        _compile(model, config.learning_rate, soft)
        callback = _progress_callback(arch, index, len(config.archs), config.epochs, 0, batches, on_progress,
                                      should_stop)
        extend(_fit(model, data, config.epochs, config, [callback], weights))
    else:
        from .transfer import apply_stage

        stages = experiment_stages(blocks[0], config.epochs, config.learning_rate, blocks[1])
        total_epochs = sum(stage.epochs for stage in stages)
        done = 0
        for stage in stages:
            apply_stage(model, stage)
            _compile(model, stage.learning_rate, soft)
            callback = _progress_callback(arch, index, len(config.archs), total_epochs, done, batches,
                                          on_progress, should_stop, stage=stage.name)
            part = _fit(model, data, stage.epochs, config, [callback], weights)
            extend(part, stage.name)
            stage_log.append({"stage": stage.name, "epochs": stage.epochs, "learning_rate": stage.learning_rate,
                              "heldout_accuracy": part["heldout_accuracy"][-1]})
            done += stage.epochs
    history["epoch"] = list(range(1, len(history["accuracy"]) + 1))
    seconds = time.monotonic() - started
    predicted = np.argmax(model.predict(x_held, batch_size=256, verbose=0), axis=1)
    report = evaluate_predictions(heldout.labels, predicted, heldout.classes)
    metadata = ModelMetadata(
        classes=tuple(train.classes),
        input_size=tuple(x_train.shape[1:3]),
        preprocessing=preprocessing,
        architecture=arch,
        training_data={"n_train": int(len(train)), "n_heldout": int(len(heldout)), "config": asdict(config),
                       "notes": notes},
        metrics={"heldout_accuracy": report.accuracy,
                 "per_class_recall": {c: v["recall"] for c, v in report.per_class.items()}},
    )
    if stage_log:
        metadata.metrics["stages"] = stage_log
    return ModelRun(arch=arch, history=history, report=report, seconds=seconds, model=model, metadata=metadata,
                    notes=notes, stages=stage_log)


def history_rows(runs: list[ModelRun]) -> list[dict[str, Any]]:
    """One row per model and epoch (for CSV export and charts)."""
    rows = []
    for run in runs:
        for i, epoch in enumerate(run.history["epoch"]):
            rows.append({
                "model": run.arch, "epoch": epoch,
                "train_accuracy": run.history["accuracy"][i], "heldout_accuracy": run.history["heldout_accuracy"][i],
                "train_loss": run.history["loss"][i], "heldout_loss": run.history["heldout_loss"][i],
                "stage": run.history["stage"][i],
            })
    return rows
