"""The scorecard: every figure that decides whether a model ships, for several models side by side with the shipped
one. FER2013's `val/` read with its original labels and with the FER+ annotators' majority, CK+48 (posed faces of
another dataset; it has no neutral face, so every face read as neutral is a miss), the cost per face, and McNemar's
paired test of each model against the reference on every set."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import FerError
from ..core.model_file import PACKAGE_DIR, default_model_path
from ..data.class_folders import load_class_folders
from ..data.ferplus import find_votes, read_votes
from ..inference.engine import dataset_probabilities, get_engine
from ..inference.tta import TestTimeAugmentation
from .benchmark import bench_model
from .compute import describe_cpu, multiply_adds
from .metrics import EvaluationReport, evaluate_predictions
from .paired_comparison import PairedComparison, compare_predictions

DATASETS_ENV = "FER_REALTIME_DATASETS"
SETS = ("val original", "val FER+", "CK+48")


def default_datasets_root() -> Path:
    """`$FER_REALTIME_DATASETS`, else `shared/datasets` beside the repository (where the project keeps them)."""
    return Path(os.environ.get(DATASETS_ENV) or PACKAGE_DIR.parent.parent / "shared" / "datasets")


@dataclass(frozen=True)
class ScorecardData:
    val: Path | None  # FER2013 val/ (class folders)
    votes: Path | None  # ferplus_votes.csv for val/
    ckplus: Path | None  # CK+48 (class folders)

    @classmethod
    def under(cls, root: str | os.PathLike | None = None) -> ScorecardData:
        root = Path(root) if root else default_datasets_root()
        val, ckplus = root / "fer2013" / "val", root / "ckplus48"
        return cls(val if val.is_dir() else None, find_votes(val) if val.is_dir() else None,
                   ckplus if ckplus.is_dir() else None)


@dataclass
class LabelledFaces:
    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    left_out: int = 0  # faces of the set without a label here (FER+: no majority, or not an emotion)
    note: str = ""


@dataclass
class ModelScore:
    name: str
    path: str
    reports: dict[str, EvaluationReport] = field(default_factory=dict)  # set name -> figures
    neutral_share: dict[str, float] = field(default_factory=dict)  # set name -> share of faces read as neutral
    paired: dict[str, PairedComparison] = field(default_factory=dict)  # set name -> against the reference
    views: int = 1
    gmac_per_face: float = 0.0
    ms_per_face: dict[int, float] = field(default_factory=dict)  # batch -> median ms per face
    runtime: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "views": self.views, "gmac_per_face": self.gmac_per_face,
                "ms_per_face": {str(k): v for k, v in self.ms_per_face.items()}, "runtime": self.runtime,
                "sets": {name: {"accuracy": r.accuracy, "macro_recall": r.macro_recall,
                                "calibration_error": r.calibration_error, "n": r.n,
                                "neutral_share": self.neutral_share.get(name),
                                "recall": {c: v["recall"] for c, v in r.per_class.items()}}
                         for name, r in self.reports.items()},
                "paired": {name: p.to_dict() for name, p in self.paired.items()}}


def labelled_sets(data: ScorecardData, classes: tuple[str, ...], input_size: tuple[int, int]) -> list[LabelledFaces]:
    """The scorecard's sets that exist, read at `input_size` (height, width)."""
    height, width = input_size
    sets = []
    if data.val is not None:
        val = load_class_folders(data.val, size=(width, height), classes=classes)
        sets.append(LabelledFaces("val original", val.images, val.labels, classes))
        if data.votes is not None:
            labels, kept = read_votes(data.votes).majority(val.files, classes)
            sets.append(LabelledFaces("val FER+", val.images[kept], labels[kept], classes, int((~kept).sum()),
                                      "FER+ majority; ties and contempt/unknown/not-face majorities left out"))
    if data.ckplus is not None:
        ck = load_class_folders(data.ckplus, size=(width, height), classes=classes)
        skipped = f"folders left out: {', '.join(ck.skipped_folders)}" if ck.skipped_folders else ""
        sets.append(LabelledFaces("CK+48", ck.images, ck.labels, classes, note=skipped))
    if not sets:
        raise FerError("No scorecard data found: give --datasets, a folder holding fer2013/val (and its "
                       "ferplus_votes.csv) and ckplus48.")
    return sets


@dataclass
class Scorecard:
    scores: list[ModelScore]  # the reference first
    sets: list[LabelledFaces]  # as the reference read them
    cpu: str = ""

    def format_text(self) -> str:
        return format_scorecard(self.scores, self.sets, self.cpu)

    def to_dict(self) -> dict:
        return {"cpu": self.cpu, "models": [s.to_dict() for s in self.scores],
                "sets": {f.name: {"n": len(f.labels), "left_out": f.left_out, "note": f.note} for f in self.sets}}


def score_models(paths: Sequence[str | os.PathLike], data: ScorecardData, reference: str | os.PathLike | None = None,
                 speed_runs: int = 50, progress: Callable[[str], None] | None = None) -> Scorecard:
    """Scores of the reference model (default: the shipped one) and of each of `paths`, in that order; paired tests
    of each against the reference. speed_runs 0: no timing."""
    reference = Path(reference) if reference else default_model_path()
    all_paths = [reference, *[Path(p) for p in paths if Path(p).resolve() != reference.resolve()]]
    engines = [get_engine(p) for p in all_paths]
    first = engines[0].metadata
    for engine in engines[1:]:
        if tuple(engine.metadata.classes) != tuple(first.classes):
            raise FerError(f"{engine.loaded.path.name} knows other classes than {all_paths[0].name}; the scorecard "
                           "compares models face by face.")
    sets_by_size: dict[tuple[int, int], list[LabelledFaces]] = {}
    scores: list[ModelScore] = []
    reference_probabilities: dict[str, np.ndarray] = {}
    for index, (path, engine) in enumerate(zip(all_paths, engines)):
        size = tuple(engine.metadata.input_size)
        if size not in sets_by_size:
            sets_by_size[size] = labelled_sets(data, tuple(first.classes), size)
        if progress:
            progress(f"scoring {path.name}")
        views = TestTimeAugmentation.of(engine.metadata).views
        score = ModelScore(name=path.name if index else f"{path.name} (reference)", path=str(path), views=views,
                           gmac_per_face=multiply_adds(engine.loaded.model) * views / 1e9, runtime=engine.runtime)
        neutral = first.classes.index("neutral") if "neutral" in first.classes else -1
        for faces in sets_by_size[size]:
            probabilities = dataset_probabilities(engine, faces.images)
            predicted = probabilities.argmax(axis=1)
            score.reports[faces.name] = evaluate_predictions(faces.labels, predicted, faces.classes,
                                                             probabilities=probabilities)
            score.neutral_share[faces.name] = float(np.mean(predicted == neutral)) if len(predicted) else 0.0
            if index == 0:
                reference_probabilities[faces.name] = probabilities
            elif size == tuple(first.input_size):
                score.paired[faces.name] = compare_predictions(faces.labels, probabilities,
                                                               reference_probabilities[faces.name])
        if speed_runs:
            crops = list(sets_by_size[size][0].images[:8])
            for batch in (1, 8):
                row = bench_model(engine, crops, batch, speed_runs)
                score.ms_per_face[batch] = row.p50_ms / batch
        scores.append(score)
    return Scorecard(scores, sets_by_size[tuple(first.input_size)], describe_cpu())


def _figure(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_scorecard(scores: list[ModelScore], sets: list[LabelledFaces] | None = None, cpu: str = "") -> str:
    """A table: one column per model, one row per figure."""
    names = [s.name for s in scores]
    width = max(12, *(len(n) for n in names)) + 2
    lines = ["".ljust(34) + "".join(n.rjust(width) for n in names)]

    def row(label: str, values) -> None:
        lines.append(label.ljust(34) + "".join(str(v).rjust(width) for v in values))

    set_names = [name for name in SETS if any(name in s.reports for s in scores)]
    for name in set_names:
        reports = [s.reports.get(name) for s in scores]
        n = next((r.n for r in reports if r), 0)
        row(f"{name} (n {n})", [""] * len(scores))
        row("  accuracy", [_figure(r.accuracy if r else None) for r in reports])
        row("  macro recall", [_figure(r.macro_recall if r else None) for r in reports])
        if name == "CK+48":
            row("  share read as neutral", [_figure(s.neutral_share.get(name)) for s in scores])
        else:
            row("  calibration error (ECE)", [_figure(r.calibration_error if r else None) for r in reports])
        row("  paired vs reference", ["–" if i == 0 or name not in s.paired else
                                      f"+{s.paired[name].only_a_right}/-{s.paired[name].only_b_right} "
                                      f"p {s.paired[name].p_value:.2g}" for i, s in enumerate(scores)])
    row("views per face", [s.views for s in scores])
    row("GMAC per face", [f"{s.gmac_per_face:.3f}" for s in scores])
    for batch in (1, 8):
        if any(batch in s.ms_per_face for s in scores):
            row(f"ms per face, batch {batch}", [_figure(s.ms_per_face.get(batch), 2) for s in scores])
    notes = []
    for faces in sets or []:
        if faces.left_out or faces.note:
            notes.append(f"{faces.name}: {faces.note}" + (f"; {faces.left_out} faces left out" if faces.left_out
                                                          else ""))
    notes.append("paired: +faces only this model reads right / -faces only the reference does, McNemar exact p")
    if cpu:
        notes.append(f"CPU: {cpu}; runtime: {scores[0].runtime}")
    return "\n".join(lines + notes)


def scorecard_table(card: dict) -> list[dict[str, str]]:
    """A scorecard's JSON (Scorecard.to_dict) as rows {"figure": ..., model name: value, ...}, for a page table."""
    models = card.get("models") or []
    rows: list[dict[str, str]] = []

    def row(figure: str, value) -> None:
        rows.append({"figure": figure, **{m["name"]: value(m) for m in models}})

    for name, info in (card.get("sets") or {}).items():
        left_out = f", {info['left_out']} left out" if info.get("left_out") else ""
        prefix = f"{name} (n {info.get('n')}{left_out})"
        row(f"{prefix}: accuracy", lambda m, n=name: _figure((m["sets"].get(n) or {}).get("accuracy")))
        row(f"{prefix}: macro recall", lambda m, n=name: _figure((m["sets"].get(n) or {}).get("macro_recall")))
        if name == "CK+48":
            row(f"{prefix}: share read as neutral",
                lambda m, n=name: _figure((m["sets"].get(n) or {}).get("neutral_share")))
        else:
            row(f"{prefix}: calibration error",
                lambda m, n=name: _figure((m["sets"].get(n) or {}).get("calibration_error")))
        row(f"{prefix}: paired vs reference", lambda m, n=name: (
            "–" if n not in m["paired"] else f"+{m['paired'][n]['only_a_right']} / -{m['paired'][n]['only_b_right']}, "
                                             f"p {m['paired'][n]['p_value']:.2g}"))
    row("GMAC per face", lambda m: f"{m['gmac_per_face']:.3f} ({m['views']} views)")
    for batch in ("1", "8"):
        if any(batch in m["ms_per_face"] for m in models):
            row(f"ms per face, batch {batch}", lambda m, b=batch: _figure(m["ms_per_face"].get(b), 2))
    return rows
