"""Fixture builders shared by the tests (plain functions; everything is generated, nothing committed)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np

# The astronaut's face in skimage.data.astronaut() (512x512), measured by hand: x, y, w, h.
ASTRONAUT_FACE = (177, 66, 95, 95)


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def encode(img, fmt: str, **kw) -> bytes:
    """A PIL image encoded as `fmt` (PNG, JPEG, ...)."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A tiny but well-formed PNG whose header claims width x height pixels (a decompression bomb's header)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def box_iou(a, b) -> float:
    from fer_realtime.faces.boxes import box_iou as iou

    return iou(tuple(a), tuple(b))


def tiny_model(num_classes: int = 7, input_size=(48, 48)):
    """A small untrained network of our CNN architecture (fast to build; for plumbing tests)."""
    from fer_realtime.training.architectures import CNNConfig, build_cnn

    return build_cnn(
        CNNConfig(input_shape=(*input_size, 1), num_classes=num_classes, stage_filters=(4, 8), convs_per_stage=(1, 1))
    )


def fitted_tiny_model(data_root: Path, seed: int, epochs: int):
    """A tiny network fitted briefly on the training part of the dataset at `data_root` (all of it: the tests
    that use it record a selection split in the metadata but need no honest selection figures)."""
    import keras

    from fer_realtime.core.model_file import Preprocessing
    from fer_realtime.core.preprocessing import normalize
    from fer_realtime.data.loader import load_dataset

    keras.utils.set_random_seed(seed)
    train = load_dataset(data_root).train
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(normalize(train.images, Preprocessing()), train.labels, epochs=epochs, batch_size=16, verbose=0)
    return model


def save_tiny_model(path: Path, num_classes: int = 7) -> Path:
    from fer_realtime.core.labels import EMOTIONS
    from fer_realtime.core.model_file import ModelMetadata, save_model

    classes = EMOTIONS if num_classes == 7 else tuple(f"class{i}" for i in range(num_classes))
    return save_model(tiny_model(num_classes), ModelMetadata(classes=classes), path)


def write_class_folders(root: Path, per_class: dict[str, int], size=(48, 48), seed: int = 0) -> Path:
    """Class folders of synthetic faces: each class a distinct, learnable pattern plus noise."""
    rng = np.random.default_rng(seed)
    face = cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY)
    x, y, w, h = ASTRONAUT_FACE
    base = cv2.resize(face[y : y + h, x : x + w], size, interpolation=cv2.INTER_AREA).astype(np.float32)
    for index, (name, count) in enumerate(per_class.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img = base.copy()
            band = (index * size[1]) // max(1, len(per_class))
            img[band : band + max(2, size[1] // 8), :] = 255 if index % 2 else 0
            img += rng.normal(0, 8, img.shape)
            cv2.imwrite(str(folder / f"{name}_{i:03d}.png"), np.clip(img, 0, 255).astype(np.uint8))
    return root


def write_train_val(root: Path, train_per_class: int, val_per_class: int = 3) -> Path:
    """A dataset root with train/ and val/ class folders of synthetic faces for all seven emotions."""
    from fer_realtime.core.labels import EMOTIONS

    write_class_folders(root / "train", {name: train_per_class for name in EMOTIONS}, seed=1)
    write_class_folders(root / "val", {name: val_per_class for name in EMOTIONS}, seed=2)
    return root


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive (in memory) holding `members` (name -> content)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


class Interrupted(Exception):
    """Raised by interrupt_before_epoch: a training run cut off as if its machine went away."""


def interrupt_before_epoch(n: int):
    """A Keras callback that interrupts training when epoch `n` (0-based) begins."""
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == n:
                raise Interrupted()

    return Interrupt()
