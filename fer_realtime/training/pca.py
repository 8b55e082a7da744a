"""Optional PCA feature reduction: faces are rebuilt from their top principal components before a model sees them.

`PCAReducer.fit` is fitted on training images only; the fitted reducer is immutable, so transforming held-out or
live faces never refits it. `to_dict` / `from_dict` (JSON-friendly) and `save` / `load` (npz) let a trained model
record exactly the PCA it was trained with; `with_pca_front` puts the reconstruction in front of a Keras model
as ordinary fixed layers, so the model file applies it by itself (and still loads in safe mode).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FerError
from ..core.model_file import Preprocessing

FORMAT = "fer-realtime-pca/1"
_CHUNK_ROWS = 4096  # rows centred at a time while accumulating the covariance (bounded extra memory)


class PCAError(FerError, ValueError):
    """Invalid PCA parameters, images that do not fit a reducer, or a malformed saved reducer."""


class PCAReducer:
    """Principal components of flattened grayscale faces (pixel units, 0..255).

    Attributes: n_components, mean_ (D,), components_ (n_components, D) orthonormal rows, explained_variance_ratio_
    (n_components,) of the kept components, variance_retained (their sum), image_shape (H, W), n_samples,
    variance_requested (None when a component count was asked for).
    """

    def __init__(self, mean: np.ndarray, components: np.ndarray, explained_variance_ratio: np.ndarray,
                 image_shape: tuple[int, int], n_samples: int, variance_requested: float | None = None):
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        size = self.image_shape[0] * self.image_shape[1]
        self.mean_ = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.components_ = np.asarray(components, dtype=np.float32)
        self.explained_variance_ratio_ = np.asarray(explained_variance_ratio, dtype=np.float64).reshape(-1)
        k = self.components_.shape[0] if self.components_.ndim == 2 else -1
        if (self.mean_.shape != (size,) or self.components_.shape != (k, size) or k < 1
                or self.explained_variance_ratio_.shape != (k,)):
            raise PCAError(
                f"PCA arrays do not fit {self.image_shape[0]}x{self.image_shape[1]} images: mean {self.mean_.shape}, "
                f"components {self.components_.shape}, variance ratios {self.explained_variance_ratio_.shape}."
            )
        self.n_samples = int(n_samples)
        self.variance_requested = None if variance_requested is None else float(variance_requested)
        for array in (self.mean_, self.components_, self.explained_variance_ratio_):
            array.setflags(write=False)

    @property
    def n_components(self) -> int:
        return int(self.components_.shape[0])

    @property
    def variance_retained(self) -> float:
        return float(self.explained_variance_ratio_.sum())

    def __repr__(self) -> str:
        return (f"PCAReducer(n_components={self.n_components}, variance_retained={self.variance_retained:.4f}, "
                f"image_shape={self.image_shape}, n_samples={self.n_samples})")

    # ----------------------------------------------------------------------------------------------- fitting

    @classmethod
    def fit(cls, train_images: np.ndarray, variance: float | None = None,
            n_components: int | None = None) -> PCAReducer:
        """Fit on training faces (N, H, W) or (N, H, W, 1), uint8 (or any real dtype in pixel units).

        Keep the fewest components whose explained variance reaches `variance` (default 0.95), or exactly
        `n_components`; not both. N > D (25,000 48x48 faces): the D x D covariance, accumulated in chunks, and its
        leading eigenpairs by randomized subspace iteration (the full eigen-solver for many components); N <= D:
        thin SVD of the centred data. explained_variance_ratio_ is relative to the total variance (the trace).
        """
        if variance is not None and n_components is not None:
            raise PCAError("Give either variance or n_components for PCA, not both.")
        images = np.asarray(train_images)
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim != 3 or images.shape[1] < 1 or images.shape[2] < 1:
            raise PCAError(f"PCA is fitted on grayscale images shaped (N, H, W), got an array shaped {images.shape}.")
        if not (np.issubdtype(images.dtype, np.number) and not np.issubdtype(images.dtype, np.complexfloating)):
            raise PCAError(f"PCA needs numeric pixel values, got dtype {images.dtype}.")
        n, height, width = images.shape
        size = height * width
        if n_components is None:
            variance = 0.95 if variance is None else variance
            if isinstance(variance, bool) or not isinstance(variance, (int, float, np.floating, np.integer)) \
                    or not 0.0 < float(variance) <= 1.0:
                raise PCAError(f"PCA variance must be a fraction in (0, 1], e.g. 0.95, got {variance!r}.")
            variance = float(variance)
        elif isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) \
                or not 1 <= n_components <= min(n, size):
            raise PCAError(
                f"PCA n_components must be an integer from 1 to {min(n, size)} (the smaller of the {n} training "
                f"images and their {size} pixels), got {n_components!r}."
            )
        if n < 2:
            raise PCAError(f"PCA needs at least 2 training images, got {n}.")

        flat = images.reshape(n, size)
        mean = flat.mean(axis=0, dtype=np.float64)
        if n <= size:
            centred = flat.astype(np.float64) - mean
            _, singular, vectors = np.linalg.svd(centred, full_matrices=False)
            eigenvalues = singular**2 / (n - 1)
            total = float(eigenvalues.sum())
        else:
            mean32 = mean.astype(np.float32)
            cov = np.zeros((size, size), dtype=np.float64)
            for start in range(0, n, _CHUNK_ROWS):
                chunk = flat[start:start + _CHUNK_ROWS].astype(np.float32) - mean32
                cov += chunk.T @ chunk
            cov /= n - 1
            total = float(np.trace(cov))
        if not total > 0:
            raise PCAError("The PCA training images are all identical, so there is no variance to keep.")
        if n > size:
            # Only the leading eigenpairs are needed (the total variance is the trace): try the top 128 and
            # widen until they reach the requested variance, which real faces do long before all D.
            k = int(n_components) if n_components is not None else min(128, size)
            while True:
                found = _leading_eigenpairs(cov, k) if k < size // 6 else None  # beyond: full solver as fast
                if found is None:
                    values, eigenvectors = np.linalg.eigh(cov)
                    eigenvalues, vectors = values[::-1], eigenvectors[:, ::-1].T
                    break
                eigenvalues, vectors = found
                if n_components is not None or eigenvalues.sum() >= variance * total:
                    break
                k *= 2
        eigenvalues = np.clip(eigenvalues, 0.0, None)
        ratio = eigenvalues / total
        if n_components is None:
            k = int(np.searchsorted(np.cumsum(ratio), variance, side="left")) + 1
            k = min(k, len(ratio))
        else:
            k = int(n_components)
        components = vectors[:k]
        # Deterministic signs: the largest-magnitude entry of each component is positive.
        signs = np.sign(components[np.arange(k), np.argmax(np.abs(components), axis=1)])
        components = components * np.where(signs == 0, 1.0, signs)[:, None]
        return cls(mean, components, ratio[:k], (height, width), n, variance if n_components is None else None)

    # ------------------------------------------------------------------------------------------- transforming

    def _flatten(self, images: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        images = np.asarray(images)
        shape = images.shape
        squeezed = images[..., 0] if images.ndim in (3, 4) and shape[-1] == 1 and shape[-3:-1] == self.image_shape \
            else images
        if squeezed.ndim not in (2, 3) or squeezed.shape[-2:] != self.image_shape:
            raise PCAError(
                f"This PCA was fitted on {self.image_shape[0]}x{self.image_shape[1]} images; got an array shaped "
                f"{shape} (expected (N, H, W), (N, H, W, 1) or one (H, W) image)."
            )
        return squeezed.reshape(-1, self.mean_.size).astype(np.float32), shape

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Faces -> their coordinates on the kept components, float32 (N, n_components)."""
        flat, _ = self._flatten(images)
        return (flat - self.mean_) @ self.components_.T

    def inverse_transform(self, coordinates: np.ndarray) -> np.ndarray:
        """Coordinates (N, n_components) -> float32 faces (N, H, W) in pixel units (not clipped)."""
        z = np.asarray(coordinates, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.n_components:
            raise PCAError(f"Expected PCA coordinates shaped (N, {self.n_components}), got {z.shape}.")
        return (z @ self.components_ + self.mean_).reshape(-1, *self.image_shape)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """Faces rebuilt from the kept components: uint8, the same shape as `images`, clipped to 0..255."""
        _, shape = self._flatten(images)
        rebuilt = self.inverse_transform(self.transform(images))
        return np.clip(np.rint(rebuilt), 0, 255).astype(np.uint8).reshape(shape)

    # ---------------------------------------------------------------------------------------------- recording

    def to_dict(self, include_arrays: bool = True) -> dict[str, Any]:
        """JSON-friendly record (arrays as base64 little-endian float32); include_arrays=False: a summary only."""
        data: dict[str, Any] = {
            "format": FORMAT,
            "image_shape": list(self.image_shape),
            "n_samples": self.n_samples,
            "variance_requested": self.variance_requested,
            "n_components": self.n_components,
            "variance_retained": self.variance_retained,
            "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio_],
        }
        if include_arrays:
            data["mean"] = _encode(self.mean_)
            data["components"] = _encode(self.components_)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PCAReducer:
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
            height, width = (int(v) for v in data["image_shape"])
            k = int(data["n_components"])
            mean = _decode(data["mean"], (height * width,))
            components = _decode(data["components"], (k, height * width))
            ratio = np.asarray(data["explained_variance_ratio"], dtype=np.float64)
            return cls(mean, components, ratio, (height, width), int(data.get("n_samples", 0)),
                       data.get("variance_requested"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, PCAError):
                raise
            raise PCAError(f"The saved PCA record is invalid ({exc}).") from exc

    def save(self, path: str | os.PathLike) -> Path:
        """Write an .npz file (plain arrays, loadable with allow_pickle=False)."""
        path = Path(path)
        np.savez(path, format=np.array(FORMAT), mean=self.mean_, components=self.components_,
                 explained_variance_ratio=self.explained_variance_ratio_, image_shape=np.array(self.image_shape),
                 n_samples=np.array(self.n_samples),
                 variance_requested=np.array(np.nan if self.variance_requested is None else self.variance_requested))
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | os.PathLike) -> PCAReducer:
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["format"]) != FORMAT:
                    raise ValueError(f"format is {str(data['format'])!r}, expected {FORMAT!r}")
                requested = float(data["variance_requested"])
                return cls(data["mean"], data["components"], data["explained_variance_ratio"],
                           tuple(int(v) for v in data["image_shape"]), int(data["n_samples"]),
                           None if np.isnan(requested) else requested)
        except PCAError:
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise PCAError(f"{Path(path).name} is not a saved fer-realtime PCA ({exc}).") from exc


def _leading_eigenpairs(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The k leading eigenpairs of a symmetric positive semi-definite matrix (eigenvalues descending,
    eigenvectors as rows (k, D)) by randomized subspace iteration (Halko, Martinsson & Tropp 2011, fixed seed):
    a few D x D by D x (k + p) products instead of a full tridiagonal reduction. The values are Rayleigh
    quotients, so their sum is exactly the variance the returned directions capture, never more.
    None when the matrix has rank below k (the caller then uses the full solver).
    """
    size = matrix.shape[0]
    basis = np.random.default_rng(0).standard_normal((size, min(size, k + max(10, k // 10))))
    for _ in range(6):
        basis = _orthonormalize(matrix @ basis)
    if basis.shape[1] < k:
        return None
    values, small = np.linalg.eigh(basis.T @ matrix @ basis)
    order = np.argsort(values)[::-1][:k]
    return values[order], (basis @ small[:, order]).T


def _orthonormalize(columns: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the span of `columns` via the eigen-decomposition of their Gram matrix, twice
    (LAPACK's QR is slow here for tall matrices); directions with negligible weight are dropped."""
    for _ in range(2):
        values, vectors = np.linalg.eigh(columns.T @ columns)
        keep = values > values.max() * 1e-12
        columns = columns @ (vectors[:, keep] / np.sqrt(values[keep]))
    return columns


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: str, shape: tuple[int, ...]) -> np.ndarray:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != 4 * int(np.prod(shape)):
        raise ValueError(f"array of {len(raw)} bytes does not hold shape {shape}")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def with_pca_front(model, pca: PCAReducer, preprocessing: Preprocessing = Preprocessing()):
    """`model` behind fixed layers that rebuild its (normalised) input from the PCA's kept components.

    face (x = pixel * scale + offset) -> pca_flatten -> pca_project (Dense, the components) -> pca_reconstruct
    (Dense, back to pixels) -> pca_clip (0..255) -> pca_normalize -> pca_unflatten -> model. The same as
    `normalize(pca.reconstruct(faces))` up to rounding to whole grey levels. The PCA layers never train.
    """
    import keras
    from keras import layers

    shape = tuple(model.input_shape[1:])
    if shape != (*pca.image_shape, 1):
        raise PCAError(f"The PCA was fitted on {pca.image_shape} images but the model takes input {shape}.")
    if not preprocessing.scale:
        raise PCAError("Preprocessing.scale must be non-zero to undo it before the PCA.")
    scale, offset = float(preprocessing.scale), float(preprocessing.offset)
    size, k = pca.mean_.size, pca.n_components
    components = pca.components_.astype(np.float64)
    inputs = keras.Input(shape=shape, name="face")
    x = layers.Reshape((size,), name="pca_flatten")(inputs)
    project = layers.Dense(k, name="pca_project", trainable=False)
    rebuild = layers.Dense(size, name="pca_reconstruct", trainable=False)
    x = rebuild(project(x))
    x = layers.ReLU(max_value=255.0, name="pca_clip")(x)
    x = layers.Rescaling(scale, offset, name="pca_normalize")(x)
    x = layers.Reshape(shape, name="pca_unflatten")(x)
    outputs = model(x)
    # pixel = (x - offset) / scale; coordinates = (pixel - mean) @ C.T; rebuilt pixel = coordinates @ C + mean
    project.set_weights([(components.T / scale).astype(np.float32),
                         (-(offset / scale + pca.mean_.astype(np.float64)) @ components.T).astype(np.float32)])
    rebuild.set_weights([pca.components_, pca.mean_])
    return keras.Model(inputs, outputs, name=f"{model.name}_pca")
