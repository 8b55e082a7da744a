"""Loading face datasets into arrays: a folder of class folders (FER2013's image release, CK+-style)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import DatasetError
from .labels import EMOTIONS, canonical_emotion

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm"}


@dataclass
class FaceArrays:
    """Grayscale faces (N, H, W) uint8 and labels (N,) int indices into `classes`."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...] = EMOTIONS
    skipped_folders: list[str] = field(default_factory=list)
    unreadable_files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(c) for name, c in zip(self.classes, counts)}


def class_folders(root: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Map each emotion to its folders below `root` (case-insensitive names, aliases); also list skipped folders."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"Dataset folder {root} does not exist.")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a folder of class folders.")
    found: dict[str, list[Path]] = {}
    skipped: list[str] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        emotion = canonical_emotion(child.name)
        if emotion is None:
            skipped.append(child.name)
        else:
            found.setdefault(emotion, []).append(child)
    return found, skipped


def load_class_folders(
    root: str | os.PathLike,
    size: tuple[int, int] = (48, 48),
    classes: tuple[str, ...] = EMOTIONS,
    require_all: bool = False,
) -> FaceArrays:
    """Read every image in `root/<class>/` as grayscale, resized to `size` (width, height) if needed."""
    root = Path(root)
    folders, skipped = class_folders(root)
    if not folders:
        raise DatasetError(
            f"No class folders found in {root}: expected sub-folders named after emotions "
            f"({', '.join(classes)})."
        )
    missing = [c for c in classes if c not in folders]
    if require_all and missing:
        raise DatasetError(f"Dataset {root} has no folder for: {', '.join(missing)}.")
    images: list[np.ndarray] = []
    labels: list[int] = []
    unreadable: list[str] = []
    for index, name in enumerate(classes):
        for folder in folders.get(name, []):
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                    continue
                image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                if image is None:
                    unreadable.append(str(path))
                    continue
                if image.shape[::-1] != size:
                    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                images.append(image)
                labels.append(index)
    if not images:
        raise DatasetError(f"The class folders in {root} contain no readable images.")
    return FaceArrays(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        classes=classes,
        skipped_folders=skipped,
        unreadable_files=unreadable,
    )


def load_class_folders_cached(root: str | os.PathLike, cache_dir: str | os.PathLike, size=(48, 48)) -> FaceArrays:
    """load_class_folders, memoised in an .npz keyed by the folder's file listing (decoding 30k JPEGs takes a while)."""
    root = Path(root).resolve()
    listing = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            listing.update(f"{path.relative_to(root)}:{path.stat().st_size}\n".encode())
    listing.update(repr(size).encode())
    cache = Path(cache_dir) / f"faces-{listing.hexdigest()[:16]}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            return FaceArrays(images=data["images"], labels=data["labels"], classes=tuple(str(c) for c in data["classes"]))
    arrays = load_class_folders(root, size=size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".npz")
    os.close(fd)
    np.savez(tmp, images=arrays.images, labels=arrays.labels, classes=np.asarray(arrays.classes))
    os.replace(tmp, cache)
    return arrays


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out): `fraction` of each class held out, chosen with a fixed seed."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_held = int(round(len(idx) * fraction))
        if len(idx) > 1:
            n_held = min(max(n_held, 1), len(idx) - 1)
        else:
            n_held = 0
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))
