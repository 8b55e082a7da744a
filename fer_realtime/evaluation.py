"""Accuracy, per-class recall and the confusion matrix of a classifier on labelled faces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class EvaluationReport:
    classes: list[str]
    accuracy: float
    n: int
    per_class: dict[str, dict[str, float | int]]  # class -> {"recall", "precision", "n"}
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def format_text(self) -> str:
        lines = [f"accuracy {self.accuracy:.4f} on n={self.n} images"]
        lines.append(f"{'class':<10} {'n':>6} {'recall':>8} {'precision':>10}")
        for name in self.classes:
            row = self.per_class[name]
            lines.append(f"{name:<10} {row['n']:>6} {row['recall']:>8.4f} {row['precision']:>10.4f}")
        lines.append("confusion (rows true, columns predicted):")
        width = max(7, *(len(c) for c in self.classes)) + 1
        lines.append(" " * width + "".join(f"{c[:7]:>8}" for c in self.classes))
        for name, row in zip(self.classes, self.confusion):
            lines.append(f"{name:<{width}}" + "".join(f"{v:>8}" for v in row))
        if self.skipped:
            lines.append("skipped folders: " + ", ".join(self.skipped))
        return "\n".join(lines)


def evaluate_predictions(true: np.ndarray, predicted: np.ndarray, classes, skipped=()) -> EvaluationReport:
    k = len(classes)
    true = np.asarray(true, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (true, predicted), 1)
    per_class = {}
    for i, name in enumerate(classes):
        support = int(confusion[i].sum())
        predicted_as = int(confusion[:, i].sum())
        per_class[name] = {
            "recall": float(confusion[i, i] / support) if support else 0.0,
            "precision": float(confusion[i, i] / predicted_as) if predicted_as else 0.0,
            "n": support,
        }
    n = int(true.shape[0])
    return EvaluationReport(
        classes=list(classes),
        accuracy=float(np.trace(confusion) / n) if n else 0.0,
        n=n,
        per_class=per_class,
        confusion=confusion.tolist(),
        skipped=list(skipped),
    )
