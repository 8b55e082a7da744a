"""Batched inference: all faces of a frame through the network in one call, traced once."""

from __future__ import annotations

import numpy as np

from .model_io import LoadedModel


def _tensorflow_device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU ({details.get('device_name', gpus[0].name)})"
    return "CPU"


class InferenceEngine:
    """Runs a loaded model on float32 batches (N, H, W, C); any N without retracing.

    With the TensorFlow backend the forward pass is a `tf.function` with a fixed input signature whose batch
    dimension is None, so frames with 1, 2 or 7 faces reuse one traced graph; TensorFlow places it on the GPU
    when one is visible. A traced function may be called from several threads at once (the live page's stream
    workers and the photo sidebar share one engine).
    """

    def __init__(self, loaded: LoadedModel):
        import keras

        self.loaded = loaded
        self.metadata = loaded.metadata
        self._model = loaded.model
        self.backend = keras.backend.backend()
        height, width = self.metadata.input_size
        if self.backend == "tensorflow":
            import tensorflow as tf

            spec = tf.TensorSpec([None, height, width, self.metadata.channels], tf.float32)
            self._forward = tf.function(lambda x: self._model(x, training=False), input_signature=[spec])
            self.device = _tensorflow_device()
        else:
            self._forward = lambda x: self._model(x, training=False)
            self.device = keras.backend.backend() + " backend"
        self.traces = 0

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) for a float32 batch (N, H, W, C); N may be 0."""
        if batch.shape[0] == 0:
            return np.zeros((0, len(self.metadata.classes)), dtype=np.float32)
        out = self._forward(batch)
        return np.asarray(out, dtype=np.float32)

    def warm_up(self) -> None:
        height, width = self.metadata.input_size
        self.predict(np.zeros((1, height, width, self.metadata.channels), dtype=np.float32))
