"""Batched inference: all faces of a frame through the network in one call.

Two runtimes behind one `predict`:
  tensorflow  a `tf.function` traced once for any batch size ([None, H, W, C] signature); runs on the GPU when
              TensorFlow sees one. Used for large batches, on GPUs, and whenever the other cannot be used.
  tflite      the same network in TensorFlow Lite, run by its XNNPACK CPU kernels: the model file's int8 copy
              (training/quantization.py; about 4x faster again, any batch size) when it has one, else the float network
              converted at load, for the 1-8 faces of a video frame (about 3x faster than the TensorFlow graph).
              Every network is checked against the Keras model on a test batch before it is used.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from ..core.model_file import LoadedModel, default_model_path, load_model
from ..core.preprocessing import model_input
from .calibration import apply_temperature
from .runtimes import tflite_interpreter
from .tta import TestTimeAugmentation

RUNTIMES = ("auto", "tensorflow")
MAX_TFLITE_BATCH = 8  # larger batches (evaluation, many faces) go through the TensorFlow graph
TFLITE_TOLERANCE = 1e-3  # largest allowed difference in any probability between the two runtimes
INT8_TOLERANCE = 0.05  # the same for the int8 copy (its accuracy against the float net is measured when made)


def _tensorflow_device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU ({details.get('device_name', gpus[0].name)})"
    return "CPU"


class InferenceEngine:
    """Runs a loaded model on float32 batches (N, H, W, C); any N.

    `runtime="auto"` uses TFLite/XNNPACK for batches of up to MAX_TFLITE_BATCH faces on a CPU (converted on
    first use), the TensorFlow graph otherwise; `runtime="tensorflow"` always uses the graph. Each face is
    classified in the views of the model's test-time augmentation (inference/tta.py: mirror image, small
    rotations), all in the same call, and their predictions are averaged, then calibrated by the model's
    temperature. Safe to call from several threads (the live page's stream workers and the photo sidebar share one
    engine).
    """

    def __init__(self, loaded: LoadedModel, runtime: str | None = None):
        import keras

        runtime = runtime or os.environ.get("FER_REALTIME_RUNTIME", "auto")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.loaded = loaded
        self.metadata = loaded.metadata
        self._tta = TestTimeAugmentation.of(loaded.metadata)
        self._model = loaded.model
        self.backend = keras.backend.backend()
        height, width = self.metadata.input_size
        self._input_shape = (height, width, self.metadata.channels)
        if self.backend == "tensorflow":
            import tensorflow as tf

            spec = tf.TensorSpec([None, *self._input_shape], tf.float32)
            self._forward = tf.function(lambda x: self._model(x, training=False), input_signature=[spec])
            self.device = _tensorflow_device()
        else:
            self._forward = lambda x: self._model(x, training=False)
            self.device = keras.backend.backend() + " backend"
        self._use_tflite = runtime == "auto" and self.backend == "tensorflow" and self.device == "CPU"
        self._int8 = loaded.int8_tflite if self._use_tflite else None
        self._tflite_model: bytes | None = None
        # batch size -> (interpreter, its lock, input tensor index, output tensor index)
        self._interpreters: dict[int, tuple[object, threading.Lock, int, int]] = {}
        self._tflite_lock = threading.Lock()
        self.tflite_problem = ""  # why TFLite is not used, when it was wanted

    @property
    def runtime(self) -> str:
        if self._use_tflite and self._int8 is not None:
            return "TFLite XNNPACK, int8"
        if self._use_tflite:
            return f"TFLite XNNPACK for batches up to {MAX_TFLITE_BATCH}, TensorFlow graph above"
        return "TensorFlow graph" if self.backend == "tensorflow" else f"Keras ({self.backend})"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) for a float32 batch (N, H, W, C); N may be 0."""
        n = batch.shape[0]
        if n == 0:
            return np.zeros((0, len(self.metadata.classes)), dtype=np.float32)
        tta = self._tta
        views = np.ascontiguousarray(tta.expand(np.asarray(batch, dtype=np.float32)))
        out = None
        if self._use_tflite and (self._int8 is not None or n <= MAX_TFLITE_BATCH):
            out = self._predict_tflite(views)
        if out is None:
            out = np.asarray(self._forward(views), dtype=np.float32)
        return apply_temperature(tta.combine(out, n), self.metadata.temperature)

    def warm_up(self) -> None:
        self.predict(np.zeros((1, *self._input_shape), dtype=np.float32))

    # --- TFLite ------------------------------------------------------------------------------------------------

    def _predict_tflite(self, batch: np.ndarray) -> np.ndarray | None:
        entry = self._interpreter(batch.shape[0])
        if entry is None:
            return None
        interpreter, lock, input_index, output_index = entry
        with lock:
            interpreter.set_tensor(input_index, batch)
            interpreter.invoke()
            return interpreter.get_tensor(output_index).copy()

    def _interpreter(self, size: int):
        entry = self._interpreters.get(size)
        if entry is not None or not self._use_tflite:
            return entry
        with self._tflite_lock:
            if size not in self._interpreters and self._use_tflite:
                try:
                    if self._tflite_model is None:
                        self._tflite_model = self._checked_int8() or self._convert_and_check()
                    interpreter, input_index, output_index = tflite_interpreter(self._tflite_model, size,
                                                                                self._input_shape)
                    self._interpreters[size] = (interpreter, threading.Lock(), input_index, output_index)
                except Exception as exc:  # converter and interpreter raise many types; the graph still works
                    self._use_tflite = False
                    self._int8 = None
                    self.tflite_problem = f"TFLite not used: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
                    return None
        return self._interpreters.get(size)

    def _difference_from_keras(self, content: bytes) -> float:
        probe = np.random.default_rng(0).random((2, *self._input_shape), dtype=np.float32)
        interpreter, input_index, output_index = tflite_interpreter(content, 2, self._input_shape)
        interpreter.set_tensor(input_index, probe)
        interpreter.invoke()
        return float(np.abs(interpreter.get_tensor(output_index) - np.asarray(self._forward(probe))).max())

    def _checked_int8(self) -> bytes | None:
        if self._int8 is None:
            return None
        difference = self._difference_from_keras(self._int8)
        if not difference <= INT8_TOLERANCE:
            self.tflite_problem = f"int8 copy not used: it differs from the Keras model by {difference:.3g}"
            self._int8 = None
            return None
        return self._int8

    def _convert_and_check(self) -> bytes:
        import tensorflow as tf

        # The converter exports a SavedModel first and prints its signature to stdout: keep stdout clean (--json).
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            converted = tf.lite.TFLiteConverter.from_keras_model(self._model).convert()
        difference = self._difference_from_keras(converted)
        if not difference <= TFLITE_TOLERANCE:
            raise ValueError(f"the converted network differs from the Keras model by {difference:.3g}")
        return converted


_ENGINES: dict[tuple[str, float], InferenceEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(model: str | os.PathLike | None = None) -> InferenceEngine:
    """Load a model file once per process (keyed by path and modification time) and share its engine."""
    path = Path(model) if model is not None else default_model_path()
    resolved = str(path.resolve())
    key = (resolved, path.stat().st_mtime if path.exists() else 0.0)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = InferenceEngine(load_model(path))
            engine.warm_up()
            for stale in [k for k in _ENGINES if k[0] == resolved]:  # the file was replaced: drop its old version
                del _ENGINES[stale]
            _ENGINES[key] = engine
        return engine


def dataset_probabilities(engine: InferenceEngine, faces_gray: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K) of grayscale dataset faces, as the engine runs them (int8, test-time views)."""
    x = model_input(faces_gray, engine.metadata)
    if not len(x):
        return np.zeros((0, len(engine.metadata.classes)), dtype=np.float32)
    return np.concatenate([engine.predict(x[start : start + batch_size]) for start in range(0, len(x), batch_size)])
