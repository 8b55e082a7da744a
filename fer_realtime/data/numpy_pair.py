"""An X/Y pair of .npy arrays: images (N, H, W), (N, H, W, 1) or flattened, labels as indices, names or one-hot
rows. Never unpickled."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..core.errors import DatasetError
from ..core.labels import EMOTIONS, canonical_emotion
from .dataset import Dataset, FaceArrays, finish_dataset, resize_all

_NPY_MAGIC = b"\x93NUMPY"


def is_npy(path: Path) -> bool:
    return path.suffix.lower() == ".npy"


def find_npy_pair(folder: Path) -> tuple[Path, Path] | None:
    """(X, Y) in `folder`: X.npy/Y.npy or X.txt.npy/Y.txt.npy, else the one X*.npy with a matching Y*.npy."""
    pairs = []
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file() and is_npy(p) and p.name[:1] in "xX"):
        partner = _npy_partner(path)
        if partner is not None:
            pairs.append((path, partner))
    if len(pairs) <= 1:
        return pairs[0] if pairs else None
    exact = [pair for pair in pairs if pair[0].name.lower() in ("x.npy", "x.txt.npy")]
    if exact:
        return exact[0]
    names = ", ".join(f"{x.name}/{y.name}" for x, y in pairs)
    raise DatasetError(f"{folder} holds several X/Y .npy pairs ({names}); pass the X file to use.")


def _npy_partner(path: Path) -> Path | None:
    """The Y file for an X file (X_train.npy -> Y_train.npy) or the X file for a Y file."""
    other = {"x": "Yy", "y": "Xx"}.get(path.name[:1].lower(), "")
    for letter in other:
        candidate = path.with_name(letter + path.name[1:])
        if candidate.is_file():
            return candidate
    return None


def load_npy_dataset(
    source: str | os.PathLike, size: tuple[int, int] = (48, 48), require_all_classes: bool = False
) -> Dataset:
    """Images X (N, H, W), (N, H, W, 1) or (N, H·W) and labels Y (N,), (N, 1) or one-hot (N, 7)."""
    x_path, y_path = _npy_paths(Path(source))
    x = _load_npy(x_path)
    y = _load_npy(y_path)
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        n_x = x.shape[0] if x.ndim else "no"
        n_y = y.shape[0] if y.ndim else "no"
        raise DatasetError(f"{x_path.name} has {n_x} images but {y_path.name} has {n_y} labels (in {x_path.parent}).")
    if x.shape[0] == 0:
        raise DatasetError(f"{x_path} holds no images.")
    labels = _labels_from_array(y, y_path)
    images, resized = resize_all(_images_from_array(x, x_path), size)
    arrays = FaceArrays(images, labels, EMOTIONS, resized_from=resized)
    dataset = Dataset(splits={"train": arrays}, classes=EMOTIONS, source=str(x_path), format="npy",
                      image_size=tuple(size))
    return finish_dataset(dataset, require_all_classes)


def _npy_paths(source: Path) -> tuple[Path, Path]:
    if source.is_dir():
        pair = find_npy_pair(source)
        if pair is None:
            raise DatasetError(f"No X.npy + Y.npy pair found in {source}.")
        return pair
    if not source.is_file():
        raise DatasetError(f"{source} does not exist.")
    partner = _npy_partner(source)
    if source.name[:1].lower() not in "xy" or partner is None:
        raise DatasetError(
            f"No matching labels file next to {source}: expected an X…npy / Y…npy pair such as X.npy and Y.npy."
        )
    return (source, partner) if source.name[:1] in "xX" else (partner, source)


def _load_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
    if head[:2] == b"PK":
        raise DatasetError(f"{path} is an .npz archive; expected a plain .npy array.")
    if head[:1] == b"\x80":
        raise DatasetError(f"{path} holds pickled Python data; pickled arrays are refused (they can run code).")
    if head != _NPY_MAGIC:
        raise DatasetError(f"{path} is not a .npy file (corrupt or another format).")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise DatasetError(
                f"{path} holds pickled Python objects; pickled arrays are refused (they can run code); "
                "save plain numeric arrays with np.save."
            ) from None
        raise DatasetError(f"{path} is a corrupt .npy file ({error}).") from None
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path} is a corrupt .npy file ({error}).") from None


def _images_from_array(x: np.ndarray, path: Path) -> np.ndarray:
    """(N, H, W), (N, H, W, 1) or (N, H·W) of uint8, ints 0..255 or floats in [0, 1] or [0, 255] -> (N, H, W) uint8."""
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    elif x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1] or side == 0:
            raise DatasetError(
                f"{path}: each row has {x.shape[1]} values, which is not a square image (48×48 is 2304)."
            )
        x = x.reshape(-1, side, side)
    elif x.ndim != 3:
        raise DatasetError(
            f"{path} has shape {x.shape}; expected grayscale images (N, H, W), (N, H, W, 1) or flattened (N, H·W)."
        )
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind not in "iuf":
        raise DatasetError(f"{path} holds {x.dtype} values; expected numbers 0..255 (or floats 0..1).")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DatasetError(f"{path} contains NaN or infinite pixel values.")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 255:
        raise DatasetError(f"{path} has pixel values from {low:g} to {high:g}; expected 0..255 or 0..1.")
    scale = 255.0 if x.dtype.kind == "f" and high <= 1.0 else 1.0
    return np.rint(x * scale).astype(np.uint8)


def _labels_from_array(y: np.ndarray, path: Path) -> np.ndarray:
    """(N,) or (N, 1) class indices or names, or (N, 7) one-hot/probability rows -> (N,) int64 indices."""
    n_classes = len(EMOTIONS)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2 and y.shape[1] == n_classes and y.dtype.kind in "iuf":
        empty = ~(y > 0).any(axis=1)
        if empty.any():
            raise DatasetError(f"{path} row {int(np.argmax(empty))}: one-hot label row has no class set.")
        return y.argmax(axis=1).astype(np.int64)
    if y.ndim != 1:
        raise DatasetError(
            f"{path} has shape {y.shape}; expected labels (N,) as class indices 0..6 or one-hot rows (N, 7)."
        )
    if y.dtype.kind in "US":
        return _labels_from_names(y, path)
    if y.dtype.kind not in "iuf":
        raise DatasetError(f"{path} holds {y.dtype} values; expected class indices 0..6.")
    bad = ~np.isin(y, np.arange(n_classes))
    if bad.any():
        row = int(np.argmax(bad))
        raise DatasetError(f"{path} row {row}: label {y[row]} is outside 0..{n_classes - 1}.")
    return y.astype(np.int64)


def _labels_from_names(y: np.ndarray, path: Path) -> np.ndarray:
    indices = np.empty(len(y), dtype=np.int64)
    for row, name in enumerate(y):
        text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        emotion = canonical_emotion(text)
        if emotion is None:
            raise DatasetError(f"{path} row {row}: label {text!r} is not an emotion ({', '.join(EMOTIONS)}).")
        indices[row] = EMOTIONS.index(emotion)
    return indices
