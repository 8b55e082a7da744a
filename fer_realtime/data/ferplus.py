"""FER+ votes (Barsoum et al. 2016): how ten annotators labelled each FER2013 face, as labels to learn from and to
score against.

The votes file (`ferplus_votes.csv` beside FER2013's `train/` and `val/`) has one row per image file and a column of
votes per FER+ category. Faces are matched to rows by file name (`Training_10118481.jpg` is unique in FER2013), so
the folders can live anywhere. Two readings:

- vote shares over the seven emotions (contempt, unknown and not-a-face votes dropped): the label distribution
  FER+ trains on;
- the majority label: the category with the most votes, left out where two categories tie for the most or where
  the most votes say contempt, unknown or not a face (FER+'s own majority scoring).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ..core.errors import DatasetError
from ..core.labels import EMOTIONS

VOTES_FILE = "ferplus_votes.csv"
# The file's vote columns; the first seven are our emotions under FER+'s names.
VOTE_COLUMNS = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt", "unknown", "not_face")
NOT_EMOTIONS = ("contempt", "unknown", "not_face")
LABEL_SETS = ("original", "ferplus")
TRAINING_LABELS = ("original", "ferplus", "mix")


@dataclass(frozen=True)
class FerPlusVotes:
    """Votes per image file name: an (N, 10) count array in VOTE_COLUMNS order."""

    path: Path
    names: tuple[str, ...]
    counts: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def rows_for(self, files) -> np.ndarray:
        """For each file (any path; its name is matched), its row in `counts`, or -1 where the file has no votes."""
        index = {name: i for i, name in enumerate(self.names)}
        return np.asarray([index.get(PurePosixPath(f).name, -1) for f in files], dtype=np.int64)

    def shares(self, files, classes=EMOTIONS) -> tuple[np.ndarray, np.ndarray]:
        """(shares (N, len(classes)) float32, has_votes (N,) bool): each face's emotion votes as fractions summing to 1;
        rows without any emotion vote (or without votes) are zero and have has_votes False."""
        emotion_counts = self._emotion_counts(files, classes)
        totals = emotion_counts.sum(axis=1)
        has = totals > 0
        shares = np.zeros_like(emotion_counts, dtype=np.float32)
        shares[has] = emotion_counts[has] / totals[has, None]
        return shares, has

    def majority(self, files, classes=EMOTIONS) -> tuple[np.ndarray, np.ndarray]:
        """(labels (N,) int indices into classes, kept (N,) bool): the majority vote; kept is False without votes,
        on a tie for the most votes, or where the majority is contempt, unknown or not a face."""
        rows = self.rows_for(files)
        counts = np.zeros((len(rows), len(VOTE_COLUMNS)), dtype=np.int64)
        counts[rows >= 0] = self.counts[rows[rows >= 0]]
        top = counts.max(axis=1)
        winners = (counts == top[:, None]).sum(axis=1)
        best = counts.argmax(axis=1)
        column_to_class = np.asarray([classes.index(c) if c in classes else -1 for c in VOTE_COLUMNS])
        labels = column_to_class[best]
        kept = (rows >= 0) & (top > 0) & (winners == 1) & (labels >= 0)
        return np.where(kept, labels, 0), kept

    def _emotion_counts(self, files, classes) -> np.ndarray:
        missing = [c for c in classes if c not in VOTE_COLUMNS[:7]]
        if missing:
            raise DatasetError(f"The FER+ votes have no column for {', '.join(missing)}.")
        rows = self.rows_for(files)
        counts = np.zeros((len(rows), len(classes)), dtype=np.float32)
        columns = [VOTE_COLUMNS.index(c) for c in classes]
        counts[rows >= 0] = self.counts[rows[rows >= 0]][:, columns]
        return counts


def read_votes(path: str | os.PathLike) -> FerPlusVotes:
    """Read a votes CSV (columns `file` and VOTE_COLUMNS). DatasetError with one sentence if it is not one."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ("file", *VOTE_COLUMNS) if c not in (reader.fieldnames or ())]
            if missing:
                raise DatasetError(f"{path.name} is not a FER+ votes file: it has no column {', '.join(missing)}.")
            names, counts = [], []
            for line, row in enumerate(reader, start=2):
                try:
                    votes = [int(row[c]) for c in VOTE_COLUMNS]
                except (TypeError, ValueError):
                    raise DatasetError(f"{path.name} line {line}: the votes are not whole numbers.") from None
                if min(votes) < 0:
                    raise DatasetError(f"{path.name} line {line}: a negative vote count.")
                names.append(PurePosixPath(row["file"]).name)
                counts.append(votes)
    except OSError as exc:
        raise DatasetError(f"The FER+ votes file {path} cannot be read ({exc.strerror or exc}).") from exc
    except UnicodeDecodeError:
        raise DatasetError(f"{path.name} is not a text CSV file.") from None
    if not names:
        raise DatasetError(f"{path.name} holds no votes.")
    return FerPlusVotes(path, tuple(names), np.asarray(counts, dtype=np.int64).reshape(-1, len(VOTE_COLUMNS)))


def find_votes(data: str | os.PathLike) -> Path | None:
    """The votes file of a dataset: `ferplus_votes.csv` in the folder given or in the folder above it (for a split
    folder such as `fer2013/val`); None if there is none."""
    data = Path(data)
    for folder in (data, data.parent):
        candidate = folder / VOTES_FILE
        if candidate.is_file():
            return candidate
    return None


def training_targets(labels: np.ndarray, files, num_classes: int, votes: FerPlusVotes | None, weight: float,
                     classes=EMOTIONS) -> tuple[np.ndarray, int]:
    """(targets (N, num_classes), faces with votes): (1 - weight) x the one-hot label + weight x the vote shares;
    a face without votes keeps its one-hot label. weight 0: the original labels; 1: the votes alone."""
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    if votes is None or not weight:
        return onehot, 0
    if not files:
        raise DatasetError("Training on the FER+ votes needs a dataset of image files (class folders) to match them.")
    shares, has = votes.shares(files, classes)
    targets = onehot.copy()
    targets[has] = (1.0 - weight) * onehot[has] + weight * shares[has]
    return targets, int(has.sum())
