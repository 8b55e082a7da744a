"""Staged fine-tuning of a pretrained backbone: train the new head first, then unfreeze blocks from the top.

Independent of the data pipeline: `plan_stages` works on lists of layer names (`TransferModel.backbone_blocks`),
`apply_stage` on a Keras model, and `run_staged_training` calls back into the caller for fitting, so the training
module supplies its own data, callbacks and progress reporting.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Stage:
    index: int  # 0: head only; k: the top k backbone blocks train too
    name: str  # for progress and charts, e.g. "head" or "head + top 2 blocks (stage3)"
    epochs: int
    learning_rate: float
    trainable_layers: tuple[str, ...]  # backbone layers that train in this stage (BatchNormalization excepted)
    frozen_layers: tuple[str, ...]  # backbone layers kept frozen

    @property
    def unfrozen_blocks(self) -> int:
        return self.index


def _block_label(block: Sequence[str]) -> str:
    prefix = os.path.commonprefix(list(block)).rstrip("_")
    return prefix if prefix and len(block) > 1 else block[0]


def plan_stages(
    backbone_blocks: Sequence[Sequence[str]],
    head_epochs: int,
    epochs_per_stage: int,
    base_lr: float,
    lr_decay: float = 0.3,
    max_unfrozen_blocks: int | None = None,
    block_names: Sequence[str] | None = None,
) -> list[Stage]:
    """Stage 0 trains the head (whole backbone frozen) for `head_epochs` at `base_lr`; stage k (k >= 1) also trains
    the top k blocks (the last block first) for `epochs_per_stage` at `base_lr * lr_decay**k`.

    There are 1 + min(max_unfrozen_blocks, number of blocks) stages (max_unfrozen_blocks None: all blocks).
    """
    blocks = [tuple(block) for block in backbone_blocks]
    if not blocks or any(not block for block in blocks):
        raise ValueError("backbone_blocks must be a non-empty list of non-empty lists of layer names")
    if head_epochs < 1 or epochs_per_stage < 1:
        raise ValueError(f"head_epochs and epochs_per_stage must be at least 1, got {head_epochs}, {epochs_per_stage}")
    if not base_lr > 0:
        raise ValueError(f"base_lr must be positive, got {base_lr}")
    if not 0 < lr_decay < 1:
        raise ValueError(f"lr_decay must be in (0, 1) so each stage trains more gently, got {lr_decay}")
    if max_unfrozen_blocks is not None and max_unfrozen_blocks < 0:
        raise ValueError(f"max_unfrozen_blocks must be at least 0, got {max_unfrozen_blocks}")
    if block_names is not None and len(block_names) != len(blocks):
        raise ValueError(f"{len(block_names)} block names for {len(blocks)} blocks")
    labels = list(block_names) if block_names is not None else [_block_label(block) for block in blocks]
    n_unfrozen = len(blocks) if max_unfrozen_blocks is None else min(max_unfrozen_blocks, len(blocks))
    stages = []
    for k in range(n_unfrozen + 1):
        trainable = [name for block in blocks[len(blocks) - k:] for name in block] if k else []
        frozen = [name for block in blocks[: len(blocks) - k] for name in block]
        name = "head" if k == 0 else f"head + top {k} block{'s' if k > 1 else ''} ({labels[len(blocks) - k]})"
        stages.append(Stage(
            index=k, name=name, epochs=head_epochs if k == 0 else epochs_per_stage,
            learning_rate=float(base_lr * lr_decay**k), trainable_layers=tuple(trainable), frozen_layers=tuple(frozen),
        ))
    return stages


def plan_recipe_stages(backbone_blocks, block_names, stage_epochs: Sequence[int], epochs: int, learning_rate: float,
                       finetune_lr_ratio: float) -> list[Stage]:
    """A training recipe's stages: stage k (0: the head alone) trains stage_epochs[k] epochs and the last stage the
    rest of `epochs`; the head at `learning_rate`, every later stage at finetune_lr_ratio x it. ValueError (one
    sentence) if the epochs do not add up."""
    if not stage_epochs or any(n < 1 for n in stage_epochs):
        raise ValueError("A pretrained network trains in stages: give every stage at least one epoch.")
    last = epochs - sum(stage_epochs)
    if last < 1:
        raise ValueError(f"The stages before the last take {sum(stage_epochs)} epochs; give more epochs than that "
                         "(the last stage trains for the rest).")
    planned = plan_stages(backbone_blocks, head_epochs=1, epochs_per_stage=1, base_lr=learning_rate, lr_decay=0.5,
                          max_unfrozen_blocks=len(stage_epochs), block_names=block_names)
    rates = [learning_rate] + [learning_rate * finetune_lr_ratio] * (len(planned) - 1)
    return [replace(stage, epochs=n, learning_rate=rate)
            for stage, n, rate in zip(planned, (*stage_epochs, last), rates)]


def stage_at(stages: Sequence[Stage], epoch: int) -> int:
    """The index of the stage that trains `epoch` (0-based); 0 without stages."""
    done = 0
    for index, stage in enumerate(stages):
        done += stage.epochs
        if epoch < done:
            return index
    return max(0, len(stages) - 1)


def staged_optimizer(stage: Stage, last: bool, steps_per_epoch: int):
    """Adam at the stage's learning rate; the last stage decays it to 0 over its epochs (cosine)."""
    import keras

    rate = stage.learning_rate
    if last:
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=steps_per_epoch * stage.epochs)
    return keras.optimizers.Adam(rate)


def stage_summary(stages: Sequence[Stage], selection_accuracy: Sequence[float]) -> list[dict]:
    """Each stage's name, epochs, learning rate and best accuracy among its epochs of `selection_accuracy`."""
    summary, start = [], 0
    for stage in stages:
        part = list(selection_accuracy[start:start + stage.epochs])
        summary.append({"stage": stage.name, "epochs": stage.epochs, "learning_rate": stage.learning_rate,
                        "best_selection_accuracy": max(part) if part else None})
        start += stage.epochs
    return summary


def _walk(layer, parents=()):
    """(layer, its containers from the outermost down) for every layer nested in `layer` (Models, Sequentials)."""
    for child in getattr(layer, "layers", ()):
        yield child, parents
        yield from _walk(child, parents + (child,))


def apply_stage(model, stage: Stage) -> int:
    """Set the `trainable` flags of the backbone layers for `stage`; returns the number of trainable parameters.

    Layers the stage does not name (the head, the fixed input adapters, augmentation) keep their flags. Layers
    are found at any nesting depth (the backbone is a nested model; a PCA front may wrap the whole model).
    Recompile the model afterwards (the optimizer must see the new set of trainable weights).
    """
    import keras

    wanted = {name: True for name in stage.trainable_layers}
    wanted.update({name: False for name in stage.frozen_layers})
    entries = list(_walk(model))
    found = {}
    for layer, parents in entries:
        if layer.name in wanted and layer.name not in found:
            found[layer.name] = (layer, parents)
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise ValueError(f"the model has no layers named {', '.join(missing[:5])}; was the stage planned for it?")
    # A container's `trainable` setter overwrites all its sublayers, so open the containers of the named layers
    # first and give every other layer inside them its previous flag back.
    before = {id(layer): layer.trainable for layer, _ in entries}
    containers = {id(c): c for _, parents in found.values() for c in parents}
    for container in containers.values():
        container.trainable = True
    for layer, _ in entries:
        if layer.name in wanted and found[layer.name][0] is layer:
            # BatchNormalization stays frozen even in unfrozen blocks: with trainable=False Keras runs it in
            # inference mode, so its ImageNet/FER moving statistics are kept instead of being overwritten by the
            # statistics of small, differently distributed fine-tuning batches, which would wreck the pretrained
            # features the stage is only meant to adjust gently.
            layer.trainable = wanted[layer.name] and not isinstance(layer, keras.layers.BatchNormalization)
        elif id(layer) not in containers:
            layer.trainable = before[id(layer)]
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


def compile_stage(model, stage: Stage) -> None:
    """Default recompilation for a stage: Adam at the stage's learning rate, sparse categorical cross-entropy."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(stage.learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])


@dataclass
class StageRecord:
    stage: Stage
    history: dict[str, list[float]]  # per epoch, as returned by fit_fn
    heldout_accuracy: float | None  # after the stage
    trainable_params: int
    seconds: float


@dataclass
class StagedTrainingResult:
    records: list[StageRecord] = field(default_factory=list)
    restored_stage: int | None = None  # keep_best: the stage whose weights the model ends with, if not the last

    def combined_history(self) -> dict[str, list[Any]]:
        """All stages' epochs in order, with a "stage" column naming each epoch's stage and a 1-based "epoch"."""
        combined: dict[str, list[Any]] = {}
        for record in self.records:
            n = max((len(v) for v in record.history.values()), default=0)
            for key, values in record.history.items():
                combined.setdefault(key, []).extend(values)
            combined.setdefault("stage", []).extend([record.stage.name] * n)
        combined["epoch"] = list(range(1, len(combined.get("stage", [])) + 1))
        return combined


def _heldout_from_history(history: dict[str, list[float]]) -> float | None:
    for key in ("heldout_accuracy", "val_accuracy"):
        if history.get(key):
            return float(history[key][-1])
    return None


def run_staged_training(
    model,
    stages: Sequence[Stage],
    fit_fn: Callable[[Any, Stage], dict[str, list[float]]],
    evaluate_fn: Callable[[Any], float] | None = None,
    compile_fn: Callable[[Any, Stage], None] = compile_stage,
    keep_best: bool = False,
) -> StagedTrainingResult:
    """For each stage: apply_stage, compile_fn(model, stage), history = fit_fn(model, stage) (the caller fits for
    stage.epochs with its own data and callbacks), then record the held-out accuracy: evaluate_fn(model) when
    given, else the last "heldout_accuracy" / "val_accuracy" in the history (None if neither).

    keep_best: end with the weights of the stage with the best held-out accuracy (a later stage that made things
    worse is undone). Leave it off when the held-out data must stay untouched by model selection.
    """
    result = StagedTrainingResult()
    best = (float("-inf"), None, None)  # accuracy, stage index, weights
    for stage in stages:
        trainable_params = apply_stage(model, stage)
        compile_fn(model, stage)
        started = time.monotonic()
        history = {key: list(values) for key, values in dict(fit_fn(model, stage) or {}).items()}
        seconds = time.monotonic() - started
        accuracy = float(evaluate_fn(model)) if evaluate_fn is not None else _heldout_from_history(history)
        result.records.append(StageRecord(stage, history, accuracy, trainable_params, seconds))
        if keep_best and accuracy is not None and accuracy > best[0]:
            best = (accuracy, stage.index, [w.numpy().copy() for w in model.weights])
    if keep_best and best[2] is not None and result.records and best[1] != result.records[-1].stage.index:
        for variable, value in zip(model.weights, best[2]):
            variable.assign(value)
        result.restored_stage = best[1]
    return result
