"""Averaging ensembles: several trained networks in one model file, run for all faces in one batched call.

The ensemble is a plain Keras functional model (input -> every member -> mean of their class probabilities), so
the engine, TFLite conversion, safe-mode loading and `evaluate` treat it like any single network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.errors import FerError
from ..core.model_file import LoadedModel, ModelMetadata, Preprocessing
from ..core.preprocessing import normalize
from ..data.dataset import FaceArrays, stratified_split
from ..evaluation.metrics import EvaluationReport, evaluate_predictions
from ..inference.tta import CANDIDATES, NO_TTA, PRESETS, TestTimeAugmentation, TTAChoice, choose


class EnsembleError(FerError, ValueError):
    """Members that cannot be averaged together (different classes, inputs or selection splits)."""


def member_layer(index: int) -> str:
    """The name of the ensemble's layer that holds its `index`-th member (from 1)."""
    return f"member{index}"


def build_ensemble(members: Sequence, name: str = "fer_ensemble"):
    """A model averaging the class probabilities of `members` (Keras models with the same input and classes)."""
    import keras
    from keras import layers

    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    inputs = keras.Input(shape=tuple(members[0].input_shape[1:]), name="face")
    # Each member is wrapped under a unique name: the members' own names (all "fer_cnn") would collide.
    outputs = [keras.Model(m.input, m.output, name=member_layer(i))(inputs) for i, m in enumerate(members, start=1)]
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
    """Accuracy on the shared selection split: every member without and with mirror-image averaging, and the
    ensemble under each test-time augmentation candidate (the best one chosen)."""

    members: dict[str, dict[str, float]]  # file name -> {"plain", "flip"}
    ensemble: TTAChoice
    report: EvaluationReport  # the ensemble under the chosen test-time augmentation

    def to_dict(self) -> dict:
        return {"members": self.members, "ensemble_by_tta": self.ensemble.accuracy}


def selection_scores(members: Sequence[LoadedModel], ensemble, train: FaceArrays, seed: int, fraction: float,
                     candidates: Sequence[TestTimeAugmentation] = CANDIDATES) -> SelectionScores:
    _, selection = stratified_split(train.labels, fraction, seed)
    x = normalize(train.images[selection], members[0].metadata.preprocessing)
    y = train.labels[selection]

    def predict(model):
        return lambda views: model.predict(views, batch_size=256, verbose=0)

    scores = {}
    for member in members:
        accuracy = choose(predict(member.model), x, y, (NO_TTA, PRESETS["flip"])).accuracy
        scores[member.path.name] = {"plain": accuracy[NO_TTA.name], "flip": accuracy[PRESETS["flip"].name]}
    chosen = choose(predict(ensemble), x, y, candidates)
    return SelectionScores(members=scores, ensemble=chosen,
                           report=evaluate_predictions(y, chosen.probabilities.argmax(axis=1), train.classes))


def ensemble_metadata(members: Sequence[LoadedModel], scores: SelectionScores) -> ModelMetadata:
    first = members[0].metadata
    tta = scores.ensemble.chosen
    return ModelMetadata(
        classes=first.classes,
        input_size=first.input_size,
        preprocessing=first.preprocessing,
        architecture=f"ensemble of {len(members)} ({', '.join(m.metadata.architecture or '?' for m in members)})",
        **tta.metadata_fields(),
        training_data={
            "config": first.training_data.get("config", {}),  # the shared selection split (seed, fraction)
            **{key: first.training_data[key] for key in ("n_fit", "n_selection", "class_counts")
               if key in first.training_data},
            "members": [{"file": m.path.name, "architecture": m.metadata.architecture, "command": m.metadata.command,
                         "training_data": m.metadata.training_data} for m in members],
        },
        metrics={"selection_accuracy": scores.report.accuracy,
                 "selection_accuracy_by_tta": scores.ensemble.accuracy,
                 "selection_accuracy_members": scores.members},
    )


@dataclass(frozen=True)
class Member:
    """One network of an ensemble file, as `train` wrote it: `file` is the name it had when it joined."""

    file: str
    model: object  # keras.Model
    metadata: ModelMetadata


def unpack_ensemble(loaded: LoadedModel) -> list[Member]:
    """The member networks of an ensemble file, each with its own command and training record, so that they can
    join another ensemble. The ensemble's views, temperature and crop margins were chosen for the ensemble, not for
    the member: a member comes out without them (one view, T 1, the crop margins of a newly trained model)."""
    records = loaded.metadata.training_data.get("members") or []
    if not records:
        raise EnsembleError(f"{loaded.path.name} is not an ensemble made by `ensemble`; it has no member networks.")
    layers = {layer.name: layer for layer in loaded.model.layers}
    unframed = Preprocessing()
    preprocessing = dataclasses.replace(loaded.metadata.preprocessing, crop_margin=unframed.crop_margin,
                                        detector_margins=unframed.detector_margins,
                                        detector_margins_by_width=unframed.detector_margins_by_width)
    members = []
    for index, record in enumerate(records, start=1):
        if member_layer(index) not in layers:
            raise EnsembleError(f"{loaded.path.name} records {len(records)} members but has no network "
                                f"{member_layer(index)}.")
        metadata = ModelMetadata(classes=loaded.metadata.classes, input_size=loaded.metadata.input_size,
                                 preprocessing=preprocessing, architecture=record.get("architecture") or "cnn",
                                 training_data=record.get("training_data") or {}, command=record.get("command", ""),
                                 metrics={"unpacked_from": loaded.path.name})
        members.append(Member(str(record.get("file") or f"{member_layer(index)}.keras"), layers[member_layer(index)],
                              metadata))
    return members
