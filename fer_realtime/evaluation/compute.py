"""What a face costs, independently of the machine: a network's multiply-adds per pass and per face (all its test-time
views), and the CPU's vector extensions that decide how fast those multiply-adds run (int8 speed differs tenfold
between CPUs with and without AVX-512 VNNI)."""

from __future__ import annotations

import math
import platform
from pathlib import Path

# The extensions that matter for int8 and float32 inference, in the order they are printed.
VECTOR_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                     "amx_int8", "asimd", "asimddp", "sve", "i8mm")


def _shape(tensor_shape) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor_shape[1:] if d is not None)


def layer_multiply_adds(layer) -> int:
    """Multiply-adds of one pass of `layer` for one input (nested models: the sum of their layers)."""
    kind = type(layer).__name__
    if getattr(layer, "layers", None) and kind not in ("Bidirectional",):
        return sum(layer_multiply_adds(inner) for inner in layer.layers)
    try:
        out = _shape(layer.output.shape)
        inputs = layer.input
        first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        given = _shape(first.shape)
    except (AttributeError, ValueError, IndexError):  # a layer never called, or not on a single input
        return 0
    if kind == "Conv2D":
        kh, kw = layer.kernel_size
        return math.prod(out) * kh * kw * given[-1] // layer.groups
    if kind == "DepthwiseConv2D":
        kh, kw = layer.kernel_size
        return math.prod(out) * kh * kw
    if kind == "Dense":
        return math.prod(out) * given[-1]
    if kind in ("LSTM", "GRU", "Bidirectional"):
        cell = layer.forward_layer if kind == "Bidirectional" else layer
        gates = 4 if type(cell).__name__ == "LSTM" else 3
        steps, features = given[0], given[-1]
        per_step = gates * (features + cell.units) * cell.units
        return per_step * steps * (2 if kind == "Bidirectional" else 1)
    return 0


def multiply_adds(model) -> int:
    """Multiply-adds of one pass of `model` for one face (convolutions, dense and recurrent layers; the rest is
    negligible beside them)."""
    return sum(layer_multiply_adds(layer) for layer in model.layers)


def cpu_description() -> tuple[str, tuple[str, ...]]:
    """(CPU model name, its vector extensions among VECTOR_EXTENSIONS) from /proc/cpuinfo; ('', ()) elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), ()
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and not name:
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return name or platform.machine(), tuple(f for f in VECTOR_EXTENSIONS if f in flags)


def describe_cost(model, views: int) -> str:
    """'0.150 GMAC per face (2 views x 0.075)' for a model classified in `views` views."""
    per_pass = multiply_adds(model)
    return f"{per_pass * views / 1e9:.3f} GMAC per face ({views} view{'s' if views != 1 else ''} x {per_pass / 1e9:.3f})"


def describe_cpu() -> str:
    name, extensions = cpu_description()
    return f"{name}; vector extensions: {' '.join(extensions) or 'none of ' + ', '.join(VECTOR_EXTENSIONS[:4])}"
