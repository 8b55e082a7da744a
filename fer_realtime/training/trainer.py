"""Training a classifier on face arrays: selection split, class weighting, checkpoints that survive restarts."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.errors import FerError
from ..core.model_file import ModelMetadata, Preprocessing
from ..core.preprocessing import normalize
from ..data.dataset import FaceArrays, stratified_split
from ..data.ferplus import TRAINING_LABELS, FerPlusVotes, training_targets
from ..evaluation.metrics import EvaluationReport, evaluate_predictions
from ..inference.tta import candidates_for, choose, crop_margin
from .devices import (TrainingStrategy, decorrelate_random_layers, replica_statistics_averager, same_on_every_worker,
                      training_strategy)
from .distillation import TARGETS, Teacher, distillation_targets
from .recipes import TrainConfig
from .run_state import STATE_FILE, RunState, newest_state, save_state
from .transfer import Stage, apply_stage, plan_recipe_stages, stage_at, stage_summary, staged_optimizer


def class_weights(labels: np.ndarray, num_classes: int, power: float) -> dict[int, float]:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = (counts[present].sum() / (present.sum() * counts[present])) ** power
    weights /= weights[present].mean()
    return {i: float(w) for i, w in enumerate(weights)}


def build_model(config: TrainConfig, input_shape, num_classes: int):
    """The network of `config`."""
    return build_network(config, input_shape, num_classes)[0]


def build_network(config: TrainConfig, input_shape, num_classes: int):
    """(model, TransferModel or None): the network of `config`, and for the staged ImageNet networks what their
    stages unfreeze (architectures.TransferModel)."""
    from .architectures import PACKAGED_BASE, CNNConfig, TransferConfig, build_cnn, build_transfer

    if config.arch == PACKAGED_BASE:
        built = build_transfer(TransferConfig(
            input_shape=input_shape, num_classes=num_classes, base=PACKAGED_BASE, image_size=config.image_size or None,
            dropout=config.dropout, augment=config.augment, photometric=config.photometric, erasing=config.erasing,
            l2=config.weight_decay_l2,
        ))
        return built.model, built
    if config.arch == "cnn":
        return build_cnn(CNNConfig(
            input_shape=input_shape, num_classes=num_classes, l2=config.weight_decay_l2, augment=config.augment,
            stage_filters=tuple(config.stage_filters), convs_per_stage=tuple(config.convs_per_stage),
            dropout=config.dropout, photometric=config.photometric, erasing=config.erasing, crop=config.crop,
        )), None
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


def _optimizer(config: TrainConfig, steps: int):
    """Warm-up to the peak learning rate over the first tenth of the steps (at most 1,000), then a cosine to 0."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate * 0.1, decay_steps=steps, warmup_target=config.learning_rate,
        warmup_steps=min(steps // 10, 1000),
    )
    if config.optimizer == "adam":
        return keras.optimizers.Adam(schedule)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose adam or sgd")


def _assign(variables, values, what: str, source) -> None:
    if len(variables) != len(values) or any(tuple(v.shape) != a.shape for v, a in zip(variables, values)):
        raise FerError(f"{source} holds a run of another network ({what} do not match); use another run folder.")
    for variable, value in zip(variables, values):
        variable.assign(value)


def _same_config(recorded: dict, current: dict) -> bool:
    """Whether a recorded run's config is `current`; a field added to TrainConfig since counts at its default."""
    defaults = json.loads(json.dumps(asdict(TrainConfig())))
    return all(recorded.get(k, defaults.get(k)) == current.get(k, defaults.get(k)) for k in {*recorded, *current})


def _epoch_line(epoch: int, epochs: int, logs: dict, seconds: float, best: bool) -> str:
    return (f"epoch {epoch}/{epochs}: loss {logs.get('loss', float('nan')):.4f} accuracy "
            f"{logs.get('accuracy', float('nan')):.4f} selection accuracy {logs.get('val_accuracy', float('nan')):.4f}"
            f"{' (best)' if best else ''} {seconds:.0f} s")


def train_classifier(
    train: FaceArrays,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    preprocessing: Preprocessing = Preprocessing(),
    callbacks=(),
    verbose: int = 2,
    handover: str | os.PathLike | None = None,
    resume: bool = False,
    devices: int = 1,
    teacher: Teacher | None = None,
    votes: FerPlusVotes | None = None,
) -> TrainResult | None:
    """Train on `train` minus a stratified selection split; keep the epoch with the best selection accuracy.

    The run's state (run_state.py) is replaced in `run_dir` after every epoch and, when `handover` is given, also
    written there in compact form (to be committed). A state in `run_dir` of the same config is always continued;
    with `resume`, so is the handover file, whichever has more epochs done, and finding neither is an error.

    With `devices` above 1, or several workers in TF_CONFIG, the network is fitted data-parallel (devices.py) on
    whole global batches of `config.batch_size`, and the run says so. A worker other than the chief reads the
    run's state as the chief does, writes its own to a private temporary folder, and returns None after training:
    the chief's result is the run's.

    With `config.distill_weight`, each fitting face's target mixes its label target (below) with the probabilities
    of `teacher` (whose weights digest is `config.teacher`), read once and kept in the run's state, so a continued
    run needs no teacher.

    With `config.labels` other than "original", each face's target mixes its label with its FER+ vote shares from
    `votes` (data/ferplus.py). A staged network (`config.stage_epochs`) changes which layers train, and its
    optimizer, at each stage boundary; a resumed run enters the stage it stopped in.
    """
    import keras

    placement = training_strategy(devices, config.batch_size)  # first: it fixes TensorFlow's devices
    chief = placement.plan.chief
    run_dir = Path(run_dir)
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
    handover = Path(handover) if handover else None
    config_json = json.loads(json.dumps(asdict(config)))  # tuples as lists, as read back from a file
    state_path = run_dir / STATE_FILE
    found = newest_state(state_path, handover if resume else None)
    if resume and found is None:
        raise FerError(f"Nothing to resume: no run state in {run_dir}"
                       + (f" nor in {handover}." if handover else " (give --handover FILE to resume from one)."))
    if found and not _same_config(found[0].record.get("config") or {}, config_json):
        raise FerError(f"{found[1]} holds a run of a different training config; give the same options, or another "
                       "run folder.")

    check_labels(config, votes)
    fit_idx, sel_idx = stratified_split(train.labels, config.selection_fraction, config.seed)
    x_fit, y_fit = normalize(train.images[fit_idx], preprocessing), train.labels[fit_idx]
    x_sel, y_sel = normalize(train.images[sel_idx], preprocessing), train.labels[sel_idx]
    num_classes = len(train.classes)
    run_seed = config.seed if config.init_seed is None else config.init_seed
    steps_per_epoch = _steps_per_epoch(len(x_fit), config.batch_size, placement)
    teacher_targets = _teacher_targets(config, teacher, found, train, fit_idx, sel_idx, verbose)

    keras.utils.set_random_seed(run_seed)
    with placement.scope():
        model, transfer = build_network(config, x_fit.shape[1:], num_classes)
        stages = _plan_stages(config, transfer)
        steps = steps_per_epoch * config.epochs
        if config.labels != "original" or config.label_smoothing or teacher_targets is not None:
            files, label_votes = train.files, votes if config.labels != "original" else None
            y_fit_target = training_targets(y_fit, [files[i] for i in fit_idx] if files else (), num_classes,
                                            label_votes, config.votes_weight, train.classes)[0]
            y_sel_target = training_targets(y_sel, [files[i] for i in sel_idx] if files else (), num_classes,
                                            label_votes, config.votes_weight, train.classes)[0]
            if teacher_targets is not None:
                y_fit_target = distillation_targets(y_fit_target, teacher_targets, config.distill_weight)
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        else:
            y_fit_target, y_sel_target, loss = y_fit, y_sel, "sparse_categorical_crossentropy"

        def enter_stage(index: int) -> None:
            """Compile for the stage that trains epoch `index`'s layers (the whole run is one stage for a cnn)."""
            with placement.scope():
                if stages:
                    stage = stages[index]
                    apply_stage(model, stage)
                    optimizer = staged_optimizer(stage, index == len(stages) - 1, steps_per_epoch)
                else:
                    optimizer = _optimizer(config, steps)
                model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
                model.optimizer.build(model.trainable_variables)

    if stages and placement.strategy is not None:
        raise FerError("A network trained in stages trains on one device; leave out --devices.")

    record = {"config": config_json, "history": {}, "best_epoch": 0, "best_selection_accuracy": -1.0,
              **({"teacher": teacher.describe()} if teacher_targets is not None and teacher else {})}
    best_variables = None
    epochs_done = 0
    stage_index = stage_at(stages, 0)
    if found:
        state, source = found
        record, best_variables, epochs_done = state.record, state.best_variables, state.epochs_done
        stage_index = stage_at(stages, min(epochs_done, config.epochs - 1))
        enter_stage(stage_index)
        _assign(model.variables, state.model_variables, "model variables", source)
        if record.get("stage", 0) == stage_index:  # a run stopped at a stage's end goes on with a new optimizer
            _assign(model.optimizer.variables, state.optimizer_variables, "optimizer variables", source)
        if verbose:
            print(f"resuming after epoch {epochs_done} of {config.epochs} from {source}", flush=True)
    else:
        enter_stage(stage_index)
    fit_callbacks, fit_options = list(callbacks), {}
    if placement.strategy is not None:
        decorrelate_random_layers(model, placement)
        if not same_on_every_worker(placement, epochs_done):
            raise FerError("The workers found different run states to continue; give each the same --handover file "
                           "or a shared --checkpoints folder, or start the run afresh on all of them.")
        fit_callbacks.append(replica_statistics_averager(model, placement))
        fit_options.update(steps_per_epoch=steps_per_epoch,
                           validation_batch_size=_validation_batch_size(len(x_sel), config.batch_size, placement))
        print(f"training on {placement.plan.describe()}; global batch {config.batch_size}, "
              f"{config.batch_size // placement.plan.replicas} per device, {steps_per_epoch} steps per epoch, peak "
              f"learning rate {config.learning_rate:g}", flush=True)

    # Only the chief writes the run's state; another worker writes its own where nobody reads it (removed at the
    # end, or when the process ends if training fails).
    private = None if chief else tempfile.TemporaryDirectory(prefix="fer-realtime-worker-")
    write_path, write_handover = (state_path, handover) if chief else (Path(private.name) / STATE_FILE, None)
    weights = class_weights(y_fit, num_classes, config.class_weight_power)
    started = time.monotonic()
    for epoch in range(epochs_done, config.epochs):
        if stage_at(stages, epoch) != stage_index:
            stage_index = stage_at(stages, epoch)
            enter_stage(stage_index)
            if verbose:
                print(f"stage {stage_index}: {stages[stage_index].name}, learning rate "
                      f"{stages[stage_index].learning_rate:g}", flush=True)
        keras.utils.set_random_seed(run_seed * 1000 + epoch)  # shuffling: the same whether resumed or not
        epoch_started = time.monotonic()
        fitted = model.fit(x_fit, y_fit_target, batch_size=config.batch_size, initial_epoch=epoch, epochs=epoch + 1,
                           validation_data=(x_sel, y_sel_target), class_weight=weights, callbacks=fit_callbacks,
                           verbose=0, **fit_options)
        logs = {k: float(v[-1]) for k, v in fitted.history.items()}
        for key, value in {**logs, "seconds": time.monotonic() - epoch_started}.items():
            record["history"].setdefault(key, []).append(value)
        if stages:
            record["history"].setdefault("stage", []).append(stages[stage_index].name)
        record["stage"] = stage_index
        best = logs["val_accuracy"] > record["best_selection_accuracy"]
        if best:
            record.update(best_epoch=epoch + 1, best_selection_accuracy=logs["val_accuracy"])
            best_variables = [v.numpy() for v in model.variables]
        state = RunState(epoch + 1, [v.numpy() for v in model.variables],
                         [v.numpy() for v in model.optimizer.variables], best_variables, record,
                         {} if teacher_targets is None else {TARGETS: teacher_targets})
        save_state(write_path, state)
        if write_handover:
            save_state(write_handover, state, compact=True)
        if verbose:
            print(_epoch_line(epoch + 1, config.epochs, logs, time.monotonic() - epoch_started, best), flush=True)
    seconds = time.monotonic() - started
    if placement.strategy is not None:
        print(f"{int(model.optimizer.iterations.numpy())} training steps done on {placement.plan.describe()}",
              flush=True)
        if not chief:
            private.cleanup()
            return None
        # Everything after training works on a plain copy: nothing there needs (or waits for) the other devices.
        trained = best_variables if best_variables is not None else [v.numpy() for v in model.variables]
        model = build_model(config, x_fit.shape[1:], num_classes)
        _assign(model.variables, trained, "model variables", state_path)
    elif best_variables is not None:
        _assign(model.variables, best_variables, "model variables", state_path)
    history = record["history"]
    candidates = [c for c in candidates_for(config.flip_tta, crop_margin(model))
                  if not config.max_views or c.views <= config.max_views]
    tta = choose(lambda views: model.predict(views, batch_size=256, verbose=0), x_sel, y_sel_target.argmax(axis=1)
                 if y_sel_target.ndim == 2 else y_sel, candidates)
    selection_report = evaluate_predictions(y_sel_target.argmax(axis=1) if y_sel_target.ndim == 2 else y_sel,
                                            tta.probabilities.argmax(axis=1), train.classes)
    metadata = ModelMetadata(
        classes=tuple(train.classes),
        input_size=tuple(x_fit.shape[1:3]),
        preprocessing=preprocessing,
        architecture=config.arch,
        **tta.chosen.metadata_fields(),
        training_data={
            "n_fit": int(len(y_fit)),
            "n_selection": int(len(y_sel)),
            "class_counts": {c: int(n) for c, n in zip(train.classes, np.bincount(y_fit, minlength=num_classes))},
            "config": asdict(config),
            **({"teacher": record["teacher"]} if "teacher" in record else {}),
        },
        metrics={"selection_accuracy": selection_report.accuracy, "selection_accuracy_by_tta": tta.accuracy,
                 **({"selection_labels": config.labels} if config.labels != "original" else {}),
                 **({"stages": stage_summary(stages, record["history"].get("val_accuracy", []))} if stages else {})},
    )
    if transfer is not None:
        metadata.training_data["pretrained_base"] = transfer.base_description
    return TrainResult(model=model, metadata=metadata, history=dict(history),
                       selection_report=selection_report, seconds=seconds)


def check_labels(config: TrainConfig, votes: FerPlusVotes | None) -> None:
    """FerError (one sentence) where the labels asked for cannot be had."""
    if config.labels not in TRAINING_LABELS:
        raise FerError(f"Unknown labels {config.labels!r}; choose {', '.join(TRAINING_LABELS)}.")
    if config.labels != "original":
        if votes is None:
            raise FerError("Training on the FER+ votes needs the votes file (ferplus_votes.csv beside the dataset's "
                           "train/ folder); none was found.")
        if not 0 < config.votes_weight <= 1:
            raise FerError(f"The weight of the votes must be in (0, 1], got {config.votes_weight}.")


def _plan_stages(config: TrainConfig, transfer) -> list[Stage]:
    """The stages of a staged network ([] for a network trained whole); FerError if the epochs do not add up."""
    if transfer is None:
        return []
    try:
        return plan_recipe_stages(transfer.backbone_blocks, transfer.block_names, config.stage_epochs, config.epochs,
                                  config.learning_rate, config.finetune_lr_ratio)
    except ValueError as exc:
        raise FerError(str(exc)) from None


def _teacher_targets(config: TrainConfig, teacher: Teacher | None, found, train: FaceArrays, fit_idx: np.ndarray,
                     sel_idx: np.ndarray, verbose: int) -> np.ndarray | None:
    """The teacher's probabilities for the fitting faces: from the state being continued, else read now."""
    if not config.distill_weight:
        return None
    if found and TARGETS in found[0].extras:
        return found[0].extras[TARGETS]
    if teacher is None or teacher.digest != config.teacher:
        raise FerError("This run learns from a teacher: give its model file (--teacher), the one the run started with.")
    if tuple(teacher.loaded.metadata.classes) != tuple(train.classes):
        raise FerError(f"The teacher {teacher.loaded.path.name} knows the classes "
                       f"{list(teacher.loaded.metadata.classes)}, the dataset {list(train.classes)}.")
    _, teacher_selection = model_selection_split(teacher.loaded.metadata, train, "a teacher")
    if not np.array_equal(np.sort(teacher_selection), np.sort(sel_idx)):
        raise FerError(f"The teacher {teacher.loaded.path.name} was trained with another selection split than --seed "
                       f"{config.seed} gives, so it has seen faces the student is chosen on; give the teacher's seed.")
    if verbose:
        print(f"reading the {len(fit_idx)} fitting faces with the teacher {teacher.loaded.path.name}", flush=True)
    return teacher.probabilities(train.images[fit_idx])


def _steps_per_epoch(fit_images: int, batch_size: int, placement: TrainingStrategy) -> int:
    """One device: every image every epoch, the last batch smaller. Several: whole global batches only (a smaller
    last batch could leave a device without an image, and its batch-normalisation statistics then turn NaN and
    spread through the gradients); Keras shuffles before batching, so the images left over differ every epoch."""
    if placement.strategy is None:
        return int(np.ceil(fit_images / batch_size))
    if fit_images < batch_size:
        raise FerError(f"The training images left after the selection split ({fit_images}) do not fill one batch of "
                       f"{batch_size} to split across {placement.plan.replicas} devices; give a smaller --batch-size.")
    return fit_images // batch_size


def _validation_batch_size(selection_images: int, batch_size: int, placement: TrainingStrategy) -> int:
    """Several devices: Keras averages the first batch of a fit or an evaluation over the devices (to build the
    network's metrics), which fails unless it splits evenly; the selection split can be smaller than a batch. The last
    batch must give every device an image too (a device with none fails in batch normalisation): the largest size,
    a multiple of the devices up to `batch_size`, whose last batch is whole or holds at least one image per device."""
    replicas = placement.plan.replicas
    for size in range(min(batch_size, selection_images) // replicas * replicas, 0, -replicas):
        if selection_images % size == 0 or selection_images % size >= replicas:
            return size
    raise FerError(f"The selection split ({selection_images} images) cannot be cut into batches that give each of "
                   f"the {replicas} devices an image; give more training images or fewer devices.")
