"""fer-realtime model files: a Keras 3 `.keras` archive with our metadata stored inside it.

The metadata lives in an extra zip entry (`fer_realtime.json`) that Keras ignores, so one file carries both
the network and what is needed to use it: class names in order, input size, preprocessing, training data
and held-out accuracy. Files are loaded in Keras safe mode (no arbitrary code from Lambda layers).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError
from .labels import EMOTIONS

METADATA_ENTRY = "fer_realtime.json"
INT8_ENTRY = "fer_realtime.int8.tflite"  # training/quantization.py makes it
FORMAT = "fer-realtime-model/1"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
SHIPPED_MODEL_PATH = PACKAGE_DIR.parent / "weights" / "fer_cnn.keras"
# Limits of the metadata: the temperature calibration fits (inference/calibration.py) and the test-time
# rotations (inference/tta.py).
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
MAX_ROTATION = 45.0  # degrees


def default_model_path() -> Path:
    """The shipped model, unless the environment variable FER_REALTIME_MODEL names another file."""
    return Path(os.environ.get("FER_REALTIME_MODEL") or SHIPPED_MODEL_PATH)


MAX_CROP_MARGIN = 0.5


@dataclass(frozen=True)
class Preprocessing:
    """How a detected face becomes model input: crop with margin, grayscale, resize, x * scale + offset."""

    color: str = "grayscale"
    crop_margin: float = 0.1  # fraction of the box's width/height added on every side before cropping
    # Where a detector's boxes want another margin: (detector name, margin) pairs, chosen by `framing`. FER2013's
    # faces were cut at about the box of OpenCV's frontal face detector (haar), so its boxes want none; BlazeFace's
    # are tighter and want some.
    detector_margins: tuple[tuple[str, float], ...] = ()
    # Where a detector's boxes want a margin that depends on their size: (detector name, ((box width in px,
    # margin), ...)) with widths ascending, chosen by `framing`. Between two widths the margin is interpolated,
    # beyond the ends it is the end's. BlazeFace's boxes of small faces are the least exact and want more room.
    detector_margins_by_width: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = ()
    interpolation: str = "area"
    scale: float = 1.0 / 255.0
    offset: float = 0.0

    def __post_init__(self):
        margins = tuple((str(name), float(margin)) for name, margin in self.detector_margins)
        curves = tuple((str(name), tuple((float(width), float(margin)) for width, margin in points))
                       for name, points in self.detector_margins_by_width)
        curve_margins = [margin for _, points in curves for _, margin in points]
        if any(not 0.0 <= margin <= MAX_CROP_MARGIN
               for margin in (self.crop_margin, *(m for _, m in margins), *curve_margins)):
            raise ValueError(f"crop margins beyond [0, {MAX_CROP_MARGIN}]")
        for name, points in curves:
            widths = [width for width, _ in points]
            if not points or widths[0] <= 0 or any(b <= a for a, b in zip(widths, widths[1:])):
                raise ValueError(f"the crop margins by box width of {name!r} need ascending positive widths")
        object.__setattr__(self, "detector_margins", margins)
        object.__setattr__(self, "detector_margins_by_width", curves)

    def margin_for(self, detector: str | None = None, box_width: float | None = None) -> float:
        """The crop margin for a box of the named detector: by the box's width where the detector has margins by
        width, else the detector's own margin, else `crop_margin`."""
        if box_width is None:
            return dict(self.detector_margins).get(detector, self.crop_margin)
        return self.margins_for(detector, [box_width])[0]

    def margins_for(self, detector: str | None, box_widths) -> list[float]:
        """`margin_for` of each of a frame's boxes, the detector's margins looked up once."""
        points = dict(self.detector_margins_by_width).get(detector)
        if not points:
            return [dict(self.detector_margins).get(detector, self.crop_margin)] * len(box_widths)
        widths, margins = zip(*points)
        return np.interp(box_widths, widths, margins).tolist()


@dataclass(frozen=True)
class ModelMetadata:
    classes: tuple[str, ...] = EMOTIONS
    input_size: tuple[int, int] = (48, 48)  # (height, width)
    preprocessing: Preprocessing = Preprocessing()
    architecture: str = "cnn"
    flip_tta: bool = False  # the engine averages the predictions for each face and its mirror image
    tta_rotations: tuple[float, ...] = ()  # ...and for the face turned by these angles (degrees); see inference/tta.py
    tta_shifts: tuple[tuple[int, int], ...] = ()  # ...and for the face moved by these (dy, dx) pixels
    temperature: float = 1.0  # the averaged probabilities p become p^(1/T), renormalised (inference/calibration.py)
    # The int8 TFLite copy stored in the file (INT8_ENTRY): weights digest, calibration, scores.
    int8: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
            classes = tuple(str(c) for c in data["classes"])
            height, width = (int(v) for v in data["input_size"])
            prep = Preprocessing(**data.get("preprocessing", {}))
            if prep.color not in ("grayscale", "rgb"):
                raise ValueError(f"unknown color mode {prep.color!r}")
            if not classes or height < 8 or width < 8:
                raise ValueError("empty class list or input size below 8 pixels")
            return cls(
                classes=classes,
                input_size=(height, width),
                preprocessing=prep,
                architecture=str(data.get("architecture", "")),
                flip_tta=bool(data.get("flip_tta", False)),
                tta_rotations=_rotations(data.get("tta_rotations", ())),
                tta_shifts=_shifts(data.get("tta_shifts", ()), (height, width)),
                temperature=_temperature(data.get("temperature", 1.0)),
                int8=dict(data.get("int8") or {}),
                training_data=dict(data.get("training_data", {})),
                metrics=dict(data.get("metrics", {})),
                command=str(data.get("command", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"The model's fer-realtime metadata is invalid ({exc}).") from exc

    @property
    def channels(self) -> int:
        return 1 if self.preprocessing.color == "grayscale" else 3


def _temperature(value) -> float:
    temperature = float(value)
    if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
        raise ValueError(f"temperature {temperature} outside [{MIN_TEMPERATURE}, {MAX_TEMPERATURE}]")
    return temperature


def _rotations(values) -> tuple[float, ...]:
    rotations = tuple(float(v) for v in values)
    if any(not abs(a) <= MAX_ROTATION for a in rotations):
        raise ValueError(f"test-time rotations {list(rotations)} beyond ±{MAX_ROTATION:g} degrees")
    return rotations


def _shifts(values, input_size: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    shifts = tuple((int(dy), int(dx)) for dy, dx in values)
    limit = min(input_size) // 4
    if any(abs(dy) > limit or abs(dx) > limit for dy, dx in shifts):
        raise ValueError(f"test-time shifts {[list(s) for s in shifts]} beyond ±{limit} pixels")
    return shifts


@dataclass
class LoadedModel:
    model: Any  # keras.Model
    metadata: ModelMetadata
    path: Path
    int8_tflite: bytes | None = None  # the file's int8 copy of `model`, if it has one made from these weights


def save_model(model, metadata: ModelMetadata, path: str | os.PathLike, int8_tflite: bytes | None = None) -> Path:
    """Write model + metadata (+ its int8 TFLite copy) to `path` atomically (temporary file, then rename)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model files end in .keras, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".keras")
    os.close(fd)
    try:
        if getattr(model, "optimizer", None) is not None:
            model = _without_training_state(model)
        model.save(tmp_name)
        with zipfile.ZipFile(tmp_name, "a") as archive:
            archive.writestr(METADATA_ENTRY, metadata.to_json())
            if int8_tflite is not None:
                archive.writestr(INT8_ENTRY, int8_tflite)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _without_training_state(model):
    """An uncompiled copy with the same weights: the file carries no optimizer state (a third of the size)."""
    copy = type(model).from_config(model.get_config())  # clone_model would compile the copy like the original
    copy.set_weights(model.get_weights())
    return copy


def read_metadata(path: str | os.PathLike) -> ModelMetadata:
    """Read only the metadata of a model file (cheap: no TensorFlow)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"Model file {path} does not exist.")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder, not a .keras model file.")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path.name} is not a Keras .keras model file (not a complete zip archive).")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise ModelLoadError(f"{path.name} is a zip archive but not a Keras model (no config.json).")
            if METADATA_ENTRY not in names:
                raise ModelLoadError(
                    f"{path.name} is a Keras model but not a fer-realtime model (no {METADATA_ENTRY} metadata)."
                )
            data = json.loads(archive.read(METADATA_ENTRY))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:  # ValueError: JSON or text-encoding errors
        raise ModelLoadError(f"{path.name} could not be read as a model file ({exc}).") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path.name} has malformed fer-realtime metadata.")
    try:
        return ModelMetadata.from_dict(data)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path.name}: {exc}") from exc.__cause__


def load_model(path: str | os.PathLike | None = None) -> LoadedModel:
    """Load a fer-realtime model in Keras safe mode and check it matches its metadata."""
    import keras

    path = Path(path) if path is not None else default_model_path()
    metadata = read_metadata(path)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types (ValueError, TypeError, OSError) for bad archives
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "safe_mode" in reason or "Lambda" in reason:
            reason = "it contains a Lambda layer or other code that safe mode refuses to run"
        raise ModelLoadError(f"{path.name} could not be loaded as a Keras model: {reason[:300].rstrip('.')}.") from exc
    height, width = metadata.input_size
    expected_in = (height, width, metadata.channels)
    in_shape = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    out_shape = model.output_shape
    if in_shape != expected_in:
        raise ModelLoadError(f"{path.name}: the network takes input {in_shape}, but its metadata says {expected_in}.")
    if isinstance(out_shape, list) or out_shape[-1] != len(metadata.classes):
        raise ModelLoadError(
            f"{path.name}: the network outputs {out_shape} scores but its metadata names {len(metadata.classes)} classes."
        )
    return LoadedModel(model=model, metadata=metadata, path=path, int8_tflite=_int8_copy(path, model, metadata))


def _int8_copy(path: Path, model, metadata: ModelMetadata) -> bytes | None:
    """The file's int8 copy, if it was made from exactly these weights (else the engine converts the float net)."""
    digest = metadata.int8.get("weights_digest")
    if not digest or digest != weights_digest(model):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(INT8_ENTRY) if INT8_ENTRY in archive.namelist() else None
    except (zipfile.BadZipFile, OSError):
        return None


def weights_digest(model) -> str:
    """sha256 over the network's weights, in order: ties a converted copy to these exact weights."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        array = np.ascontiguousarray(weight)
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
