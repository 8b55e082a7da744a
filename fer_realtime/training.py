"""Training a classifier on face arrays: selection split, class weighting, checkpoints that survive restarts."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .datasets import FaceArrays, stratified_split
from .errors import FerError
from .evaluation import EvaluationReport, evaluate_predictions
from .model_io import ModelMetadata, Preprocessing
from .preprocessing import normalize
from .tta import candidates_for, choose


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe. Defaults are the recipe of the shipped model (see weights/README.md)."""

    arch: str = "cnn"
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3  # peak of the warm-up + cosine schedule
    weight_decay_l2: float = 1e-4
    selection_fraction: float = 0.1  # carved from the training data, stratified, for picking the best epoch
    class_weight_power: float = 0.5  # 0: no weighting, 1: fully balanced (inverse frequency)
    seed: int = 1234
    augment: bool = True
    stage_filters: tuple[int, ...] = (32, 64, 128, 256)
    convs_per_stage: tuple[int, ...] = (2, 2, 2, 2)
    dropout: float = 0.4
    label_smoothing: float = 0.1
    photometric: float = 0.1  # brightness/contrast augmentation factor
    erasing: float = 0.25  # random-erasing probability
    # Test-time augmentation (tta.py). None: the candidate scoring highest on the selection split (never on the
    # held-out data); False: none; True: one with mirror-image averaging.
    flip_tta: bool | None = None


# Named recipes: the fields that differ from TrainConfig's defaults (the current recipe, "v2").
RECIPES: dict[str, dict] = {
    # The first shipped model (FER2013 val 0.6152): fewer convolutions, no label smoothing, no photometric
    # augmentation or erasing, no test-time augmentation.
    "v1": dict(convs_per_stage=(1, 2, 2, 2), label_smoothing=0.0, photometric=0.0, erasing=0.0, flip_tta=False),
    # Two convolutions in the first stage, label smoothing, brightness/contrast and random erasing; test-time
    # augmentation (mirror image, small rotations) chosen on the selection split.
    "v2": {},
    # v2 at 1.5x the width (2.6 M parameters, about 2.3x the compute per face), for 50 epochs: the next candidate,
    # in training on the CPU (weights/README.md).
    "v3": dict(stage_filters=(48, 96, 192, 384)),
}


def recipe_config(recipe: str, **fields) -> TrainConfig:
    """TrainConfig of a named recipe, with `fields` (epochs, batch_size, ...) set on top."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    return TrainConfig(**{**RECIPES[recipe], **fields})


def class_weights(labels: np.ndarray, num_classes: int, power: float) -> dict[int, float]:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = (counts[present].sum() / (present.sum() * counts[present])) ** power
    weights /= weights[present].mean()
    return {i: float(w) for i, w in enumerate(weights)}


def build_model(config: TrainConfig, input_shape, num_classes: int):
    from .models import CNNConfig, build_cnn

    if config.arch == "cnn":
        return build_cnn(CNNConfig(
            input_shape=input_shape, num_classes=num_classes, l2=config.weight_decay_l2, augment=config.augment,
            stage_filters=tuple(config.stage_filters), convs_per_stage=tuple(config.convs_per_stage),
            dropout=config.dropout, photometric=config.photometric, erasing=config.erasing,
        ))
    raise ValueError(f"unknown architecture {config.arch!r}")


def model_selection_split(metadata: ModelMetadata, train: FaceArrays, purpose: str) -> tuple[np.ndarray, np.ndarray]:
    """(fit, selection) indices into `train`: the split a trained model recorded in its metadata. FerError if it
    recorded none or `train` is not the size it was trained on (then the split would not be the model's)."""
    config = metadata.training_data.get("config") or {}
    if "seed" not in config or "selection_fraction" not in config:
        raise FerError(f"The model does not record the selection split it was trained with, so it cannot be {purpose}"
                       " without touching held-out data.")
    recorded = metadata.training_data.get("n_fit", 0) + metadata.training_data.get("n_selection", 0)
    if recorded and recorded != len(train):
        raise FerError(f"The model was trained on {recorded} images but this dataset's training part has {len(train)}:"
                       " give the dataset it was trained on.")
    return stratified_split(train.labels, float(config["selection_fraction"]), int(config["seed"]))


@dataclass
class TrainResult:
    model: object
    metadata: ModelMetadata
    history: dict[str, list[float]]
    selection_report: EvaluationReport
    seconds: float


def train_classifier(
    train: FaceArrays,
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike,
    preprocessing: Preprocessing = Preprocessing(),
    callbacks=(),
    verbose: int = 2,
) -> TrainResult:
    """Train on `train` minus a stratified selection split; keep the epoch with the best selection accuracy.

    Resumes from `checkpoint_dir` if an interrupted run with the same config left a backup there.
    """
    import keras

    keras.utils.set_random_seed(config.seed)
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    config_file = checkpoint_dir / "config.json"
    config_json = json.loads(json.dumps(asdict(config)))  # tuples as lists, as read back from the file
    if config_file.exists() and json.loads(config_file.read_text()) != config_json:
        raise ValueError(f"{checkpoint_dir} holds checkpoints of a different training config; use another folder")
    config_file.write_text(json.dumps(asdict(config), indent=2))

    fit_idx, sel_idx = stratified_split(train.labels, config.selection_fraction, config.seed)
    x_fit, y_fit = normalize(train.images[fit_idx], preprocessing), train.labels[fit_idx]
    x_sel, y_sel = normalize(train.images[sel_idx], preprocessing), train.labels[sel_idx]
    num_classes = len(train.classes)

    model = build_model(config, x_fit.shape[1:], num_classes)
    steps = int(np.ceil(len(x_fit) / config.batch_size)) * config.epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate * 0.1, decay_steps=steps, warmup_target=config.learning_rate,
        warmup_steps=min(steps // 10, 1000),
    )
    if config.label_smoothing:
        y_fit_target = keras.utils.to_categorical(y_fit, num_classes)
        y_sel_target = keras.utils.to_categorical(y_sel, num_classes)
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    else:
        y_fit_target, y_sel_target, loss = y_fit, y_sel, "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=["accuracy"])
    best_path = checkpoint_dir / "best.weights.h5"
    started = time.monotonic()
    history = model.fit(
        x_fit,
        y_fit_target,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(x_sel, y_sel_target),
        class_weight=class_weights(y_fit, num_classes, config.class_weight_power),
        callbacks=[
            keras.callbacks.BackupAndRestore(str(checkpoint_dir / "backup")),
            keras.callbacks.ModelCheckpoint(
                str(best_path), monitor="val_accuracy", save_best_only=True, save_weights_only=True
            ),
            keras.callbacks.CSVLogger(str(checkpoint_dir / "history.csv"), append=True),
            *callbacks,
        ],
        verbose=verbose,
    )
    seconds = time.monotonic() - started
    if best_path.exists():
        model.load_weights(str(best_path))
    tta = choose(lambda views: model.predict(views, batch_size=256, verbose=0), x_sel, y_sel,
                 candidates_for(config.flip_tta))
    selection_report = evaluate_predictions(y_sel, tta.probabilities.argmax(axis=1), train.classes)
    metadata = ModelMetadata(
        classes=tuple(train.classes),
        input_size=tuple(x_fit.shape[1:3]),
        preprocessing=preprocessing,
        architecture=config.arch,
        flip_tta=tta.chosen.flip,
        tta_rotations=tta.chosen.rotations,
        training_data={
            "n_fit": int(len(y_fit)),
            "n_selection": int(len(y_sel)),
            "class_counts": {c: int(n) for c, n in zip(train.classes, np.bincount(y_fit, minlength=num_classes))},
            "config": asdict(config),
        },
        metrics={"selection_accuracy": selection_report.accuracy, "selection_accuracy_by_tta": tta.accuracy},
    )
    return TrainResult(model=model, metadata=metadata, history=dict(history.history),
                       selection_report=selection_report, seconds=seconds)
