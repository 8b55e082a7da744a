"""Command-line interface: `python -m fer_realtime {predict,evaluate,train}` (also installed as `fer-realtime`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import write_bytes_atomic, write_json_atomic
from .errors import FerError

if TYPE_CHECKING:
    from .experiments import ExperimentConfig


def _check_training_numbers(args) -> None:
    for option, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            raise FerError(f"{option} must be at least 1, got {value}.")
    if args.learning_rate is not None and not args.learning_rate > 0:
        raise FerError(f"--learning-rate must be above 0, got {args.learning_rate}.")


def cmd_train(args) -> int:
    _check_training_numbers(args)
    if args.arch != "cnn" or args.pca is not None:
        return _train_with_experiment(args)
    from .datasets import load_dataset, train_heldout_split
    from .run_state import end_run, runs_root
    from .training import recipe_config, train_classifier

    if Path(args.out).suffix != ".keras" or Path(args.out).is_dir():  # checked before hours of training
        raise FerError(f"--out {args.out} must be a file name ending in .keras.")
    dataset = load_dataset(args.data, cache_dir=args.cache_dir)
    train, heldout, heldout_name = train_heldout_split(dataset)
    fields = dict(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                  augment=not args.no_augment, init_seed=args.init_seed)
    if args.learning_rate is not None:
        fields["learning_rate"] = args.learning_rate
    config = recipe_config(args.recipe, **fields)
    out = Path(args.out)
    run_dir = Path(args.checkpoints) if args.checkpoints else runs_root() / out.stem
    print(f"training {config.arch} on {len(train)} images from {dataset.source}; held-out: {heldout_name}; "
          f"run state in {run_dir}" + (f", handed over in {args.handover}" if args.handover else ""), flush=True)
    result = train_classifier(train, config, run_dir, verbose=2 if args.verbose else 0,
                              handover=args.handover, resume=args.resume)
    int8_tflite, metadata = _int8_copy(result.model, result.metadata, train)
    _save_with_heldout_metrics(
        result.model, metadata, out, heldout, heldout_name, dataset.source,
        {"selection_accuracy": result.selection_report.accuracy, "tta": result.metadata.tta.name,
         "selection_metrics": result.metadata.metrics, "int8": metadata.int8,
         "train_seconds_this_run": round(result.seconds, 1), "epochs": config.epochs},
        command=args.command_line, train=train, int8_tflite=int8_tflite,
    )
    end_run(run_dir, args.handover)
    return 0


def _int8_copy(model, metadata, train):
    from .quantization import int8_copy

    int8_tflite, metadata = int8_copy(model, metadata, train)
    info = metadata.int8
    print(f"int8 copy on the selection split: accuracy {info['selection_accuracy_int8']:.4f} "
          f"(float {info['selection_accuracy_float']:.4f}), same class as float for "
          f"{info['agreement_with_float']:.1%} of faces; " + ("stored in the model file" if int8_tflite else
          "not stored (it loses more than 1 point)"), flush=True)
    return int8_tflite, metadata


def _model_and_its_data(args):
    """(out path, loaded model, dataset, train, held-out, held-out name) for commands that rework a trained model:
    OUT defaults to MODEL; the dataset must have the model's classes."""
    from .datasets import load_dataset, train_heldout_split
    from .model_io import load_model

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
    int8_tflite, metadata = _int8_copy(loaded.model, loaded.metadata, train)
    _save_with_heldout_metrics(
        loaded.model, metadata, out, heldout, heldout_name, dataset.source,
        {**_kept_metrics(Path(args.model)), "int8": metadata.int8, "quantize_command": args.command_line},
        command=loaded.metadata.command or args.command_line, train=train, int8_tflite=int8_tflite,
    )
    return 0


def _calibrated(engine, metadata, train):
    """`metadata` with the temperature that minimises the log-loss on the model's selection split, as `engine` (the
    model at temperature 1: int8, test-time views) reads those faces. Unchanged for a model that records no
    selection split."""
    from .calibration import apply_temperature, expected_calibration_error, fit_temperature, log_loss
    from .training import model_selection_split

    try:
        _, selection = model_selection_split(metadata, train, "calibrated")
    except FerError as exc:
        print(f"not calibrated: {exc}", flush=True)
        return metadata
    probabilities = _engine_probabilities(engine, train.images[selection])
    labels = train.labels[selection]
    temperature = fit_temperature(probabilities, labels)
    calibrated = apply_temperature(probabilities, temperature)
    figures = {"temperature": temperature,
               "calibration_error_before": expected_calibration_error(probabilities, labels),
               "calibration_error": expected_calibration_error(calibrated, labels),
               "log_loss_before": log_loss(probabilities, labels), "log_loss": log_loss(calibrated, labels)}
    print(f"calibration on the selection split: temperature {temperature:.4f}; expected calibration error "
          f"{figures['calibration_error_before']:.4f} -> {figures['calibration_error']:.4f}; log-loss "
          f"{figures['log_loss_before']:.4f} -> {figures['log_loss']:.4f}", flush=True)
    return dataclasses.replace(metadata, temperature=temperature,
                               metrics={**metadata.metrics, "selection_calibration": figures})


def _save_with_heldout_metrics(model, metadata, out: Path, heldout, heldout_name: str, train_source: str,
                               metrics: dict, command: str, train, int8_tflite: bytes | None = None) -> None:
    """Calibrate on the selection split of `train`, evaluate on the held-out data (through the engine, as
    `evaluate` does), then write the model (figures and the `command` that made it in its metadata) and
    OUT.metrics.json."""
    from .calibration import apply_temperature
    from .engine import InferenceEngine
    from .evaluation import evaluate_predictions
    from .model_io import LoadedModel, save_model

    # One engine, at temperature 1, for both splits; the temperature is then applied as the engine applies it.
    plain = dataclasses.replace(metadata, temperature=1.0)
    engine = InferenceEngine(LoadedModel(model=model, metadata=plain, path=out, int8_tflite=int8_tflite))
    metadata = _calibrated(engine, metadata, train)
    probabilities = apply_temperature(_engine_probabilities(engine, heldout.images), metadata.temperature)
    report = evaluate_predictions(heldout.labels, probabilities.argmax(axis=1), heldout.classes,
                                  probabilities=probabilities)
    metadata = dataclasses.replace(
        metadata,
        training_data={**metadata.training_data, "train_data": train_source},
        metrics={**_without_heldout(metadata.metrics), "heldout_accuracy": report.accuracy,
                 "heldout_data": heldout_name, "per_class_recall": {c: v["recall"] for c, v in report.per_class.items()},
                 "heldout_macro_recall": report.macro_recall, "heldout_calibration_error": report.calibration_error},
        command=command,
    )
    save_model(model, metadata, out, int8_tflite=int8_tflite)
    write_json_atomic(out.with_suffix(".metrics.json"), {
        "heldout_data": heldout_name, "heldout": report.to_dict(), **metrics, "train_data": train_source,
        "command": command,
    })
    print(report.format_text())
    print(f"saved {out} and {out.with_suffix('.metrics.json')}")


def cmd_average(args) -> int:
    """Stochastic weight averaging of a trained model (weight_averaging.py), then its int8 copy and held-out figures."""
    from .weight_averaging import AveragingConfig, average_trained_model

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
        "selection_accuracy_by_tta"].items()) + f"; chosen {result.metadata.tta.name}", flush=True)
    int8_tflite, metadata = _int8_copy(result.model, result.metadata, train)
    _save_with_heldout_metrics(
        result.model, metadata, out, heldout, heldout_name, dataset.source,
        {"selection_accuracy": result.selection_report.accuracy, "tta": metadata.tta.name,
         "selection_metrics": metadata.metrics, "int8": metadata.int8,
         "averaged_model": {"file": Path(args.model).name, "command": loaded.metadata.command},
         "train_seconds_this_run": round(result.seconds, 1), "averaging_epochs": config.epochs},
        command=args.command_line, train=train, int8_tflite=int8_tflite,
    )
    return 0


def cmd_ensemble(args) -> int:
    from .datasets import load_dataset, train_heldout_split
    from .ensemble import build_ensemble, check_members, ensemble_metadata, selection_scores
    from .model_io import load_model
    from .tta import preset_candidates

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
    scores = selection_scores(members, ensemble, train, seed, fraction, preset_candidates(args.tta))
    print(f"selection split (seed {seed}, {fraction:.0%} of {dataset.source} train):")
    for name, member in scores.members.items():
        print(f"  {name:<28} {member['plain']:.4f}  with flip {member['flip']:.4f}")
    for name, accuracy in scores.ensemble.accuracy.items():
        print(f"  {'ensemble, tta ' + name:<28} {accuracy:.4f}")
    metadata = ensemble_metadata(members, scores)
    _save_with_heldout_metrics(ensemble, metadata, out, heldout, heldout_name, dataset.source,
                               {"selection_accuracy": metadata.metrics["selection_accuracy"], "tta": metadata.tta.name,
                                "selection_metrics": scores.to_dict(), "members": list(args.members)},
                               command=args.command_line, train=train)
    return 0


def cmd_calibrate(args) -> int:
    """Fit a trained model's temperature on its selection split; the held-out figures are measured again."""
    out, loaded, dataset, train, heldout, heldout_name = _model_and_its_data(args)
    _save_with_heldout_metrics(
        loaded.model, loaded.metadata, out, heldout, heldout_name, dataset.source,
        {**_kept_metrics(Path(args.model)), "calibrate_command": args.command_line},
        command=loaded.metadata.command or args.command_line, train=train, int8_tflite=loaded.int8_tflite,
    )
    return 0


def cmd_tta(args) -> int:
    """Choose a trained model's test-time augmentation on its selection split; its int8 copy is made again and
    checked under the new views; the held-out figures are measured again."""
    from .evaluation import evaluate_predictions
    from .preprocessing import model_input
    from .training import model_selection_split
    from .tta import choose, preset_candidates

    out, loaded, dataset, train, heldout, heldout_name = _model_and_its_data(args)
    _, selection = model_selection_split(loaded.metadata, train, "given a test-time augmentation")
    x = model_input(train.images[selection], loaded.metadata)
    choice = choose(lambda views: loaded.model.predict(views, batch_size=256, verbose=0), x, train.labels[selection],
                    preset_candidates(args.tta))
    for name, accuracy in choice.accuracy.items():
        print(f"selection split, tta {name:<24} {accuracy:.4f}")
    print(f"chosen: {choice.chosen.name}", flush=True)
    report = evaluate_predictions(train.labels[selection], choice.probabilities.argmax(axis=1), train.classes)
    superseded = ("selection_accuracy_without_flip", "selection_accuracy_with_flip")  # before selection_accuracy_by_tta
    selection_metrics = {**{k: v for k, v in _without_heldout(loaded.metadata.metrics).items() if k not in superseded},
                         "selection_accuracy": report.accuracy, "selection_accuracy_by_tta": choice.accuracy}
    metadata = dataclasses.replace(loaded.metadata, flip_tta=choice.chosen.flip,
                                   tta_rotations=choice.chosen.rotations, metrics=selection_metrics)
    int8_tflite = None
    if loaded.metadata.int8:
        int8_tflite, metadata = _int8_copy(loaded.model, metadata, train)
    _save_with_heldout_metrics(
        loaded.model, metadata, out, heldout, heldout_name, dataset.source,
        {**{k: v for k, v in _kept_metrics(Path(args.model)).items() if k != "flip_tta"},
         "selection_accuracy": report.accuracy, "tta": choice.chosen.name, "selection_metrics": selection_metrics,
         "int8": metadata.int8, "tta_command": args.command_line},
        command=loaded.metadata.command or args.command_line, train=train, int8_tflite=int8_tflite,
    )
    return 0


HELDOUT_METRICS = ("heldout_accuracy", "heldout_data", "per_class_recall", "heldout_macro_recall",
                   "heldout_calibration_error")


def _without_heldout(metrics: dict) -> dict:
    """A model's metrics less its held-out figures (replaced whenever the model is evaluated and saved again)."""
    return {k: v for k, v in metrics.items() if k not in HELDOUT_METRICS}


def _kept_metrics(model_path: Path) -> dict:
    """The metrics file beside a model, less what a new held-out evaluation replaces."""
    metrics_file = model_path.with_suffix(".metrics.json")
    try:
        old = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    except ValueError:
        old = {}
    return {k: v for k, v in old.items() if k not in ("heldout_data", "heldout", "train_data", "command")}


def _annotated_path(out_dir: Path, image_path: Path, used: set[str]) -> Path:
    name = f"{image_path.stem}_annotated.png"
    n = 2
    while name in used:  # two inputs with the same stem from different folders
        name = f"{image_path.stem}_annotated_{n}.png"
        n += 1
    used.add(name)
    return out_dir / name


def _write_image_atomic(path: Path, image) -> None:
    import cv2

    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise FerError(f"could not encode {path.name}")
    write_bytes_atomic(path, encoded.tobytes())


def _face_dict(face) -> dict:
    return {
        "box": list(face.box),
        "label": face.label,
        "confidence": round(face.confidence, 6),
        "scores": {k: round(v, 6) for k, v in face.scores.items()},
    }


def cmd_predict(args) -> int:
    from .detection import still_image_options
    from .drawing import draw_faces
    from .images import read_image
    from .recognizer import EmotionRecognizer

    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise FerError(f"--out {out_dir} is a file; give a folder for the annotated images.")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FerError(f"--out {out_dir}: the folder cannot be created ({exc.strerror}).") from None
    recognizer = EmotionRecognizer(detector=still_image_options(args.detector), model=args.model)
    results, failed, used_names = [], 0, set()
    for image_arg in args.images:
        path = Path(image_arg)
        try:
            frame = read_image(path)
        except FerError as exc:
            failed += 1
            results.append({"image": image_arg, "error": str(exc)})
            if not args.json:
                print(f"{image_arg}: error: {exc}", file=sys.stderr)
            continue
        faces = recognizer.analyze(frame)
        entry = {"image": image_arg, "faces": [_face_dict(f) for f in faces]}
        if out_dir is not None:
            target = _annotated_path(out_dir, path, used_names)
            _write_image_atomic(target, draw_faces(frame, faces))
            entry["annotated"] = str(target)
        results.append(entry)
        if not args.json:
            if not faces:
                print(f"{image_arg}: no face found")
            for i, face in enumerate(faces, start=1):
                others = ", ".join(f"{k} {v:.2f}" for k, v in sorted(face.scores.items(), key=lambda kv: -kv[1]))
                print(f"{image_arg}: face {i} at {tuple(face.box)}: {face.label} {face.confidence:.2f} ({others})")
    recognizer.close()
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def _engine_probabilities(engine, faces_gray, batch_size: int = 256):
    """Class probabilities (N, K) of grayscale dataset faces, as the engine runs them (int8, test-time views)."""
    import numpy as np

    from .preprocessing import model_input

    x = model_input(faces_gray, engine.metadata)
    if not len(x):
        return np.zeros((0, len(engine.metadata.classes)), dtype=np.float32)
    return np.concatenate([engine.predict(x[start : start + batch_size]) for start in range(0, len(x), batch_size)])


def cmd_evaluate(args) -> int:
    from .datasets import load_class_folders
    from .evaluation import evaluate_predictions
    from .recognizer import get_engine

    if args.batch_size < 1:
        raise FerError(f"--batch-size must be at least 1, got {args.batch_size}.")
    engine = get_engine(args.model)
    meta = engine.metadata
    height, width = meta.input_size
    data = load_class_folders(args.data_dir, size=(width, height), classes=meta.classes)
    probabilities = _engine_probabilities(engine, data.images, args.batch_size)
    report = evaluate_predictions(data.labels, probabilities.argmax(axis=1), meta.classes, skipped=data.skipped_folders,
                                  probabilities=probabilities)
    if args.json:
        out = report.to_dict()
        print(json.dumps({k: out[k] for k in ("accuracy", "macro_recall", "calibration_error", "n", "per_class",
                                              "confusion", "classes", "skipped")}, indent=2))
    else:
        print(f"model {engine.loaded.path} on {args.data_dir}")
        print(report.format_text())
        if data.unreadable_files:
            print(f"{len(data.unreadable_files)} unreadable image(s) ignored, e.g. {data.unreadable_files[0]}")
    return 0


def _faces_to_compare_on(args, loaded_models):
    """(faces, labels, description) for compare-models: the dataset's held-out part, or the selection split that
    both models recorded (FerError if they recorded different ones)."""
    from .datasets import load_dataset, train_heldout_split
    from .training import model_selection_split

    first = loaded_models[0].metadata
    for other in loaded_models[1:]:
        if tuple(other.metadata.classes) != tuple(first.classes) or other.metadata.input_size != first.input_size:
            raise FerError("The two models differ in their classes or input size, so they cannot be compared face "
                           "by face.")
    height, width = first.input_size
    dataset = load_dataset(args.data, size=(height, width), cache_dir=args.cache_dir)
    train, heldout, heldout_name = train_heldout_split(dataset)
    if tuple(train.classes) != tuple(first.classes):
        raise FerError(f"The dataset's classes {list(train.classes)} differ from the models' {list(first.classes)}.")
    if args.split == "heldout":
        return heldout.images, heldout.labels, f"{heldout_name}, n={len(heldout)}"
    import numpy as np

    splits = [model_selection_split(m.metadata, train, "compared on its selection split")[1] for m in loaded_models]
    if any(not np.array_equal(splits[0], s) for s in splits[1:]):
        raise FerError("The two models were trained with different selection splits; compare them on --split heldout.")
    return train.images[splits[0]], train.labels[splits[0]], f"selection split of {dataset.source}, n={len(splits[0])}"


def cmd_compare_models(args) -> int:
    from .paired_comparison import compare_predictions
    from .recognizer import get_engine

    engines = [get_engine(path) for path in (args.model_a, args.model_b)]
    faces, labels, description = _faces_to_compare_on(args, [e.loaded for e in engines])
    result = compare_predictions(labels, *(_engine_probabilities(engine, faces) for engine in engines))
    if args.json:
        print(json.dumps({"faces": description, "model_a": args.model_a, "model_b": args.model_b,
                          **result.to_dict()}, indent=2))
    else:
        print(f"on the {description}:")
        print(result.format_text(Path(args.model_a).name, Path(args.model_b).name))
    return 0


def _experiment_config(args, archs) -> ExperimentConfig:
    from .experiments import ARCHITECTURES, ExperimentConfig

    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown or not archs:
        raise FerError(f"Unknown architecture {', '.join(unknown) or '(none)'}; choose from {', '.join(ARCHITECTURES)}.")
    pca_variance, pca_components = None, None
    if args.pca is not None:
        if 0 < args.pca <= 1:
            pca_variance = args.pca
        elif args.pca >= 1 and float(args.pca).is_integer():
            pca_components = int(args.pca)
        else:
            raise FerError(f"--pca {args.pca}: give a fraction of variance in (0, 1] or a whole number of components.")
    return ExperimentConfig(archs=tuple(archs), epochs=args.epochs, batch_size=args.batch_size,
                            learning_rate=1e-3 if args.learning_rate is None else args.learning_rate,
                            seed=args.seed, augment=not args.no_augment,
                            pca_variance=pca_variance, pca_components=pca_components,
                            transfer_base=args.transfer_base, transfer_weights=args.transfer_weights)


def _run_in_foreground(data: str, config, out_dir: Path, name: str, model_names=None, models_dir=None) -> dict:
    from .jobs import execute_run, prepare_run_dir, read_json

    prepare_run_dir(out_dir, data, config, models_dir or out_dir, name)
    if model_names:
        request = read_json(out_dir / "request.json")
        write_json_atomic(out_dir / "request.json", {**request, "model_names": model_names})
    execute_run(out_dir, echo=lambda line: print(line, flush=True))
    status = read_json(out_dir / "status.json") or {}
    if status.get("state") != "finished":
        raise FerError(status.get("error") or f"Training ended in state {status.get('state')}.")
    return status


def _train_with_experiment(args) -> int:
    """rnn, transfer, or any model with PCA: fixed epochs, held-out accuracy measured after every epoch."""
    config = _experiment_config(args, [args.arch])
    out = Path(args.out)
    if out.suffix != ".keras":
        raise FerError(f"--out {out} must end in .keras.")
    run_dir = out.with_name(out.stem + "-run")
    status = _run_in_foreground(args.data, config, run_dir, f"{args.arch} on {Path(args.data).name}",
                                model_names={args.arch: out.name}, models_dir=out.parent)
    result = status["results"][args.arch]
    print(f"{args.arch}: held-out accuracy {result['heldout_accuracy']:.4f} on {status.get('heldout')} "
          f"(n={status.get('n_heldout')}); saved {result['model_path']}; history and chart in {run_dir}")
    return 0


def cmd_compare(args) -> int:
    _check_training_numbers(args)
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    config = _experiment_config(args, archs)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise FerError(f"--out {out_dir} is a file; give a folder for the comparison.")
    status = _run_in_foreground(args.data, config, out_dir, f"{'+'.join(archs)} on {Path(args.data).name}")
    print(f"held-out data: {status.get('heldout')} (n={status.get('n_heldout')})")
    print(f"{'model':<10} {'held-out acc':>12} {'seconds':>8}  saved")
    for arch, result in status["results"].items():
        print(f"{arch:<10} {result['heldout_accuracy']:>12.4f} {result['seconds']:>8.0f}  {result['model_path']}")
    print(f"wrote {out_dir / 'comparison.png'}, {out_dir / 'history.json'}, {out_dir / 'history.csv'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer-realtime", description="Facial-expression recognition.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="find faces in images and classify their expressions")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    # Stills default to haar: slower but it also finds small and profile faces, e.g. in group photos.
    p.add_argument("--detector", default="haar", choices=["haar", "mediapipe"])
    p.add_argument("--model", default=None, help="a fer-realtime .keras file (default: the shipped model)")
    p.add_argument("--json", action="store_true", help="print one JSON list, one object per image")
    p.add_argument("--out", default=None, metavar="DIR", help="write annotated copies into DIR")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="accuracy of a model on pre-cropped faces in class folders")
    p.add_argument("data_dir", metavar="DATA_DIR")
    p.add_argument("--model", default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="train a model on a dataset of class folders")
    p.add_argument("--data", required=True, help="folder of class folders, or a root with train/ and val/")
    p.add_argument("--arch", default="cnn", choices=["cnn", "rnn", "transfer"])
    p.add_argument("--recipe", default="v2", choices=["v1", "v2", "v3", "v4"],
                   help="cnn: the training recipe (fer_realtime.training.RECIPES); v1 made the first shipped model")
    _add_training_options(p, epochs=40)
    p.add_argument("--init-seed", type=int, default=None,
                   help="cnn: seed of the initial weights, augmentation and shuffling (default: --seed); the split "
                        "stays --seed's, so runs differing only here are ensemble members")
    p.add_argument("--out", default="models/model.keras")
    p.add_argument("--checkpoints", default=None, metavar="RUN_DIR",
                   help="cnn: folder of the run's state, replaced every epoch (default: $FER_REALTIME_RUNS/OUT-NAME, "
                        "~/.cache/fer-realtime/runs/ without it); a run left there with the same options continues")
    p.add_argument("--handover", default=None, metavar="FILE",
                   help="cnn: also write the run's state in compact form to FILE every epoch (to commit it, so a "
                        "fresh clone can continue the run); removed when the run ends")
    p.add_argument("--resume", action="store_true",
                   help="cnn: continue the run from RUN_DIR or --handover FILE, whichever is further; an error if "
                        "there is neither")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "fer-realtime"))
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("quantize", help="store an int8 copy of a trained model in its file (about 4x faster on CPUs)")
    _add_rework_arguments(p, data_help="the dataset it was trained on: calibration and selection split")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("calibrate", help="fit the temperature that makes a model's confidence mean what it says")
    _add_rework_arguments(p, data_help="the dataset it was trained on: its selection split fits the temperature")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("average", help="train a model further and average its weights over the epochs (SWA)")
    _add_rework_arguments(p, data_help="the dataset it was trained on (its recorded split is kept)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--learning-rate", type=float, default=2e-4, help="at the start of each epoch's cosine cycle")
    p.add_argument("--seed", type=int, default=4321, help="of the augmentation and shuffling of the further training")
    p.add_argument("--checkpoints", default=None, help="checkpoint folder (resumes an interrupted run)")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("ensemble", help="average trained models into one model file (one batched call per frame)")
    p.add_argument("members", nargs="+", metavar="MODEL", help="fer-realtime .keras files trained on the same split")
    p.add_argument("--data", required=True, help="the training dataset: its selection split scores the ensemble")
    _add_tta_option(p)
    p.add_argument("--out", required=True, help="the ensemble's .keras file")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "fer-realtime"))
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("tta", help="choose a trained model's test-time augmentation on its selection split")
    _add_rework_arguments(p, data_help="the dataset it was trained on: its selection split decides")
    _add_tta_option(p)
    p.set_defaults(func=cmd_tta)

    p = sub.add_parser("compare-models", help="two trained models on the same faces: accuracies and McNemar's test")
    p.add_argument("model_a", metavar="MODEL_A", help="a fer-realtime .keras file")
    p.add_argument("model_b", metavar="MODEL_B", help="a fer-realtime .keras file")
    p.add_argument("--data", required=True, help="a dataset of the models' classes")
    p.add_argument("--split", default="heldout", choices=["heldout", "selection"],
                   help="the dataset's held-out part, or the selection split of train that both models recorded")
    p.add_argument("--json", action="store_true")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "fer-realtime"))
    p.set_defaults(func=cmd_compare_models)

    p = sub.add_parser("compare", help="train several architectures on the same data and chart them")
    p.add_argument("--data", required=True, help="dataset: class folders, a FER2013 CSV, or an X.npy/Y.npy folder")
    p.add_argument("--archs", default="cnn,rnn", help="comma-separated: cnn, rnn, transfer")
    _add_training_options(p, epochs=10)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the models, chart PNG and history")
    p.set_defaults(func=cmd_compare)

    from .cli_media import add_media_commands

    add_media_commands(sub)
    return parser


def _add_rework_arguments(p, data_help: str) -> None:
    """The arguments of commands that rework a trained model in place or into --out (_model_and_its_data)."""
    p.add_argument("model", metavar="MODEL", help="a fer-realtime .keras file")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--out", default=None, help="write here instead of replacing MODEL")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "fer-realtime"))


def _add_tta_option(p) -> None:
    from .tta import PRESETS

    p.add_argument("--tta", default="auto", choices=["auto", *PRESETS],
                   help="test-time augmentation: flip averages each face with its mirror image, flip+rotate also"
                        " with the face turned by ±8°; auto: whichever scores highest on the selection split")


def _add_training_options(p, epochs: int) -> None:
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=None, help="peak learning rate (default: the recipe's, "
                   "1e-3 for v1-v3 and the other architectures)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--pca", type=float, default=None, metavar="VAR",
                   help="PCA before the models: a fraction of variance to keep (0.95) or a number of components")
    p.add_argument("--no-augment", action="store_true", help="no random flips, shifts, rotations and zoom")
    p.add_argument("--transfer-base", default="fer",
                   help="transfer: 'fer' (the shipped model) or a keras.applications name with --transfer-weights")
    p.add_argument("--transfer-weights", default=None, help="local ImageNet weights file for a keras.applications base")


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = "python -m fer_realtime " + shlex.join(argv)  # recorded with the models it makes
    try:
        return args.func(args)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder that cannot be read or written (permissions, disk full)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
