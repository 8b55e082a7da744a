"""Loading face datasets into arrays: the FER2013 Kaggle CSV, a folder of class folders (FER2013's image release,
CK+-style, with or without train/val/test folders) or an X/Y pair of .npy arrays; also from uploaded files."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import shutil
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import DatasetError, ImageReadError
from .images import MAX_FILE_BYTES, image_size
from .labels import EMOTIONS, canonical_emotion

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm"}
SPLIT_ORDER = ("train", "val", "test")
MAX_UNZIPPED_BYTES = 2 * 1024**3
MAX_ZIP_MEMBERS = 200_000
MAX_UPLOAD_BYTES = 1024**3  # all files of one dataset upload together


@dataclass
class FaceArrays:
    """Grayscale faces (N, H, W) uint8 and labels (N,) int indices into `classes`."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...] = EMOTIONS
    skipped_folders: list[str] = field(default_factory=list)
    unreadable_files: list[str] = field(default_factory=list)
    resized_from: dict[tuple[int, int], int] = field(default_factory=dict)  # original (height, width) -> count

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(c) for name, c in zip(self.classes, counts)}


# ----------------------------------------------------------------------------------------------- class folders


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
    if not images:
        raise DatasetError(f"The class folders in {root} contain no readable images.")
    return FaceArrays(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        classes=classes,
        skipped_folders=skipped,
        unreadable_files=unreadable,
        resized_from=dict(resized_from),
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
                 unreadable=np.asarray(arrays.unreadable_files, dtype=str), resized=resized)
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
                      resized_from={(int(h), int(w)): int(n) for h, w, n in resized})


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


# ----------------------------------------------------------------------------------------------- Dataset


@dataclass
class DatasetSummary:
    source: str
    format: str
    image_size: tuple[int, int]  # (height, width)
    counts: dict[str, dict[str, int]]  # split -> class -> images
    total: int
    missing_classes: list[str]  # classes with no training images
    skipped_folders: list[str]
    unreadable_files: list[str]
    resized_count: int  # images resized to image_size
    resized_from: dict[tuple[int, int], int]  # a few of the original (height, width) sizes -> images of that size

    def warnings(self) -> list[str]:
        """One sentence per thing a user should know before training on this dataset."""
        notes = []
        if self.missing_classes:
            notes.append(f"No training images for: {', '.join(self.missing_classes)}.")
        if self.skipped_folders:
            notes.append(f"Skipped folders that are not emotions: {', '.join(self.skipped_folders)}.")
        if self.unreadable_files:
            notes.append(f"{len(self.unreadable_files)} unreadable image(s) ignored, e.g. {self.unreadable_files[0]}.")
        if self.resized_count:
            sizes = ", ".join(f"{h}×{w}" for h, w in self.resized_from)
            height, width = self.image_size
            notes.append(f"{self.resized_count} image(s) resized to {height}×{width} (from e.g. {sizes}).")
        return notes


@dataclass
class Dataset:
    splits: dict[str, FaceArrays]  # "train" always; "val" and/or "test" when the dataset has its own split
    classes: tuple[str, ...]
    source: str
    format: str  # "fer2013-csv" | "class-folders" | "npy"
    image_size: tuple[int, int]  # (height, width)

    @property
    def train(self) -> FaceArrays:
        return self.splits["train"]

    def missing_classes(self) -> list[str]:
        return [name for name, n in self.train.class_counts().items() if n == 0]

    def summary(self) -> DatasetSummary:
        parts = self.splits.values()
        resized: Counter = Counter()
        for arrays in parts:
            resized.update(arrays.resized_from)
        return DatasetSummary(
            source=self.source,
            format=self.format,
            image_size=self.image_size,
            counts={name: arrays.class_counts() for name, arrays in self.splits.items()},
            total=sum(len(arrays) for arrays in parts),
            missing_classes=self.missing_classes(),
            skipped_folders=[f for arrays in parts for f in arrays.skipped_folders],
            unreadable_files=[f for arrays in parts for f in arrays.unreadable_files],
            resized_count=sum(resized.values()),
            resized_from=dict(resized.most_common(5)),
        )

    def samples(self, per_class: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
        """Every class -> up to `per_class` training images (N, H, W), picked at random with a fixed seed."""
        rng = np.random.default_rng(seed)
        train = self.train
        picked = {}
        for index, name in enumerate(self.classes):
            idx = np.flatnonzero(train.labels == index)
            chosen = np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
            picked[name] = train.images[chosen]
        return picked


def train_heldout_split(
    dataset: Dataset, fraction: float = 0.15, seed: int = 1234
) -> tuple[FaceArrays, FaceArrays, str]:
    """(train, held-out, name of the held-out part): the dataset's own val (else test) split, else a stratified
    `fraction` of train chosen with `seed`."""
    for name in ("val", "test"):
        if name in dataset.splits:
            return dataset.train, dataset.splits[name], f"{dataset.source} ({name} split)"
    train = dataset.train
    kept, held = stratified_split(train.labels, fraction, seed)
    name = f"{dataset.source} (stratified {fraction:.0%} of train, seed {seed})"
    return _subset(train, kept, keep_notes=True), _subset(train, held, keep_notes=False), name


def _subset(arrays: FaceArrays, idx: np.ndarray, keep_notes: bool) -> FaceArrays:
    if not keep_notes:
        return FaceArrays(arrays.images[idx], arrays.labels[idx], arrays.classes)
    return FaceArrays(arrays.images[idx], arrays.labels[idx], arrays.classes, list(arrays.skipped_folders),
                      list(arrays.unreadable_files), dict(arrays.resized_from))


def _finish(dataset: Dataset, require_all_classes: bool) -> Dataset:
    """Checks common to every format: at least two classes to learn, and every class if the caller insists."""
    present = [name for name, n in dataset.train.class_counts().items() if n]
    if len(present) < 2:
        found = f"only {present[0]}" if present else "no class"
        raise DatasetError(f"{dataset.source}: the training images cover {found}; at least two classes are needed.")
    missing = dataset.missing_classes()
    if require_all_classes and missing:
        raise DatasetError(f"{dataset.source} has no training images for: {', '.join(missing)}.")
    return dataset


def _resize_all(images: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    """(N, H, W) -> (N, *size), with the resize recorded; `size` is (height, width)."""
    original = tuple(int(s) for s in images.shape[1:3])
    if original == tuple(size) or len(images) == 0:
        return images, {}
    height, width = size
    resized = np.stack([cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA) for img in images])
    return resized, {original: len(images)}


# ----------------------------------------------------------------------------------------------- entry point


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
    if _is_npy(path):
        return load_npy_dataset(path, size, require_all_classes)
    if path.suffix.lower() == ".zip":
        raise DatasetError(f"{path} is a zip archive: extract it first, or upload it on the Training page.")
    if path.suffix.lower() in (".csv", ".txt") or _looks_like_fer_csv(path):
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
    if _split_folders(path)[0] or class_folders(path)[0]:
        return load_folder_dataset(path, size, require_all_classes, cache_dir)
    csvs = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".csv"]
    if len(csvs) == 1:
        return load_fer2013_csv(csvs[0], size, require_all_classes)
    raise DatasetError(
        f"No dataset found in {path}: expected class folders named after emotions ({', '.join(EMOTIONS)}), "
        "optionally inside train/ and val/ or test/ folders, an X.npy + Y.npy pair, or one FER2013 .csv."
    )


# ----------------------------------------------------------------------------------------------- folder datasets

_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test", "testing": "test"}


def _split_folders(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Split name -> folder for root/train|val|validation|test (case-insensitive); also the other folders there."""
    splits: dict[str, Path] = {}
    others: list[str] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        split = _SPLIT_NAMES.get(child.name.lower())
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
    splits_found, others = _split_folders(root) if root.is_dir() else ({}, [])
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
    return _finish(dataset, require_all_classes)


def _read_class_folders(folder: Path, size, cache_dir) -> FaceArrays:
    height, width = size
    if cache_dir is None:
        return load_class_folders(folder, size=(width, height))
    return load_class_folders_cached(folder, cache_dir, size=(width, height))


# ----------------------------------------------------------------------------------------------- FER2013 CSV

_USAGE_SPLITS = {"training": "train", "train": "train", "publictest": "val", "val": "val", "validation": "val",
                 "privatetest": "test", "test": "test"}
_CSV_CHUNK_ROWS = 1024


def _looks_like_fer_csv(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(256)
    return b"\x00" not in head and b"emotion" in head.lower()


def load_fer2013_csv(
    path: str | os.PathLike, size: tuple[int, int] = (48, 48), require_all_classes: bool = False
) -> Dataset:
    """The Kaggle FER2013 CSV (emotion,pixels[,Usage]): Training -> train, PublicTest -> val, PrivateTest -> test."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"FER2013 CSV {path} does not exist.")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path} is empty.")
    with open(path, "rb") as f:
        if b"\x00" in f.read(4096):
            raise DatasetError(f"{path} is not a CSV file (it contains binary data).")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            images, labels, splits = _read_fer_rows(f, path)
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not a CSV file (it is not UTF-8 text).") from None
    images, resized = _resize_all(images, size)
    arrays = {}
    for name in SPLIT_ORDER:
        rows = splits == name
        if rows.any():
            arrays[name] = FaceArrays(images[rows], labels[rows], EMOTIONS,
                                      resized_from={k: int(rows.sum()) for k in resized})
    if "train" not in arrays:
        raise DatasetError(f"{path} has no Training rows (its Usage column names only {', '.join(arrays)} data).")
    dataset = Dataset(splits=arrays, classes=EMOTIONS, source=str(path), format="fer2013-csv",
                      image_size=tuple(size))
    return _finish(dataset, require_all_classes)


def _csv_columns(header: list[str], path: Path) -> tuple[int, int, int | None]:
    names = [h.strip().lower() for h in header]
    missing = [c for c in ("emotion", "pixels") if c not in names]
    if missing:
        found = ", ".join(repr(h.strip()[:30]) for h in header[:10]) or "none"
        raise DatasetError(
            f"{path} line 1: no {' or '.join(missing)} column (columns found: {found}); "
            "expected the FER2013 header emotion,pixels,Usage."
        )
    usage = names.index("usage") if "usage" in names else None
    return names.index("emotion"), names.index("pixels"), usage


def _read_fer_rows(lines, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (N, side, side) uint8, labels (N,), split names (N,)) from the CSV's lines."""
    numbered = ((number, _csv_fields(text, path, number)) for number, text in enumerate(lines, start=1))
    header = next(numbered, (1, None))[1]
    if header is None:
        raise DatasetError(f"{path} is empty.")
    emotion_col, pixels_col, usage_col = _csv_columns(header, path)
    labels: list[int] = []
    splits: list[str] = []
    chunks: list[np.ndarray] = []
    texts: list[str] = []
    numbers: list[int] = []
    pixel_count = None
    for number, row in numbered:
        if len(row) == 1 and not row[0].strip():
            continue
        if len(row) != len(header):
            raise DatasetError(f"{path} line {number} has {len(row)} fields; the header has {len(header)}.")
        labels.append(_emotion_index(row[emotion_col], path, number))
        splits.append(_usage_split(row[usage_col], path, number) if usage_col is not None else "train")
        if pixel_count is None:
            pixel_count = _square_pixel_count(row[pixels_col], path, number)
        texts.append(row[pixels_col])
        numbers.append(number)
        if len(texts) == _CSV_CHUNK_ROWS:
            chunks.append(_parse_pixel_rows(texts, numbers, path, pixel_count))
            texts, numbers = [], []
    if texts:
        chunks.append(_parse_pixel_rows(texts, numbers, path, pixel_count))
    if not chunks:
        raise DatasetError(f"{path} has a header but no data rows.")
    side = math.isqrt(pixel_count)
    images = np.concatenate(chunks).reshape(-1, side, side)
    return images, np.asarray(labels, dtype=np.int64), np.asarray(splits)


def _csv_fields(text: str, path: Path, number: int) -> list[str]:
    # str.split is 5x faster than the csv module on FER2013's unquoted rows; quoted rows still go through csv.
    text = text.rstrip("\r\n")
    if '"' not in text:
        return text.split(",")
    try:
        return next(csv.reader([text]), [""])
    except csv.Error as error:
        raise DatasetError(f"{path} line {number} is not valid CSV ({error}).") from None


def _emotion_index(text: str, path: Path, line: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise DatasetError(f"{path} line {line}: emotion {text.strip()[:20]!r} is not a class index 0..6.") from None
    if not 0 <= value < len(EMOTIONS):
        raise DatasetError(f"{path} line {line}: emotion {value} is outside 0..{len(EMOTIONS) - 1}.")
    return value


def _usage_split(text: str, path: Path, line: int) -> str:
    split = _USAGE_SPLITS.get(text.strip().lower())
    if split is None:
        raise DatasetError(
            f"{path} line {line}: Usage {text.strip()[:20]!r} is not Training, PublicTest or PrivateTest."
        )
    return split


def _square_pixel_count(text: str, path: Path, line: int) -> int:
    count = len(text.split())
    side = math.isqrt(count)
    if count == 0 or side * side != count:
        raise DatasetError(f"{path} line {line}: {count} pixel values do not make a square image (48×48 is 2304).")
    return count


def _parse_pixel_rows(texts: list[str], lines: list[int], path: Path, expected: int) -> np.ndarray:
    """Space-separated 0..255 integers, one row of text per image -> (rows, expected) uint8.

    Vectorised over the bytes of many rows at once (per-row str.split() plus int conversion takes ~10 s for the
    35,887 FER2013 rows). Only comparisons and small gathers: table lookups over every byte cost several times more.
    """
    buf = np.frombuffer("\n".join(texts).encode("ascii", "replace"), dtype=np.uint8)
    digit = (buf - np.uint8(ord("0"))) <= 9
    _check_pixel_bytes(buf, digit, lines, path)
    padded = np.concatenate(([False], digit, [False]))
    edges = np.flatnonzero(padded[1:] ^ padded[:-1])  # alternately where a number starts and one past its end
    starts, ends = edges[0::2], edges[1::2] - 1
    row_starts = np.concatenate(([0], np.searchsorted(starts, np.flatnonzero(buf == 10)), [len(starts)]))
    counts = np.diff(row_starts)
    if (counts != expected).any():
        row = int(np.argmax(counts != expected))
        raise DatasetError(f"{path} line {lines[row]} has {counts[row]} pixel values; the first row has {expected}.")
    values = _number_values(buf, starts, ends)
    if values.max(initial=0) > 255:
        row = int(np.argmax(values.reshape(len(texts), expected).max(axis=1) > 255))
        raise DatasetError(f"{path} line {lines[row]}: a pixel value is above 255.")
    return values.astype(np.uint8).reshape(len(texts), expected)


def _check_pixel_bytes(buf: np.ndarray, digit: np.ndarray, lines: list[int], path: Path) -> None:
    """Only digits and whitespace; counting is cheap, locating the culprit is done only when there is one."""
    if np.count_nonzero(digit) + np.count_nonzero(buf == 32) + np.count_nonzero(buf == 10) == len(buf):
        return
    allowed = digit | (buf == 32) | (buf == 10) | (buf == 9) | (buf == 13)
    if not allowed.all():
        row = np.count_nonzero(buf[: np.argmin(allowed)] == 10)
        raise DatasetError(f"{path} line {lines[row]}: pixels must be whole numbers 0..255 separated by spaces.")


def _number_values(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Integer value of each digit run buf[starts[i]:ends[i] + 1]."""
    lengths = ends - starts + 1
    values = buf[ends].astype(np.int16) - 48
    for place in (1, 2):  # masked rather than compressed: ends - place may point into the previous number
        values += (buf[ends - place].astype(np.int16) - 48) * (10**place * (lengths > place)).astype(np.int16)
    for token in np.flatnonzero(lengths > 3):  # rare (leading zeros or an out-of-range value): exact, slowly
        values[token] = min(int(buf[starts[token] : ends[token] + 1].tobytes()), 999)
    return values


# ----------------------------------------------------------------------------------------------- X/Y .npy pairs

_NPY_MAGIC = b"\x93NUMPY"


def _is_npy(path: Path) -> bool:
    return path.suffix.lower() == ".npy"


def find_npy_pair(folder: Path) -> tuple[Path, Path] | None:
    """(X, Y) in `folder`: X.npy/Y.npy or X.txt.npy/Y.txt.npy, else the one X*.npy with a matching Y*.npy."""
    pairs = []
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file() and _is_npy(p) and p.name[:1] in "xX"):
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
    images, resized = _resize_all(_images_from_array(x, x_path), size)
    arrays = FaceArrays(images, labels, EMOTIONS, resized_from=resized)
    dataset = Dataset(splits={"train": arrays}, classes=EMOTIONS, source=str(x_path), format="npy",
                      image_size=tuple(size))
    return _finish(dataset, require_all_classes)


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


# ----------------------------------------------------------------------------------------------- uploads


def load_uploaded_dataset(
    files: list[tuple[str, bytes]],
    workdir: str | os.PathLike,
    size: tuple[int, int] = (48, 48),
    require_all_classes: bool = False,
) -> Dataset:
    """A dataset from uploaded (name, content) files: one .zip of class folders, one FER2013 .csv, or two .npy
    files named X… and Y…. They are stored in a fresh folder under `workdir` (kept: the Dataset's source points
    there); on any error that folder is removed and the message names the uploaded files."""
    kind = _upload_kind(files)
    total = sum(len(content) for _, content in files)
    if total > MAX_UPLOAD_BYTES:
        names = ", ".join(Path(name).name for name, _ in files)
        raise DatasetError(
            f"The upload ({names}) is {total / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB."
        )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=workdir))
    shown: dict[str, str] = {str(folder): "the upload"}
    try:
        source = _store_upload(kind, files, folder, shown)
        return load_dataset(source, size, require_all_classes)
    except DatasetError as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise DatasetError(_with_upload_names(str(error), shown)) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def upload_digest(files: list[tuple[str, bytes]]) -> str:
    """A short fingerprint of uploaded (name, content) files, the same whatever their order."""
    digest = hashlib.sha256()
    for name, content in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()[:20]


def _upload_kind(files: list[tuple[str, bytes]]) -> str:
    names = [name for name, _ in files]
    suffixes = sorted(Path(name).suffix.lower() for name in names)
    if suffixes == [".zip"]:
        return "zip"
    if suffixes == [".csv"]:
        return "csv"
    if suffixes == [".npy", ".npy"]:
        if sorted(Path(name).name[:1].lower() for name in names) == ["x", "y"]:
            return "npy"
        raise DatasetError(f"Name the two .npy files X… (images) and Y… (labels); got {', '.join(names)}.")
    got = f"; got {', '.join(names)}" if names else ""
    raise DatasetError(
        f"Upload one .zip of class folders, one FER2013 .csv, or two .npy files named X… and Y…{got}."
    )


def _store_upload(kind: str, files: list[tuple[str, bytes]], folder: Path, shown: dict[str, str]) -> Path:
    """Write the upload below `folder`; return what to load. `shown` learns stored path -> uploaded name."""
    if kind == "zip":
        name, content = files[0]
        target = folder / (_safe_name(Path(name).stem) or "dataset")
        shown[str(target)] = Path(name).name
        _extract_zip(content, Path(name).name, target)
        return _unwrap_single_folder(target)
    if kind == "csv":
        name, content = files[0]
        target = folder / (_safe_name(Path(name).name) or "dataset.csv")
        shown[str(target)] = Path(name).name
        target.write_bytes(content)
        return target
    for name, content in files:  # npy: stored as X.npy / Y.npy so they pair up whatever they were called
        target = folder / f"{Path(name).name[:1].upper()}.npy"
        shown[str(target)] = Path(name).name
        target.write_bytes(content)
    return folder / "X.npy"


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name).lstrip(".")


def _with_upload_names(message: str, shown: dict[str, str]) -> str:
    for path in sorted(shown, key=len, reverse=True):  # the longest first: the folder is a prefix of the others
        message = message.replace(path, shown[path])
    return message


def _extract_zip(content: bytes, name: str, target: Path) -> None:
    """Extract into `target`, refusing unsafe member paths and oversized archives before writing anything."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile:
        raise DatasetError(f"{name} is not a valid zip archive.") from None
    with archive:
        members = [info for info in archive.infolist() if not _ignored_member(info.filename) and not info.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise DatasetError(f"{name} has {len(members)} files; at most {MAX_ZIP_MEMBERS} are accepted.")
        for info in members:
            if _member_parts(info.filename) is None:
                raise DatasetError(
                    f"{name} contains the unsafe path {info.filename!r} (absolute or outside the archive); "
                    "nothing was extracted."
                )
        if sum(info.file_size for info in members) > MAX_UNZIPPED_BYTES:
            raise DatasetError(f"{name} unpacks to more than {MAX_UNZIPPED_BYTES // 1024**3} GB.")
        target.mkdir()
        budget = MAX_UNZIPPED_BYTES
        for info in members:
            budget -= _extract_member(archive, info, target.joinpath(*_member_parts(info.filename)), budget, name)


def _ignored_member(filename: str) -> bool:
    parts = filename.replace("\\", "/").split("/")
    return parts[0] == "__MACOSX" or parts[-1] == ".DS_Store" or parts[-1].startswith("._")


def _member_parts(filename: str) -> list[str] | None:
    """The path parts of a zip member, or None where it is absolute or climbs out with '..'."""
    name = filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return parts


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, budget: int, name: str) -> int:
    """Copy one member, counting real bytes (declared sizes can lie); return how many were written."""
    written = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(path, "wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > budget:
                    raise DatasetError(f"{name} unpacks to more than {MAX_UNZIPPED_BYTES // 1024**3} GB.")
                dst.write(chunk)
    except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, ValueError) as error:
        raise DatasetError(f"{name}: could not extract {info.filename!r} ({error}).") from None
    return written


def _unwrap_single_folder(root: Path) -> Path:
    """Archives often wrap everything in one top folder (fer2013/train/...): descend to where the data starts."""
    while True:
        children = list(root.iterdir())
        dirs = [p for p in children if p.is_dir()]
        if len(children) != 1 or len(dirs) != 1:
            return root
        only = dirs[0]
        if canonical_emotion(only.name) is not None or only.name.lower() in _SPLIT_NAMES:
            return root
        root = only
