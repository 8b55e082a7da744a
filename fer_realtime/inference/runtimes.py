"""TensorFlow Lite: a network converted to an int8 flatbuffer (calibrated on real faces), and XNNPACK
interpreters that run one.

XNNPACK runs the int8 network about 4x faster than the float one on a CPU (see `fer-realtime bench`). Its inputs and
outputs stay float32, so the engine feeds it the same batches.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from ..core.threads import compute_threads

CALIBRATION_BATCH = 8


def convert_int8(model, calibration: np.ndarray) -> bytes:
    """The network as an int8 TFLite flatbuffer (float32 input and output), calibrated on `calibration` faces."""
    import tensorflow as tf

    calibration = np.ascontiguousarray(calibration, dtype=np.float32)

    def representative():
        for start in range(0, len(calibration), CALIBRATION_BATCH):
            yield [calibration[start : start + CALIBRATION_BATCH]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    # The converter exports a SavedModel first and prints to stdout: keep stdout clean (--json).
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return converter.convert()


def tflite_interpreter(content: bytes, batch: int, input_shape):
    """An XNNPACK interpreter for `content` sized for batches of `batch`: (interpreter, input index, output index)."""
    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter warns that it moves to the ai_edge_litert package
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=content, num_threads=compute_threads())
    input_index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(input_index, [batch, *input_shape])
    interpreter.allocate_tensors()
    return interpreter, input_index, interpreter.get_output_details()[0]["index"]


def run_tflite(content: bytes, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Class probabilities of a TFLite network for all of `x`, `batch` at a time."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    interpreters = {}
    out = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        if len(chunk) not in interpreters:
            interpreters[len(chunk)] = tflite_interpreter(content, len(chunk), x.shape[1:])
        interpreter, input_index, output_index = interpreters[len(chunk)]
        interpreter.set_tensor(input_index, chunk)
        interpreter.invoke()
        out.append(interpreter.get_tensor(output_index).copy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
