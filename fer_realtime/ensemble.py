"""Averaging ensembles: several trained networks in one model file, run for all faces in one batched call.

The ensemble is a plain Keras functional model (input -> every member -> mean of their class probabilities), so
the engine, TFLite conversion, safe-mode loading and `evaluate` treat it like any single network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .datasets import FaceArrays, stratified_split
from .errors import FerError
from .evaluation import EvaluationReport, evaluate_predictions
from .model_io import LoadedModel, ModelMetadata
from .preprocessing import normalize
from .training import predict_classes


class EnsembleError(FerError, ValueError):
    """Members that cannot be averaged together (different classes, inputs or selection splits)."""


def build_ensemble(members: Sequence, name: str = "fer_ensemble"):
    """A model averaging the class probabilities of `members` (Keras models with the same input and classes)."""
    import keras
    from keras import layers

    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    inputs = keras.Input(shape=tuple(members[0].input_shape[1:]), name="face")
    # Each member is wrapped under a unique name: the members' own names (all "fer_cnn") would collide.
    outputs = [keras.Model(m.input, m.output, name=f"member{i}")(inputs) for i, m in enumerate(members, start=1)]
    return keras.Model(inputs, layers.Average(name="emotion")(outputs), name=name)


def check_members(members: Sequence[LoadedModel]) -> tuple[int, float]:
    """(seed, fraction) of the selection split all members were chosen on; EnsembleError if they differ in
    classes, input, preprocessing or selection split (then no split is held out from all of them)."""
    first = members[0].metadata
    for member in members[1:]:
        meta = member.metadata
        for what, a, b in (("classes", first.classes, meta.classes), ("input size", first.input_size, meta.input_size),
                           ("preprocessing", first.preprocessing, meta.preprocessing)):
            if a != b:
                raise EnsembleError(f"{member.path.name} differs from {members[0].path.name} in {what} ({b} vs {a}).")
    splits = set()
    for member in members:
        config = member.metadata.training_data.get("config") or {}
        if "seed" not in config or "selection_fraction" not in config:
            raise EnsembleError(f"{member.path.name} does not record the selection split it was trained with.")
        splits.add((int(config["seed"]), float(config["selection_fraction"])))
    if len(splits) > 1:
        raise EnsembleError(
            "The members were chosen on different selection splits (seed, fraction: "
            + ", ".join(map(str, sorted(splits))) + "), so no data is held out from all of them."
        )
    return splits.pop()


@dataclass
class SelectionScores:
    """Accuracy on the shared selection split, for every member and the ensemble, without and with flips."""

    members: dict[str, dict[str, float]]  # file name -> {"plain", "flip"}
    ensemble: EvaluationReport
    ensemble_flip: EvaluationReport

    def to_dict(self) -> dict:
        return {"members": self.members, "ensemble": self.ensemble.accuracy, "ensemble_flip": self.ensemble_flip.accuracy}


def selection_scores(members: Sequence[LoadedModel], ensemble, train: FaceArrays, seed: int,
                     fraction: float) -> SelectionScores:
    _, selection = stratified_split(train.labels, fraction, seed)
    x = normalize(train.images[selection], members[0].metadata.preprocessing)
    y = train.labels[selection]

    def accuracy(model, flip: bool) -> float:
        return float(np.mean(predict_classes(model, x, flip_tta=flip) == y))

    scores = {m.path.name: {"plain": accuracy(m.model, False), "flip": accuracy(m.model, True)} for m in members}
    return SelectionScores(
        members=scores,
        ensemble=evaluate_predictions(y, predict_classes(ensemble, x), train.classes),
        ensemble_flip=evaluate_predictions(y, predict_classes(ensemble, x, flip_tta=True), train.classes),
    )


def ensemble_metadata(members: Sequence[LoadedModel], flip_tta: bool, scores: SelectionScores) -> ModelMetadata:
    first = members[0].metadata
    selection = scores.ensemble_flip if flip_tta else scores.ensemble
    return ModelMetadata(
        classes=first.classes,
        input_size=first.input_size,
        preprocessing=first.preprocessing,
        architecture=f"ensemble of {len(members)} ({', '.join(m.metadata.architecture or '?' for m in members)})",
        flip_tta=flip_tta,
        training_data={
            "config": first.training_data.get("config", {}),  # the shared selection split (seed, fraction)
            **{key: first.training_data[key] for key in ("n_fit", "n_selection", "class_counts")
               if key in first.training_data},
            "members": [{"file": m.path.name, "architecture": m.metadata.architecture, "command": m.metadata.command,
                         "training_data": m.metadata.training_data} for m in members],
        },
        metrics={"selection_accuracy": selection.accuracy,
                 "selection_accuracy_without_flip": scores.ensemble.accuracy,
                 "selection_accuracy_with_flip": scores.ensemble_flip.accuracy,
                 "selection_accuracy_members": scores.members},
    )
