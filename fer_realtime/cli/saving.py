"""What the commands that make or rework a model share: its int8 copy, its temperature fitted on the selection
split, and its held-out figures measured through the engine before the model file and its metrics file are written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..core.atomic import write_json_atomic
from ..core.errors import FerError
from ..core.model_file import LoadedModel, save_model
from ..evaluation.metrics import evaluate_predictions
from ..inference.calibration import apply_temperature, expected_calibration_error, fit_temperature, log_loss
from ..inference.engine import InferenceEngine, dataset_probabilities
from ..training.quantization import int8_copy
from ..training.trainer import model_selection_split


def int8_copy_reported(model, metadata, train):
    int8_tflite, metadata = int8_copy(model, metadata, train)
    info = metadata.int8
    print(f"int8 copy on the selection split: accuracy {info['selection_accuracy_int8']:.4f} "
          f"(float {info['selection_accuracy_float']:.4f}), same class as float for "
          f"{info['agreement_with_float']:.1%} of faces; " + ("stored in the model file" if int8_tflite else
          "not stored (it loses more than 1 point)"), flush=True)
    return int8_tflite, metadata


def calibrated(engine, metadata, train):
    """`metadata` with the temperature that minimises the log-loss on the model's selection split, as `engine` (the
    model at temperature 1: int8, test-time views) reads those faces. Unchanged for a model that records no
    selection split."""
    try:
        _, selection = model_selection_split(metadata, train, "calibrated")
    except FerError as exc:
        print(f"not calibrated: {exc}", flush=True)
        return metadata
    probabilities = dataset_probabilities(engine, train.images[selection])
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


def save_with_heldout_metrics(model, metadata, out: Path, heldout, heldout_name: str, train_source: str,
                               metrics: dict, command: str, train, int8_tflite: bytes | None = None) -> None:
    """Calibrate on the selection split of `train`, evaluate on the held-out data (through the engine, as
    `evaluate` does), then write the model (figures and the `command` that made it in its metadata) and
    OUT.metrics.json."""
    # One engine, at temperature 1, for both splits; the temperature is then applied as the engine applies it.
    plain = dataclasses.replace(metadata, temperature=1.0)
    engine = InferenceEngine(LoadedModel(model=model, metadata=plain, path=out, int8_tflite=int8_tflite))
    metadata = calibrated(engine, metadata, train)
    probabilities = apply_temperature(dataset_probabilities(engine, heldout.images), metadata.temperature)
    report = evaluate_predictions(heldout.labels, probabilities.argmax(axis=1), heldout.classes,
                                  probabilities=probabilities)
    metadata = dataclasses.replace(
        metadata,
        training_data={**metadata.training_data, "train_data": train_source},
        metrics={**without_heldout(metadata.metrics), "heldout_accuracy": report.accuracy,
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


HELDOUT_METRICS = ("heldout_accuracy", "heldout_data", "per_class_recall", "heldout_macro_recall",
                   "heldout_calibration_error")


def without_heldout(metrics: dict) -> dict:
    """A model's metrics less its held-out figures (replaced whenever the model is evaluated and saved again)."""
    return {k: v for k, v in metrics.items() if k not in HELDOUT_METRICS}


def kept_metrics(model_path: Path) -> dict:
    """The metrics file beside a model, less what a new held-out evaluation replaces."""
    metrics_file = model_path.with_suffix(".metrics.json")
    try:
        old = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    except ValueError:
        old = {}
    return {k: v for k, v in old.items() if k not in ("heldout_data", "heldout", "train_data", "command")}
