"""Commands that rework a trained model: quantize, calibrate, average, ensemble (and unpack), tta, framing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..core.errors import FerError
from ..core.model_file import load_model, save_model
from ..core.preprocessing import model_input
from ..data.dataset import train_heldout_split
from ..data.loader import load_dataset
from ..evaluation.framing import (DEFAULT_FACE_SIZES, DEFAULT_MARGINS, best_margins, checked_margins, framing_scores,
                                  margins_by_width)
from ..evaluation.metrics import evaluate_predictions
from ..faces.detector import DETECTOR_NAMES
from ..inference.engine import InferenceEngine
from ..inference.tta import CROPS, PRESETS, TestTimeAugmentation, choose, crop_margin, preset_candidates
from ..training.ensemble import build_ensemble, check_members, ensemble_metadata, selection_scores, unpack_ensemble
from ..training.trainer import model_selection_split
from ..training.weight_averaging import AveragingConfig, average_trained_model
from .saving import int8_copy_reported, kept_metrics, save_with_heldout_metrics, without_heldout


def _model_and_its_data(args):
    """(out path, loaded model, dataset, train, held-out, held-out name) for commands that rework a trained model:
    OUT defaults to MODEL; the dataset must have the model's classes."""
    out = Path(args.out or args.model)
    if out.suffix != ".keras" or out.is_dir():
        raise FerError(f"--out {out} must be a file name ending in .keras.")
    loaded = load_model(args.model)
    dataset = load_dataset(args.data, cache_dir=args.cache_dir)
    train, heldout, heldout_name = train_heldout_split(dataset)
    if tuple(train.classes) != tuple(loaded.metadata.classes):
        raise FerError(f"The dataset's classes {list(train.classes)} differ from the model's "
                       f"{list(loaded.metadata.classes)}.")
    return out, loaded, dataset, train, heldout, heldout_name


def cmd_quantize(args) -> int:
    out, loaded, dataset, train, heldout, heldout_name = _model_and_its_data(args)
    int8_tflite, metadata = int8_copy_reported(loaded.model, loaded.metadata, train)
    save_with_heldout_metrics(
        loaded.model, metadata, out, heldout, heldout_name, dataset.source,
        {**kept_metrics(Path(args.model)), "int8": metadata.int8, "quantize_command": args.command_line},
        command=loaded.metadata.command or args.command_line, train=train, int8_tflite=int8_tflite,
    )
    return 0


def cmd_average(args) -> int:
    """Stochastic weight averaging of a trained model (training/weight_averaging.py), then its int8 copy and held-out figures."""
    if args.epochs < 1:
        raise FerError(f"--epochs must be at least 1, got {args.epochs}.")
    if not args.learning_rate > 0:
        raise FerError(f"--learning-rate must be above 0, got {args.learning_rate}.")
    out, loaded, dataset, train, heldout, heldout_name = _model_and_its_data(args)
    if "config" not in loaded.metadata.training_data or loaded.metadata.architecture != "cnn":
        raise FerError(f"{Path(args.model).name} is not a CNN trained by `train`; only those can be averaged.")
    config = AveragingConfig(epochs=args.epochs, learning_rate=args.learning_rate, seed=args.seed)
    checkpoints = Path(args.checkpoints) if args.checkpoints else out.with_name(out.stem + "-checkpoints")
    print(f"averaging {Path(args.model).name} over {config.epochs} more epochs; checkpoints in {checkpoints}",
          flush=True)
    result = average_trained_model(train, loaded, config, checkpoints, verbose=2 if args.verbose else 0)
    print("selection split: " + ", ".join(f"tta {k} {v:.4f}" for k, v in result.metadata.metrics[
        "selection_accuracy_by_tta"].items()) + f"; chosen {TestTimeAugmentation.of(result.metadata).name}", flush=True)
    int8_tflite, metadata = int8_copy_reported(result.model, result.metadata, train)
    save_with_heldout_metrics(
        result.model, metadata, out, heldout, heldout_name, dataset.source,
        {"selection_accuracy": result.selection_report.accuracy, "tta": TestTimeAugmentation.of(metadata).name,
         "selection_metrics": metadata.metrics, "int8": metadata.int8,
         "averaged_model": {"file": Path(args.model).name, "command": loaded.metadata.command},
         "train_seconds_this_run": round(result.seconds, 1), "averaging_epochs": config.epochs},
        command=args.command_line, train=train, int8_tflite=int8_tflite,
    )
    return 0


def cmd_ensemble(args) -> int:
    out = Path(args.out)
    if out.suffix != ".keras" or out.is_dir():
        raise FerError(f"--out {args.out} must be a file name ending in .keras.")
    if len(args.members) < 2:
        raise FerError("An ensemble needs at least two member models.")
    members = [load_model(path) for path in args.members]
    seed, fraction = check_members(members)
    dataset = load_dataset(args.data, cache_dir=args.cache_dir)
    train, heldout, heldout_name = train_heldout_split(dataset)
    if tuple(train.classes) != tuple(members[0].metadata.classes):
        raise FerError(f"The dataset's classes {list(train.classes)} differ from the models' "
                       f"{list(members[0].metadata.classes)}.")
    ensemble = build_ensemble([m.model for m in members])
    scores = selection_scores(members, ensemble, train, seed, fraction,
                              preset_candidates(args.tta, crop_margin(ensemble)))
    print(f"selection split (seed {seed}, {fraction:.0%} of {dataset.source} train):")
    for name, member in scores.members.items():
        print(f"  {name:<28} {member['plain']:.4f}  with flip {member['flip']:.4f}")
    for name, accuracy in scores.ensemble.accuracy.items():
        print(f"  {'ensemble, tta ' + name:<28} {accuracy:.4f}")
    metadata = ensemble_metadata(members, scores)
    save_with_heldout_metrics(ensemble, metadata, out, heldout, heldout_name, dataset.source,
                               {"selection_accuracy": metadata.metrics["selection_accuracy"], "tta": TestTimeAugmentation.of(metadata).name,
                                "selection_metrics": scores.to_dict(), "members": list(args.members)},
                               command=args.command_line, train=train)
    return 0


def cmd_unpack(args) -> int:
    """Write each member network of an ensemble file as a model file of its own."""
    members = unpack_ensemble(load_model(args.model))
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FerError(f"--out-dir {out_dir} is a file.")
    names = [Path(m.file).name for m in members]
    if len(set(names)) < len(names):  # members that joined under the same name: number them
        names = [f"{Path(name).stem}-{i}.keras" for i, name in enumerate(names, start=1)]
    out_dir.mkdir(parents=True, exist_ok=True)
    for member, name in zip(members, names):
        path = save_model(member.model, member.metadata, out_dir / name)
        print(f"{path}  ({member.metadata.architecture}; {member.metadata.command or 'no command on record'})")
    return 0


def cmd_calibrate(args) -> int:
    """Fit a trained model's temperature on its selection split; the held-out figures are measured again."""
    out, loaded, dataset, train, heldout, heldout_name = _model_and_its_data(args)
    save_with_heldout_metrics(
        loaded.model, loaded.metadata, out, heldout, heldout_name, dataset.source,
        {**kept_metrics(Path(args.model)), "calibrate_command": args.command_line},
        command=loaded.metadata.command or args.command_line, train=train, int8_tflite=loaded.int8_tflite,
    )
    return 0


def cmd_tta(args) -> int:
    """Choose a trained model's test-time augmentation on its selection split; its int8 copy is made again and
    checked under the new views; the held-out figures are measured again."""
    out, loaded, dataset, train, heldout, heldout_name = _model_and_its_data(args)
    _, selection = model_selection_split(loaded.metadata, train, "given a test-time augmentation")
    x = model_input(train.images[selection], loaded.metadata)
    choice = choose(lambda views: loaded.model.predict(views, batch_size=256, verbose=0), x, train.labels[selection],
                    preset_candidates(args.tta, crop_margin(loaded.model)))
    for name, accuracy in choice.accuracy.items():
        print(f"selection split, tta {name:<24} {accuracy:.4f}")
    print(f"chosen: {choice.chosen.name}", flush=True)
    report = evaluate_predictions(train.labels[selection], choice.probabilities.argmax(axis=1), train.classes)
    superseded = ("selection_accuracy_without_flip", "selection_accuracy_with_flip")  # before selection_accuracy_by_tta
    selection_metrics = {**{k: v for k, v in without_heldout(loaded.metadata.metrics).items() if k not in superseded},
                         "selection_accuracy": report.accuracy, "selection_accuracy_by_tta": choice.accuracy}
    metadata = dataclasses.replace(loaded.metadata, **choice.chosen.metadata_fields(), metrics=selection_metrics)
    int8_tflite = None
    if loaded.metadata.int8:
        int8_tflite, metadata = int8_copy_reported(loaded.model, metadata, train)
    save_with_heldout_metrics(
        loaded.model, metadata, out, heldout, heldout_name, dataset.source,
        {**{k: v for k, v in kept_metrics(Path(args.model)).items() if k != "flip_tta"},
         "selection_accuracy": report.accuracy, "tta": choice.chosen.name, "selection_metrics": selection_metrics,
         "int8": metadata.int8, "tta_command": args.command_line},
        command=loaded.metadata.command or args.command_line, train=train, int8_tflite=int8_tflite,
    )
    return 0


def cmd_framing(args) -> int:
    """Choose, for each detector, the crop margin with which the model reads the faces it finds best, on the model's
    selection split (evaluation/framing.py); the held-out figures (pre-cut faces, unchanged by the margins) are
    measured again."""
    margins = checked_margins(_numbers(args.margins, "--margins"))
    detectors = [name.strip() for name in args.detectors.split(",") if name.strip()]
    if not detectors or any(name not in DETECTOR_NAMES for name in detectors):
        raise FerError(f"--detectors must name some of {', '.join(DETECTOR_NAMES)}, got {args.detectors!r}.")
    face_sizes = sorted(set(int(size) for size in _numbers(args.face_sizes, "--face-sizes")))
    if not face_sizes or any(not 24 <= size <= 400 for size in face_sizes):
        raise FerError(f"--face-sizes must be between 24 and 400 pixels, got {args.face_sizes!r}.")
    out, loaded, dataset, train, heldout, heldout_name = _model_and_its_data(args)
    _, selection = model_selection_split(loaded.metadata, train, "framed")
    if args.limit:
        selection = np.sort(np.random.default_rng(args.seed).permutation(selection)[: args.limit])
    engine = InferenceEngine(dataclasses.replace(loaded, metadata=dataclasses.replace(loaded.metadata, temperature=1.0)))
    scores = []
    for detector in detectors:
        for face_size in face_sizes:
            score = framing_scores(engine, train.images[selection], train.labels[selection], detector, margins,
                                   face_size, args.seed)
            scores.append(score)
            print(f"{detector}, {face_size} px faces (boxes {score.box_width:.0f} px): found {score.found}/{score.n}; "
                  f"read directly {score.direct:.4f}; by crop margin "
                  + ", ".join(f"{m:g} {a:.4f}" for m, a in score.by_margin.items()), flush=True)
    overall, per_detector = best_margins(scores)
    curves = margins_by_width(scores)
    before = loaded.metadata.preprocessing
    for name, margin in per_detector.items():
        print(f"chosen crop margin for {name}: {margin:g} (was {before.margin_for(name):g})", flush=True)
        if name in curves:
            print(f"  by box width for {name}: " + ", ".join(f"{w:.0f} px {m:g}" for w, m in curves[name]), flush=True)
    print(f"chosen crop margin for other detectors: {overall:g} (was {before.crop_margin:g})", flush=True)
    framing = {"crop_margin": overall, "detector_margins": per_detector,
               "margins_by_width": {name: [list(point) for point in points] for name, points in curves.items()},
               "scores": [s.to_dict() for s in scores]}
    kept = {name: margin for name, margin in before.detector_margins if name not in per_detector}
    kept_curves = {name: points for name, points in before.detector_margins_by_width if name not in per_detector}
    preprocessing = dataclasses.replace(before, crop_margin=overall,
                                        detector_margins=tuple(sorted({**kept, **per_detector}.items())),
                                        detector_margins_by_width=tuple(sorted({**kept_curves, **curves}.items())))
    metadata = dataclasses.replace(loaded.metadata, preprocessing=preprocessing,
                                   metrics={**without_heldout(loaded.metadata.metrics), "framing": framing})
    save_with_heldout_metrics(
        loaded.model, metadata, out, heldout, heldout_name, dataset.source,
        {**kept_metrics(Path(args.model)), "framing": framing, "framing_command": args.command_line},
        command=loaded.metadata.command or args.command_line, train=train, int8_tflite=loaded.int8_tflite,
    )
    return 0


def _numbers(text: str, option: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise FerError(f"{option} must be comma-separated numbers, got {text!r}.") from None


def add_quantize(sub) -> None:
    """The `quantize` command."""
    p = sub.add_parser("quantize", help="store an int8 copy of a trained model in its file (about 4x faster on CPUs)")
    _add_rework_arguments(p, data_help="the dataset it was trained on: calibration and selection split")
    p.set_defaults(func=cmd_quantize)


def add_calibrate(sub) -> None:
    """The `calibrate` command."""
    p = sub.add_parser("calibrate", help="fit the temperature that makes a model's confidence mean what it says")
    _add_rework_arguments(p, data_help="the dataset it was trained on: its selection split fits the temperature")
    p.set_defaults(func=cmd_calibrate)


def add_average(sub) -> None:
    """The `average` command."""
    p = sub.add_parser("average", help="train a model further and average its weights over the epochs (SWA)")
    _add_rework_arguments(p, data_help="the dataset it was trained on (its recorded split is kept)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--learning-rate", type=float, default=2e-4, help="at the start of each epoch's cosine cycle")
    p.add_argument("--seed", type=int, default=4321, help="of the augmentation and shuffling of the further training")
    p.add_argument("--checkpoints", default=None, help="checkpoint folder (resumes an interrupted run)")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_average)


def add_ensemble(sub) -> None:
    """The `ensemble` command."""
    p = sub.add_parser("ensemble", help="average trained models into one model file (one batched call per frame)")
    p.add_argument("members", nargs="+", metavar="MODEL", help="fer-realtime .keras files trained on the same split")
    p.add_argument("--data", required=True, help="the training dataset: its selection split scores the ensemble")
    _add_tta_option(p)
    p.add_argument("--out", required=True, help="the ensemble's .keras file")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "fer-realtime"))
    p.set_defaults(func=cmd_ensemble)


def add_unpack(sub) -> None:
    """The `unpack` command."""
    p = sub.add_parser("unpack", help="write each member network of an ensemble as a model file of its own")
    p.add_argument("model", metavar="ENSEMBLE", help="a .keras file made by `ensemble`")
    p.add_argument("--out-dir", required=True, help="folder for the members' .keras files (named as they joined)")
    p.set_defaults(func=cmd_unpack)


def add_tta(sub) -> None:
    """The `tta` command."""
    p = sub.add_parser("tta", help="choose a trained model's test-time augmentation on its selection split")
    _add_rework_arguments(p, data_help="the dataset it was trained on: its selection split decides")
    _add_tta_option(p)
    p.set_defaults(func=cmd_tta)


def add_framing(sub) -> None:
    """The `framing` command."""
    p = sub.add_parser("framing", help="choose each detector's crop margin around its faces on the selection split")
    _add_rework_arguments(p, data_help="the dataset it was trained on: its selection faces are put in camera "
                                       "frames, found by the detectors and cut at each margin")
    p.add_argument("--detectors", default=",".join(DETECTOR_NAMES), help="comma-separated: haar, mediapipe")
    p.add_argument("--margins", default=",".join(f"{m:g}" for m in DEFAULT_MARGINS),
                   help="comma-separated crop margins to try (fractions of the box on every side)")
    p.add_argument("--face-sizes", default=",".join(str(size) for size in DEFAULT_FACE_SIZES),
                   help="comma-separated face widths in pixels, in 640x480 frames (default: small and near faces)")
    p.add_argument("--limit", type=int, default=0, help="at most this many selection faces (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_framing)


def _add_rework_arguments(p, data_help: str) -> None:
    """The arguments of commands that rework a trained model in place or into --out (_model_and_its_data)."""
    p.add_argument("model", metavar="MODEL", help="a fer-realtime .keras file")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--out", default=None, help="write here instead of replacing MODEL")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "fer-realtime"))


def _add_tta_option(p) -> None:
    p.add_argument("--tta", default="auto", choices=["auto", *PRESETS, CROPS],
                   help="test-time augmentation: flip averages each face with its mirror image, flip+rotate also"
                        " with the face turned by ±8°, flip+crops (a network that sees the centre crop of the face) with"
                        " its four corner crops; auto: whichever scores highest on the selection split")
