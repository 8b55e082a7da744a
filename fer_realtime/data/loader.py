"""One entry point for every dataset format, told apart by what `source` is; and a cheap fingerprint of a
dataset on disk."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import DatasetError
from ..core.labels import EMOTIONS
from .class_folders import IMAGE_SUFFIXES, class_folders, load_folder_dataset, split_folders
from .dataset import Dataset
from .fer2013_csv import load_fer2013_csv, looks_like_fer_csv
from .numpy_pair import find_npy_pair, is_npy, load_npy_dataset


def load_dataset(
    source: str | os.PathLike,
    size: tuple[int, int] = (48, 48),
    require_all_classes: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Load a dataset of any supported format, detected from `source`; faces come out as `size` (height, width).

    `source`: a FER2013 .csv, an X .npy file (its Y partner beside it), or a folder holding class folders
    (optionally under train/ val/ test/), an X/Y .npy pair or one .csv. `cache_dir` memoises decoded image folders.
    """
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"Dataset {path} does not exist.")
    if path.is_dir():
        return _load_from_folder(path, size, require_all_classes, cache_dir)
    if is_npy(path):
        return load_npy_dataset(path, size, require_all_classes)
    if path.suffix.lower() == ".zip":
        raise DatasetError(f"{path} is a zip archive: extract it first, or upload it on the Training page.")
    if path.suffix.lower() in (".csv", ".txt") or looks_like_fer_csv(path):
        return load_fer2013_csv(path, size, require_all_classes)
    raise DatasetError(
        f"{path} is not a dataset: expected a FER2013 .csv, an X/Y .npy pair or a folder of class folders."
    )


def dataset_signature(path: Path) -> tuple:
    """A cheap fingerprint of a dataset on disk, for a cache key: the mtimes of the file, or of the folder and its
    sub-folders two levels down (adding or removing an image changes its class folder's mtime) and of the files
    near the top that are not images (a CSV or an X/Y pair)."""
    try:
        top = path.stat()
    except OSError:
        return ("missing", str(path))
    if not path.is_dir():
        return ("file", top.st_mtime_ns, top.st_size)
    signature = [(".", top.st_mtime_ns)]
    pending = [(path, 0)]
    while pending:
        folder, depth = pending.pop()
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for child in children:
            try:
                if child.is_dir():
                    if depth < 2:
                        signature.append((os.path.relpath(child.path, path), child.stat().st_mtime_ns))
                        pending.append((Path(child.path), depth + 1))
                elif depth < 2 and Path(child.name).suffix.lower() not in IMAGE_SUFFIXES:
                    stat = child.stat()
                    signature.append((os.path.relpath(child.path, path), stat.st_mtime_ns, stat.st_size))
            except OSError:
                continue
    return tuple(signature)


def _load_from_folder(path: Path, size, require_all_classes: bool, cache_dir) -> Dataset:
    pair = find_npy_pair(path)
    if pair is not None:
        return load_npy_dataset(pair[0], size, require_all_classes)
    if split_folders(path)[0] or class_folders(path)[0]:
        return load_folder_dataset(path, size, require_all_classes, cache_dir)
    csvs = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".csv"]
    if len(csvs) == 1:
        return load_fer2013_csv(csvs[0], size, require_all_classes)
    raise DatasetError(
        f"No dataset found in {path}: expected class folders named after emotions ({', '.join(EMOTIONS)}), "
        "optionally inside train/ and val/ or test/ folders, an X.npy + Y.npy pair, or one FER2013 .csv."
    )
