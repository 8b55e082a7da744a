"""Accuracy, per-class recall and the confusion matrix of a classifier on labelled faces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..inference.calibration import ECE_BINS, expected_calibration_error


@dataclass
class EvaluationReport:
    classes: list[str]
    accuracy: float
    n: int
    # class -> {"recall", "precision", "n"}; recall None for a class absent from the data, precision None for a
    # class never predicted
    per_class: dict[str, dict[str, float | int | None]]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    skipped: list[str] = field(default_factory=list)
    macro_recall: float = 0.0  # mean recall over the classes present in the data
    calibration_error: float | None = None  # expected calibration error of the top probability, when known

    def to_dict(self) -> dict:
        return asdict(self)

    def format_text(self) -> str:
        lines = [f"accuracy {self.accuracy:.4f} on n={self.n} images; macro recall {self.macro_recall:.4f} "
                 f"(mean over the {sum(1 for r in self.per_class.values() if r['n'])} classes present)"]
        if self.calibration_error is not None:
            lines.append(f"expected calibration error {self.calibration_error:.4f} ({ECE_BINS} bins of confidence)")
        lines.append(f"{'class':<10} {'n':>6} {'recall':>8} {'precision':>10}")
        for name in self.classes:
            row = self.per_class[name]
            lines.append(f"{name:<10} {row['n']:>6} {_figure(row['recall']):>8} {_figure(row['precision']):>10}")
        lines.append("confusion (rows true, columns predicted):")
        width = max(7, *(len(c) for c in self.classes)) + 1
        lines.append(" " * width + "".join(f"{c[:7]:>8}" for c in self.classes))
        for name, row in zip(self.classes, self.confusion):
            lines.append(f"{name:<{width}}" + "".join(f"{v:>8}" for v in row))
        if self.skipped:
            lines.append("skipped folders: " + ", ".join(self.skipped))
        return "\n".join(lines)


def _figure(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def evaluate_predictions(true: np.ndarray, predicted: np.ndarray, classes, skipped=(),
                         probabilities: np.ndarray | None = None) -> EvaluationReport:
    """Figures of `predicted` against `true`; with the class `probabilities` too, the calibration error."""
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
            "recall": float(confusion[i, i] / support) if support else None,
            "precision": float(confusion[i, i] / predicted_as) if predicted_as else None,
            "n": support,
        }
    n = int(true.shape[0])
    recalls = [row["recall"] for row in per_class.values() if row["recall"] is not None]
    return EvaluationReport(
        classes=list(classes),
        accuracy=float(np.trace(confusion) / n) if n else 0.0,
        n=n,
        per_class=per_class,
        confusion=confusion.tolist(),
        skipped=list(skipped),
        macro_recall=float(np.mean(recalls)) if recalls else 0.0,
        calibration_error=None if probabilities is None else expected_calibration_error(probabilities, true),
    )
