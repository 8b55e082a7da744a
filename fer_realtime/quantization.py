"""int8 TensorFlow Lite copies of a network, calibrated on real faces, stored inside the model file.

XNNPACK runs the int8 network about 4x faster than the float one on a CPU (see `fer-realtime bench`). Its
inputs and outputs stay float32, so the engine feeds it the same batches. The copy is made where training data
is at hand (calibration needs real faces), scored against the float network on the selection split, and tied to
the weights it was made from by a digest: a file whose weights were changed afterwards falls back to float.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings

import numpy as np

CALIBRATION_FACES = 512
CALIBRATION_BATCH = 8


def weights_digest(model) -> str:
    """sha256 over the network's weights, in order: ties a converted copy to these exact weights."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        array = np.ascontiguousarray(weight)
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


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
        interpreter = tf.lite.Interpreter(model_content=content, num_threads=os.cpu_count() or 1)
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


MAX_ACCURACY_DROP = 0.01  # the int8 copy is stored only if it loses at most this much selection accuracy


def int8_copy(model, metadata, train) -> tuple[bytes | None, object]:
    """(int8 flatbuffer or None, metadata with `int8` filled in) for a network trained on `train` (FaceArrays).

    Calibrates on faces from the part of `train` the network was fitted on and scores both networks on the
    selection split recorded in its metadata (never on held-out data), with the test-time augmentation it records.
    """
    import dataclasses

    from .preprocessing import model_input
    from .training import model_selection_split

    fit, selection = model_selection_split(metadata, train, "quantized")
    seed = int(metadata.training_data["config"]["seed"])
    chosen = np.sort(np.random.default_rng(seed).choice(fit, size=min(CALIBRATION_FACES, len(fit)), replace=False))

    calibration = model_input(train.images[chosen], metadata)
    x_selection = model_input(train.images[selection], metadata)
    y_selection = train.labels[selection]
    content = convert_int8(model, calibration)
    float_p = metadata.tta.predict(lambda x: model.predict(x, batch_size=256, verbose=0), x_selection)
    int8_p = metadata.tta.predict(lambda x: run_tflite(content, x), x_selection)
    float_accuracy = float(np.mean(float_p.argmax(1) == y_selection))
    int8_accuracy = float(np.mean(int8_p.argmax(1) == y_selection))
    used = int8_accuracy >= float_accuracy - MAX_ACCURACY_DROP
    info = {
        "used": used,
        "weights_digest": weights_digest(model),
        "calibration_faces": int(len(chosen)),
        "selection_accuracy_float": float_accuracy,
        "selection_accuracy_int8": int8_accuracy,
        "agreement_with_float": float(np.mean(float_p.argmax(1) == int8_p.argmax(1))),
        "max_probability_difference": float(np.abs(float_p - int8_p).max()),
        "size_bytes": len(content),
    }
    return (content if used else None), dataclasses.replace(metadata, int8=info)
