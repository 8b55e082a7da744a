"""Model builders, one per architecture, in the style of keras.applications: plain config in, model out."""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers


@dataclass(frozen=True)
class CNNConfig:
    input_shape: tuple[int, int, int] = (48, 48, 1)
    num_classes: int = 7
    # Filters per stage; each stage is `convs_per_stage` 3x3 conv-BN-ReLU followed by 2x2 max-pooling.
    stage_filters: tuple[int, ...] = (32, 64, 128, 256)
    convs_per_stage: tuple[int, ...] = (1, 2, 2, 2)
    dropout: float = 0.4
    l2: float = 1e-4
    augment: bool = True


def augmentation_block(name: str = "augment") -> keras.Sequential:
    """Random flips, shifts, small rotations and zoom; active only while training, identity at inference."""
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomTranslation(0.1, 0.1, fill_mode="nearest"),
            layers.RandomRotation(0.05, fill_mode="nearest"),
            layers.RandomZoom((-0.1, 0.1), fill_mode="nearest"),
        ],
        name=name,
    )


def build_cnn(config: CNNConfig = CNNConfig()) -> keras.Model:
    """A VGG-style CNN for small grayscale faces: conv-BN-ReLU stages, global pooling, dropout, softmax."""
    if len(config.stage_filters) != len(config.convs_per_stage):
        raise ValueError("stage_filters and convs_per_stage must have the same length")
    regularizer = keras.regularizers.L2(config.l2) if config.l2 else None
    inputs = keras.Input(shape=config.input_shape, name="face")
    x = augmentation_block()(inputs) if config.augment else inputs
    for stage, (filters, convs) in enumerate(zip(config.stage_filters, config.convs_per_stage), start=1):
        for i in range(convs):
            x = layers.Conv2D(
                filters, 3, padding="same", use_bias=False, kernel_regularizer=regularizer,
                name=f"stage{stage}_conv{i + 1}",
            )(x)
            x = layers.BatchNormalization(name=f"stage{stage}_bn{i + 1}")(x)
            x = layers.ReLU(name=f"stage{stage}_relu{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = layers.Dense(config.num_classes, activation="softmax", kernel_regularizer=regularizer, name="emotion")(x)
    return keras.Model(inputs, outputs, name="fer_cnn")
