"""int8 copies of a trained network, stored inside the model file.

The copy is made where training data is at hand (calibration needs real faces), scored against the float network on
the selection split, and tied to the weights it was made from by a digest (core.model_file.weights_digest): a file
whose weights were changed afterwards falls back to float.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core.model_file import weights_digest
from ..core.preprocessing import model_input
from ..inference.runtimes import convert_int8, run_tflite
from ..inference.tta import TestTimeAugmentation
from .trainer import model_selection_split

CALIBRATION_FACES = 512
MAX_ACCURACY_DROP = 0.01  # the int8 copy is stored only if it loses at most this much selection accuracy


def int8_copy(model, metadata, train) -> tuple[bytes | None, object]:
    """(int8 flatbuffer or None, metadata with `int8` filled in) for a network trained on `train` (FaceArrays).

    Calibrates on faces from the part of `train` the network was fitted on and scores both networks on the
    selection split recorded in its metadata (never on held-out data), with the test-time augmentation it records.
    """
    fit, selection = model_selection_split(metadata, train, "quantized")
    seed = int(metadata.training_data["config"]["seed"])
    chosen = np.sort(np.random.default_rng(seed).choice(fit, size=min(CALIBRATION_FACES, len(fit)), replace=False))

    calibration = model_input(train.images[chosen], metadata)
    x_selection = model_input(train.images[selection], metadata)
    y_selection = train.labels[selection]
    content = convert_int8(model, calibration)
    views = TestTimeAugmentation.of(metadata)
    float_p = views.predict(lambda x: model.predict(x, batch_size=256, verbose=0), x_selection)
    int8_p = views.predict(lambda x: run_tflite(content, x), x_selection)
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
