"""The Kaggle FER2013 CSV (emotion,pixels[,Usage]), parsed vectorised: Training -> train, PublicTest -> val,
PrivateTest -> test."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from ..core.errors import DatasetError
from ..core.labels import EMOTIONS
from .dataset import SPLIT_ORDER, Dataset, FaceArrays, finish_dataset, resize_all

_USAGE_SPLITS = {"training": "train", "train": "train", "publictest": "val", "val": "val", "validation": "val",
                 "privatetest": "test", "test": "test"}
_CSV_CHUNK_ROWS = 1024


def looks_like_fer_csv(path: Path) -> bool:
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
    images, resized = resize_all(images, size)
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
    return finish_dataset(dataset, require_all_classes)


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
