"""Datasets in memory: faces as arrays, a dataset's splits and summary, and the held-out and stratified splits
every format shares."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..core.errors import DatasetError
from ..core.labels import EMOTIONS

SPLIT_ORDER = ("train", "val", "test")


@dataclass
class FaceArrays:
    """Grayscale faces (N, H, W) uint8 and labels (N,) int indices into `classes`."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...] = EMOTIONS
    skipped_folders: list[str] = field(default_factory=list)
    unreadable_files: list[str] = field(default_factory=list)
    resized_from: dict[tuple[int, int], int] = field(default_factory=dict)  # original (height, width) -> count
    # Each face's file, relative to the folder it was read from ("angry/Training_10118481.jpg"), where the format
    # has files (class folders); empty otherwise. Per-image annotations (data/ferplus.py) are matched by it.
    files: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(c) for name, c in zip(self.classes, counts)}


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
    return subset(train, kept, keep_notes=True), subset(train, held, keep_notes=False), name


def subset(arrays: FaceArrays, idx: np.ndarray, keep_notes: bool = False) -> FaceArrays:
    """The faces `idx` of `arrays` (with their files); `keep_notes` keeps the notes on skipped and resized input."""
    files = tuple(arrays.files[i] for i in idx) if arrays.files else ()
    if not keep_notes:
        return FaceArrays(arrays.images[idx], arrays.labels[idx], arrays.classes, files=files)
    return FaceArrays(arrays.images[idx], arrays.labels[idx], arrays.classes, list(arrays.skipped_folders),
                      list(arrays.unreadable_files), dict(arrays.resized_from), files)


def finish_dataset(dataset: Dataset, require_all_classes: bool) -> Dataset:
    """Checks common to every format: at least two classes to learn, and every class if the caller insists."""
    present = [name for name, n in dataset.train.class_counts().items() if n]
    if len(present) < 2:
        found = f"only {present[0]}" if present else "no class"
        raise DatasetError(f"{dataset.source}: the training images cover {found}; at least two classes are needed.")
    missing = dataset.missing_classes()
    if require_all_classes and missing:
        raise DatasetError(f"{dataset.source} has no training images for: {', '.join(missing)}.")
    return dataset


def resize_all(images: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    """(N, H, W) -> (N, *size), with the resize recorded; `size` is (height, width)."""
    original = tuple(int(s) for s in images.shape[1:3])
    if original == tuple(size) or len(images) == 0:
        return images, {}
    height, width = size
    resized = np.stack([cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA) for img in images])
    return resized, {original: len(images)}
