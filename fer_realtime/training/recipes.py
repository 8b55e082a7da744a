"""Training recipes: the config of a training run and the named recipes `train --recipe` offers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

@dataclass(frozen=True)
class TrainConfig:
    """The training recipe. Defaults are the recipe of the shipped model (see weights/README.md)."""

    arch: str = "cnn"
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3  # peak of the warm-up + cosine schedule (recipe_config scales it with the batch)
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
    # Test-time augmentation (inference/tta.py). None: the candidate scoring highest on the selection split (never on the
    # held-out data); False: none; True: one with mirror-image averaging.
    flip_tta: bool | None = None
    optimizer: str = "adam"  # or "sgd" (Nesterov momentum)
    momentum: float = 0.9  # sgd only
    # Weights initialisation, augmentation and shuffling (None: `seed`). `seed` alone fixes the selection split, so
    # runs that differ only here are independent networks on the same split (ensemble members).
    init_seed: int | None = None
    # 0: the network sees the whole face. Else the side of the centre crop it sees: training's random shifts make
    # it a random crop, and its ten crops (centre, corners, mirrored) are a test-time candidate.
    crop: int = 0
    # Distillation (distillation.py): the weights digest of the teacher, and the weight of its probabilities in each
    # face's target (0: the labels alone).
    teacher: str = ""
    distill_weight: float = 0.0
    # Which labels the network learns (data/ferplus.py): "original", "ferplus" (the FER+ annotators' vote shares) or
    # "mix"; each face's target is (1 - votes_weight) x its label + votes_weight x its vote shares (faces without
    # votes keep their label). The selection accuracy is measured against the same targets' top class.
    labels: str = "original"
    votes_weight: float = 0.0
    # arch "efficientnet_lite0": ImageNet EfficientNet-Lite0 with a new head, faces upsampled to image_size, trained
    # in stages (transfer.py): stage 0 the head alone, stage k also the top k blocks of the backbone. stage_epochs
    # gives the epochs of every stage but the last, which trains for the rest of `epochs`; the head trains at
    # `learning_rate`, every later stage at finetune_lr_ratio x it, the last one decaying to 0 (cosine).
    image_size: int = 0
    stage_epochs: tuple[int, ...] = ()
    finetune_lr_ratio: float = 0.3
    # At most this many views per face at test time (0: any of the candidates): the compute budget per face.
    max_views: int = 0


# Named recipes: the fields that differ from TrainConfig's defaults (the current recipe, "v2").
# A recipe's learning rate is the peak for a batch of REFERENCE_BATCH images; recipe_config scales it to the batch
# given (the global batch, whatever the number of devices) by its optimizer's rule in LEARNING_RATE_SCALING, unless
# a learning rate is given: adam by the square root of batch / 64 (v1-v3), sgd linearly with batch / 64 (v4, as
# in Goyal et al., "Accurate, Large Minibatch SGD", with the warm-up the schedule already has).
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
    # v2's network and augmentation with SGD and Nesterov momentum (peak learning rate 0.01), as the FER2013 results
    # near 73 % train: the accuracy campaign's member recipe (weights/README.md), trained in the background.
    "v4": dict(optimizer="sgd", learning_rate=0.01),
    # v2 on random 40x40 crops of the 48x48 face, read at test time in its ten crops, as the FER2013 networks near
    # 73 % do (Pramerdorfer & Kampel 2016; Khaireddin & Chen 2021); 0.69x v2's compute per view.
    "v5": dict(crop=40),
    # The seed's transfer learning: ImageNet EfficientNet-Lite0 (96 px, int8-friendly) with a new head, the head
    # trained first, then the backbone's stages unfrozen one at a time from the top down to stage 4, which train
    # together for the rest of the run; at most the face and its mirror image at test time (2 x 0.08 GMAC).
    "t1": dict(arch="efficientnet_lite0", image_size=96, stage_epochs=(2, 1, 1, 1, 1), dropout=0.3,
               weight_decay_l2=1e-5, max_views=2),
    # t1 unfreezing on down to the stem, one stage per epoch, the whole backbone training for the rest of the run:
    # whether the lower stages, frozen in t1 and fed upsampled gray faces unlike ImageNet's, have to learn faces.
    "t2": dict(arch="efficientnet_lite0", image_size=96, stage_epochs=(2, 1, 1, 1, 1, 1, 1, 1, 1), dropout=0.3,
               weight_decay_l2=1e-5, max_views=2),
}


REFERENCE_BATCH = 64
LEARNING_RATE_SCALING = {"adam": "sqrt", "sgd": "linear"}


def scaled_learning_rate(peak: float, batch_size: int, optimizer: str) -> float:
    """`peak`, the learning rate for a batch of REFERENCE_BATCH, for a batch of `batch_size` under `optimizer`."""
    if batch_size == REFERENCE_BATCH:
        return peak
    ratio = batch_size / REFERENCE_BATCH
    return peak * (ratio if LEARNING_RATE_SCALING[optimizer] == "linear" else ratio**0.5)


def recipe_config(recipe: str, **fields) -> TrainConfig:
    """TrainConfig of a named recipe, with `fields` (epochs, batch_size, ...) set on top. Without a
    `learning_rate` among them, the recipe's is scaled to the batch size (see RECIPES) and stored in the config."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    config = TrainConfig(**{**RECIPES[recipe], **fields})
    if "learning_rate" in fields:
        return config
    rate = scaled_learning_rate(config.learning_rate, config.batch_size, config.optimizer)
    return dataclasses.replace(config, learning_rate=rate)
