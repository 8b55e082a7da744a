"""Command-line interface: `python -m fer_realtime {predict,evaluate,train}` (also installed as `fer-realtime`)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

from .errors import FerError


def _write_json_atomic(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _split_folders(root: Path) -> tuple[Path, Path | None]:
    """A dataset root with train/ and val/ (or test/) sub-folders, or a plain folder of class folders."""
    if (root / "train").is_dir():
        for name in ("val", "validation", "test"):
            if (root / name).is_dir():
                return root / "train", root / name
        return root / "train", None
    return root, None


def cmd_train(args) -> int:
    from .datasets import load_class_folders_cached, stratified_split
    from .evaluation import evaluate_predictions
    from .model_io import save_model
    from .preprocessing import normalize
    from .training import TrainConfig, predict_classes, train_classifier

    root = Path(args.data)
    train_dir, heldout_dir = _split_folders(root)
    cache = Path(args.cache_dir)
    train = load_class_folders_cached(train_dir, cache)
    config = TrainConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                         learning_rate=args.learning_rate)
    out = Path(args.out)
    checkpoints = Path(args.checkpoints) if args.checkpoints else out.with_suffix("").with_name(out.stem + "-checkpoints")
    print(f"training {config.arch} on {len(train)} images from {train_dir}; checkpoints in {checkpoints}", flush=True)
    result = train_classifier(train, config, checkpoints, verbose=2 if args.verbose else 0)

    if heldout_dir is not None:
        heldout = load_class_folders_cached(heldout_dir, cache)
        heldout_name = str(heldout_dir)
    else:  # no split of its own: report on a stratified held-out part (excluded from the selection split too)
        raise FerError(f"{root} has no val/ or test/ folder; held-out data is needed to report accuracy.")
    x_held = normalize(heldout.images, result.metadata.preprocessing)
    report = evaluate_predictions(heldout.labels, predict_classes(result.model, x_held), heldout.classes)
    command = "python -m fer_realtime " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    metrics = {
        "heldout_data": heldout_name,
        "heldout": report.to_dict(),
        "selection_accuracy": result.selection_report.accuracy,
        "train_data": str(train_dir),
        "train_seconds_this_run": round(result.seconds, 1),
        "epochs": config.epochs,
        "command": command,
    }
    metadata = result.metadata
    metadata = type(metadata)(
        classes=metadata.classes, input_size=metadata.input_size, preprocessing=metadata.preprocessing,
        architecture=metadata.architecture,
        training_data={**metadata.training_data, "train_data": str(train_dir)},
        metrics={"heldout_accuracy": report.accuracy, "heldout_data": heldout_name,
                 "per_class_recall": {c: v["recall"] for c, v in report.per_class.items()},
                 "selection_accuracy": result.selection_report.accuracy},
        command=command,
    )
    save_model(result.model, metadata, out)
    _write_json_atomic(out.with_suffix(".metrics.json"), metrics)
    print(report.format_text())
    print(f"saved {out} and {out.with_suffix('.metrics.json')}")
    return 0


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(encoded.tobytes())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _face_dict(face) -> dict:
    return {
        "box": list(face.box),
        "label": face.label,
        "confidence": round(face.confidence, 6),
        "scores": {k: round(v, 6) for k, v in face.scores.items()},
    }


def cmd_predict(args) -> int:
    from .drawing import draw_faces
    from .images import read_image
    from .recognizer import EmotionRecognizer

    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise FerError(f"--out {out_dir} is a file; give a folder for the annotated images.")
        out_dir.mkdir(parents=True, exist_ok=True)
    recognizer = EmotionRecognizer(detector=args.detector, model=args.model)
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


def cmd_evaluate(args) -> int:
    from .datasets import load_class_folders
    from .evaluation import evaluate_predictions
    from .preprocessing import normalize
    from .recognizer import get_engine

    engine = get_engine(args.model)
    meta = engine.metadata
    height, width = meta.input_size
    data = load_class_folders(args.data_dir, size=(width, height), classes=meta.classes)
    batch = normalize(data.images, meta.preprocessing)
    if meta.channels == 3:
        batch = batch.repeat(3, axis=-1)
    predictions = []
    for start in range(0, len(batch), args.batch_size):
        predictions.append(engine.predict(batch[start : start + args.batch_size]).argmax(axis=1))
    import numpy as np

    report = evaluate_predictions(data.labels, np.concatenate(predictions), meta.classes, skipped=data.skipped_folders)
    if args.json:
        out = report.to_dict()
        print(json.dumps({k: out[k] for k in ("accuracy", "n", "per_class", "confusion", "classes", "skipped")}, indent=2))
    else:
        print(f"model {engine.loaded.path} on {args.data_dir}")
        print(report.format_text())
        if data.unreadable_files:
            print(f"{len(data.unreadable_files)} unreadable image(s) ignored, e.g. {data.unreadable_files[0]}")
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
    p.add_argument("--arch", default="cnn", choices=["cnn"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", default="models/model.keras")
    p.add_argument("--checkpoints", default=None, help="checkpoint folder (resumes an interrupted run)")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "fer-realtime"))
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
