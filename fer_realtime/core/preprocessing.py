"""Dataset faces as model input: scaled and offset exactly as a model's metadata says."""

from __future__ import annotations

import numpy as np

from .model_file import ModelMetadata, Preprocessing


def normalize(faces_uint8: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """uint8 faces (N, H, W) or (N, H, W, C) -> float32 model input (N, H, W, C) scaled as the metadata says."""
    x = faces_uint8.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if prep.scale != 1.0:
        x *= np.float32(prep.scale)
    if prep.offset:
        x += np.float32(prep.offset)
    return x


def model_input(faces_gray: np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """Grayscale dataset faces (N, H, W) uint8 -> the model's input: normalised, and in 3 channels for RGB models."""
    x = normalize(faces_gray, metadata.preprocessing)
    return x.repeat(3, axis=-1) if metadata.channels == 3 else x
