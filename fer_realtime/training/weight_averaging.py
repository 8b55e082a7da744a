"""Stochastic weight averaging (Izmailov et al., 2018): continue training a trained classifier with a learning rate
that restarts every epoch and average the weights reached at the end of each epoch.

The average lies nearer the middle of a wide region of low loss than any single epoch's weights, and it is one
network: it costs nothing at inference. Batch-normalisation statistics do not average linearly, so they are
measured again for the averaged weights.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..core.atomic import write_bytes_atomic
from ..core.model_file import LoadedModel
from ..core.preprocessing import normalize
from ..data.dataset import FaceArrays
from ..evaluation.metrics import evaluate_predictions
from ..inference.tta import candidates_for, choose, crop_margin
from .quantization import weights_digest
from .trainer import TrainResult, class_weights, model_selection_split


@dataclass(frozen=True)
class AveragingConfig:
    epochs: int = 12
    learning_rate: float = 2e-4  # at the start of each epoch; it falls along a cosine to min_fraction of it
    min_fraction: float = 0.05
    seed: int = 4321  # augmentation and shuffling of the continued training (the split is the model's own)


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def _averaging_callback(folder: Path):
    import keras

    class WeightAverage(keras.callbacks.Callback):
        """Running mean of the model's float weights at each epoch's end, kept in `folder` across restarts."""

        def __init__(self):
            super().__init__()
            self.file = folder / "average.npz"
            self.count, self.average = 0, None
            if self.file.exists():
                with np.load(self.file, allow_pickle=False) as saved:
                    self.count = int(saved["count"])
                    self.average = [saved[f"w{i}"] for i in range(len(saved.files) - 1)]

        def on_epoch_end(self, epoch, logs=None):
            if epoch < self.count:  # averaged before an interruption; BackupAndRestore replayed this epoch
                return
            weights = [np.asarray(w, dtype=np.float64) for w in self.model.get_weights()]  # Keras leaves seeds out
            if self.average is None:
                self.average = weights
            else:
                self.average = [a + (w - a) / (self.count + 1) for a, w in zip(self.average, weights)]
            self.count += 1
            _save_npz_atomic(self.file, {"count": np.array(self.count),
                                         **{f"w{i}": a for i, a in enumerate(self.average)}})

        def on_train_end(self, logs=None):
            self.file.unlink(missing_ok=True)  # done (the average is in memory); a new run starts afresh

    return WeightAverage()


def recompute_batch_norm_statistics(model, x: np.ndarray, batch_size: int = 256) -> None:
    """Set every BatchNormalization layer's moving mean and variance to their means over the batches of `x`.

    The faces go through without the training-time augmentation, as at inference: on FER2013's selection split
    that scored higher than statistics of augmented faces (weights/README.md).
    """
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, dtype="float32"))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, dtype="float32"))
    forward = _without_augmentation(model)
    try:
        for k, start in enumerate(range(0, len(x), batch_size), start=1):
            for layer in norms:
                layer.momentum = (k - 1) / k  # moving value = mean over the k batches so far
            forward(x[start : start + batch_size], training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def _without_augmentation(model):
    """`model` minus its augmentation block (models.build_cnn's "augment"), sharing the other layers' weights."""
    import keras

    if "augment" not in [layer.name for layer in model.layers]:
        return model
    inputs = keras.Input(model.input_shape[1:])
    x = inputs
    for layer in model.layers[1:]:  # build_cnn's models are a chain
        if layer.name != "augment":
            x = layer(x)
    return keras.Model(inputs, x)


def average_trained_model(
    train: FaceArrays,
    loaded: LoadedModel,
    config: AveragingConfig,
    checkpoint_dir: str | os.PathLike,
    verbose: int = 2,
) -> TrainResult:
    """Continue training `loaded` on the part of `train` it was fitted on, average the weights of each epoch's end,
    and choose test-time augmentation on its selection split. Resumes from `checkpoint_dir` after an interruption."""
    import keras

    metadata = loaded.metadata
    fit_idx, sel_idx = model_selection_split(metadata, train, "trained further")
    recipe = metadata.training_data["config"]
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    run = {"averaging": asdict(config), "source_weights": weights_digest(loaded.model)}
    config_file = checkpoint_dir / "config.json"
    if config_file.exists() and json.loads(config_file.read_text()) != run:
        raise ValueError(f"{checkpoint_dir} holds checkpoints of another model or averaging config; use another folder")
    config_file.write_text(json.dumps(run, indent=2))

    keras.utils.set_random_seed(config.seed)
    x_fit, y_fit = normalize(train.images[fit_idx], metadata.preprocessing), train.labels[fit_idx]
    x_sel, y_sel = normalize(train.images[sel_idx], metadata.preprocessing), train.labels[sel_idx]
    num_classes = len(train.classes)
    batch_size = int(recipe.get("batch_size", 64))
    steps_per_epoch = int(np.ceil(len(x_fit) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecayRestarts(
        config.learning_rate, first_decay_steps=steps_per_epoch, t_mul=1.0, m_mul=1.0, alpha=config.min_fraction,
    )
    smoothing = float(recipe.get("label_smoothing", 0.0))
    model = loaded.model
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=smoothing), metrics=["accuracy"])
    averager = _averaging_callback(checkpoint_dir)
    started = time.monotonic()
    history = model.fit(
        x_fit, keras.utils.to_categorical(y_fit, num_classes),
        batch_size=batch_size, epochs=config.epochs,
        validation_data=(x_sel, keras.utils.to_categorical(y_sel, num_classes)),
        class_weight=class_weights(y_fit, num_classes, float(recipe.get("class_weight_power", 0.0))),
        callbacks=[averager, keras.callbacks.BackupAndRestore(str(checkpoint_dir / "backup")),
                   keras.callbacks.CSVLogger(str(checkpoint_dir / "history.csv"), append=True)],
        verbose=verbose,
    )
    model.set_weights([a.astype(w.dtype) for a, w in zip(averager.average, model.get_weights())])
    recompute_batch_norm_statistics(model, x_fit)
    seconds = time.monotonic() - started

    flip = recipe.get("flip_tta")
    tta = choose(lambda views: model.predict(views, batch_size=256, verbose=0), x_sel, y_sel,
                 candidates_for(flip, crop_margin(model)))
    selection_report = evaluate_predictions(y_sel, tta.probabilities.argmax(axis=1), train.classes)
    averaged = replace(
        metadata,
        **tta.chosen.metadata_fields(),
        int8={},
        training_data={**metadata.training_data, "weight_averaging": asdict(config),
                       "averaged_from": {"command": metadata.command, "selection_accuracy":
                                         metadata.metrics.get("selection_accuracy")}},
        metrics={"selection_accuracy": selection_report.accuracy, "selection_accuracy_by_tta": tta.accuracy},
    )
    return TrainResult(model=model, metadata=averaged, history=dict(history.history),
                       selection_report=selection_report, seconds=seconds)
