"""Commands that measure a model on labelled faces: evaluate, compare-models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..core.errors import FerError
from ..data.class_folders import load_class_folders
from ..data.dataset import train_heldout_split
from ..data.ferplus import LABEL_SETS, VOTES_FILE, find_votes, read_votes
from ..data.loader import load_dataset
from ..evaluation.metrics import evaluate_predictions
from ..evaluation.paired_comparison import compare_predictions
from ..evaluation.scorecard import ScorecardData, score_models
from ..inference.engine import dataset_probabilities, get_engine
from ..training.trainer import model_selection_split


def cmd_evaluate(args) -> int:
    if args.batch_size < 1:
        raise FerError(f"--batch-size must be at least 1, got {args.batch_size}.")
    engine = get_engine(args.model)
    meta = engine.metadata
    height, width = meta.input_size
    data = load_class_folders(args.data_dir, size=(width, height), classes=meta.classes)
    images, labels, left_out, described = data.images, data.labels, 0, "original labels"
    if args.labels == "ferplus":
        path = Path(args.votes) if args.votes else find_votes(args.data_dir)
        if path is None:
            raise FerError(f"--labels ferplus needs the FER+ votes: no {VOTES_FILE} in {args.data_dir} or the folder "
                           "above it; give its path with --votes.")
        majority, kept = read_votes(path).majority(data.files, meta.classes)
        images, labels, left_out = images[kept], majority[kept], int((~kept).sum())
        described = (f"FER+ majority labels from {path.name}; {left_out} of {len(kept)} faces left out (no votes, a "
                     "tie, or a contempt/unknown/not-face majority)")
    probabilities = dataset_probabilities(engine, images, args.batch_size)
    report = evaluate_predictions(labels, probabilities.argmax(axis=1), meta.classes, skipped=data.skipped_folders,
                                  probabilities=probabilities)
    if args.json:
        out = report.to_dict()
        print(json.dumps({**{k: out[k] for k in ("accuracy", "macro_recall", "calibration_error", "n", "per_class",
                                                 "confusion", "classes", "skipped")},
                          "labels": args.labels, "left_out": left_out}, indent=2))
    else:
        print(f"model {engine.loaded.path} on {args.data_dir} ({described})")
        print(report.format_text())
        if data.unreadable_files:
            print(f"{len(data.unreadable_files)} unreadable image(s) ignored, e.g. {data.unreadable_files[0]}")
    return 0


def _faces_to_compare_on(args, loaded_models):
    """(faces, labels, description) for compare-models: the dataset's held-out part, the selection split that
    both models recorded (FerError if they recorded different ones), or every face of another dataset's class
    folders, read as `evaluate` reads them."""
    first = loaded_models[0].metadata
    for other in loaded_models[1:]:
        if tuple(other.metadata.classes) != tuple(first.classes) or other.metadata.input_size != first.input_size:
            raise FerError("The two models differ in their classes or input size, so they cannot be compared face "
                           "by face.")
    height, width = first.input_size
    if args.split == "all":
        data = load_class_folders(args.data, size=(width, height), classes=first.classes)
        skipped = f"; skipped: {', '.join(data.skipped_folders)}" if data.skipped_folders else ""
        return data.images, data.labels, f"faces of {args.data}, n={len(data.labels)}{skipped}"
    dataset = load_dataset(args.data, size=(height, width), cache_dir=args.cache_dir)
    train, heldout, heldout_name = train_heldout_split(dataset)
    if tuple(train.classes) != tuple(first.classes):
        raise FerError(f"The dataset's classes {list(train.classes)} differ from the models' {list(first.classes)}.")
    if args.split == "heldout":
        return heldout.images, heldout.labels, f"{heldout_name}, n={len(heldout)}"
    splits = [model_selection_split(m.metadata, train, "compared on its selection split")[1] for m in loaded_models]
    if any(not np.array_equal(splits[0], s) for s in splits[1:]):
        raise FerError("The two models were trained with different selection splits; compare them on --split heldout.")
    return train.images[splits[0]], train.labels[splits[0]], f"selection split of {dataset.source}, n={len(splits[0])}"


def cmd_compare_models(args) -> int:
    engines = [get_engine(path) for path in (args.model_a, args.model_b)]
    faces, labels, description = _faces_to_compare_on(args, [e.loaded for e in engines])
    result = compare_predictions(labels, *(dataset_probabilities(engine, faces) for engine in engines))
    if args.json:
        print(json.dumps({"faces": description, "model_a": args.model_a, "model_b": args.model_b,
                          **result.to_dict()}, indent=2))
    else:
        print(f"on the {description}:")
        print(result.format_text(Path(args.model_a).name, Path(args.model_b).name))
    return 0


def cmd_scorecard(args) -> int:
    data = ScorecardData.under(args.datasets)
    progress = None if args.json else (lambda text: print(f"... {text}", file=sys.stderr, flush=True))
    card = score_models(args.models, data, reference=args.reference, speed_runs=0 if args.no_speed else args.runs,
                        progress=progress)
    if args.json:
        print(json.dumps(card.to_dict(), indent=2))
    else:
        print(card.format_text())
    return 0


def add_evaluate(sub) -> None:
    """The `evaluate` command."""
    p = sub.add_parser("evaluate", help="accuracy of a model on pre-cropped faces in class folders")
    p.add_argument("data_dir", metavar="DATA_DIR")
    p.add_argument("--model", default=None)
    p.add_argument("--labels", default="original", choices=list(LABEL_SETS),
                   help="the folders' labels, or the FER+ annotators' majority (ferplus_votes.csv in DATA_DIR or the "
                        "folder above it): ties and contempt/unknown/not-face majorities are left out, and counted")
    p.add_argument("--votes", default=None, metavar="CSV", help="--labels ferplus: the votes file, if not beside DATA_DIR")
    p.add_argument("--json", action="store_true")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func=cmd_evaluate)


def add_compare_models(sub) -> None:
    """The `compare-models` command."""
    p = sub.add_parser("compare-models", help="two trained models on the same faces: accuracies and McNemar's test")
    p.add_argument("model_a", metavar="MODEL_A", help="a fer-realtime .keras file")
    p.add_argument("model_b", metavar="MODEL_B", help="a fer-realtime .keras file")
    p.add_argument("--data", required=True, help="a dataset of the models' classes")
    p.add_argument("--split", default="heldout", choices=["heldout", "selection", "all"],
                   help="the dataset's held-out part, the selection split of train that both models recorded, or "
                        "all: every face in DATA's class folders, as evaluate reads them (another dataset such as "
                        "CK+48; folders of classes the models lack are skipped)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "fer-realtime"))
    p.set_defaults(func=cmd_compare_models)


def add_scorecard(sub) -> None:
    """The `scorecard` command."""
    p = sub.add_parser("scorecard", help="the figures that decide whether a model ships, side by side with the "
                                         "shipped model: val/ (original and FER+ labels), CK+48, cost per face")
    p.add_argument("models", nargs="*", metavar="MODEL", help="fer-realtime .keras files (none: the reference alone)")
    p.add_argument("--reference", default=None, metavar="MODEL",
                   help="what the others are tested against, face by face (default: the shipped model)")
    p.add_argument("--datasets", default=None, metavar="DIR",
                   help="folder holding fer2013/val (with ferplus_votes.csv beside it) and ckplus48 (default: "
                        "$FER_REALTIME_DATASETS, else shared/datasets beside the repository)")
    p.add_argument("--runs", type=int, default=50, help="timed calls per batch size (default 50)")
    p.add_argument("--no-speed", action="store_true", help="leave out the timing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_scorecard)
