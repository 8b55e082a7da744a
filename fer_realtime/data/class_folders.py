"""Class folders: `root/<emotion>/` image files (FER2013's image release, CK+-style), with or without
train/ val/ test/ folders around them; decoded folders can be memoised in an .npz."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from ..core.errors import DatasetError, ImageReadError
from ..core.images import MAX_FILE_BYTES, image_size
from ..core.labels import EMOTIONS, canonical_emotion
from .dataset import SPLIT_ORDER, Dataset, FaceArrays, finish_dataset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm"}


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
    files: list[str] = []
    unreadable: list[str] = []
    resized_from: Counter = Counter()
    for index, name in enumerate(classes):
        for folder in folders.get(name, []):
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                    continue
                image = _read_gray(path)
                if image is None:
                    unreadable.append(str(path))
                    continue
                if image.shape[::-1] != tuple(size):
                    resized_from[image.shape[:2]] += 1
                    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                images.append(image)
                labels.append(index)
                files.append(path.relative_to(root).as_posix())
    if not images:
        raise DatasetError(f"The class folders in {root} contain no readable images.")
    return FaceArrays(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        classes=classes,
        skipped_folders=skipped,
        unreadable_files=unreadable,
        resized_from=dict(resized_from),
        files=tuple(files),
    )


def _read_gray(path: Path) -> np.ndarray | None:
    """One image as grayscale, or None if unreadable, too large, or its header declares a bomb-sized image
    (checked before decoding)."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        data = path.read_bytes()
        image_size(data, path.name)
        return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    except (OSError, ImageReadError, cv2.error):
        return None


def load_class_folders_cached(root: str | os.PathLike, cache_dir: str | os.PathLike, size=(48, 48)) -> FaceArrays:
    """load_class_folders, memoised in an .npz keyed by the folder's file listing (decoding 30k JPEGs takes a while)."""
    root = Path(root).resolve()
    listing = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            listing.update(f"{path.relative_to(root)}:{path.stat().st_size}\n".encode())
    listing.update(repr(size).encode())
    listing.update(b"with file names")  # caches from before FaceArrays.files are not reused
    cache = Path(cache_dir) / f"faces-{listing.hexdigest()[:16]}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            return _arrays_from_cache(data)
    arrays = load_class_folders(root, size=size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".npz")
    os.close(fd)
    resized = np.asarray([(h, w, n) for (h, w), n in arrays.resized_from.items()], dtype=np.int64).reshape(-1, 3)
    try:
        np.savez(tmp, images=arrays.images, labels=arrays.labels, classes=np.asarray(arrays.classes),
                 skipped=np.asarray(arrays.skipped_folders, dtype=str),
                 unreadable=np.asarray(arrays.unreadable_files, dtype=str), resized=resized,
                 files=np.asarray(arrays.files, dtype=str))
        os.replace(tmp, cache)
    except BaseException:  # no half-written cache file is left behind
        Path(tmp).unlink(missing_ok=True)
        raise
    return arrays


def _arrays_from_cache(data) -> FaceArrays:
    # Caches written before skipped/unreadable/resized were stored lack those keys.
    def strings(key):
        return [str(s) for s in data[key]] if key in data.files else []

    resized = data["resized"] if "resized" in data.files else np.zeros((0, 3), dtype=np.int64)
    return FaceArrays(images=data["images"], labels=data["labels"], classes=tuple(str(c) for c in data["classes"]),
                      skipped_folders=strings("skipped"), unreadable_files=strings("unreadable"),
                      resized_from={(int(h), int(w)): int(n) for h, w, n in resized},
                      files=tuple(strings("files")))

# ----------------------------------------------------------------------------------------------- folder datasets


SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test", "testing": "test"}


def split_folders(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Split name -> folder for root/train|val|validation|test (case-insensitive); also the other folders there."""
    splits: dict[str, Path] = {}
    others: list[str] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        split = SPLIT_NAMES.get(child.name.lower())
        if split and split not in splits:
            splits[split] = child
        else:
            others.append(child.name)
    return splits, others


def load_folder_dataset(
    root: str | os.PathLike,
    size: tuple[int, int] = (48, 48),
    require_all_classes: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """`root/<class>/` or `root/train/<class>/` plus `root/val|validation|test/<class>/`; `size` is (height, width)."""
    root = Path(root)
    splits_found, others = split_folders(root) if root.is_dir() else ({}, [])
    if not splits_found:
        splits = {"train": _read_class_folders(root, size, cache_dir)}
    elif "train" not in splits_found:
        names = ", ".join(f"{p.name}/" for p in splits_found.values())
        raise DatasetError(f"{root} has {names} but no train/ folder.")
    else:
        splits = {}
        for name in SPLIT_ORDER:
            if name in splits_found:
                arrays = _read_class_folders(splits_found[name], size, cache_dir)
                arrays.skipped_folders = [f"{splits_found[name].name}/{f}" for f in arrays.skipped_folders]
                splits[name] = arrays
        splits["train"].skipped_folders = others + splits["train"].skipped_folders
    dataset = Dataset(splits=splits, classes=EMOTIONS, source=str(root), format="class-folders",
                      image_size=tuple(size))
    return finish_dataset(dataset, require_all_classes)


def _read_class_folders(folder: Path, size, cache_dir) -> FaceArrays:
    height, width = size
    if cache_dir is None:
        return load_class_folders(folder, size=(width, height))
    return load_class_folders_cached(folder, cache_dir, size=(width, height))
