"""Bad input at every entry point gets ONE clear message and no traceback; valid but unusual input works.

Entry points: the CLI (`predict`, `evaluate`, `train`, `compare`) and the library functions behind the page
(images.decode_image/read_image for the sidebar upload, data.loader.load_dataset / data.uploads.load_uploaded_dataset for the
training tab, model_io.read_metadata/load_model). Every bad input is generated here into tmp_path.
"""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from fer_realtime.cli.main import main
from fer_realtime.core import atomic, images
from fer_realtime.core.errors import DatasetError, ImageReadError, ModelLoadError
from fer_realtime.core.labels import EMOTIONS
from fer_realtime.core.model_file import ModelMetadata, load_model, read_metadata, save_model
from fer_realtime.data import class_folders, uploads
from fer_realtime.data.loader import load_dataset
from fer_realtime.data.uploads import load_uploaded_dataset
from helpers import astronaut_bgr, encode, png_header, save_tiny_model, tiny_model, write_class_folders, zip_bytes

ROOT = Path(__file__).resolve().parents[1]


def one_line(text: str, *words: str) -> str:
    """The single non-blank line of `text`, which must contain every one of `words` and no traceback."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


def sentence(message: str, *words: str) -> None:
    """A library error: one sentence on one line naming the file and the problem."""
    one_line(message, *words)
    assert message.rstrip().endswith("."), message


# ----------------------------------------------------------------------------------------------- bad image bytes


def _jpeg(size=(64, 64), seed=1) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG")


BAD_IMAGES = {  # file name -> (content, words the message must contain)
    "empty.jpg": (lambda: b"", ["empty"]),
    "truncated.jpg": (lambda: _jpeg()[: len(_jpeg()) // 3], ["damaged or truncated"]),
    "truncated.png": (lambda: encode(Image.fromarray(np.zeros((64, 64), np.uint8) + 7), "PNG")[:60],
                      ["damaged or truncated"]),
    "random.jpg": (lambda: np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
                   ["not an image"]),
    "page.jpg": (lambda: b"<!doctype html><html><head><title>404</title></head><body>Not found</body></html>",
                 ["not an image"]),
    "archive.jpg": (lambda: zip_bytes({"photo.jpg": _jpeg()}), ["not an image"]),
    "bomb.png": (lambda: png_header(100_000, 100_000), ["limit is 40 megapixels"]),
    "big.png": (lambda: png_header(8000, 8000), ["8000x8000", "limit is 40 megapixels"]),
}


@pytest.fixture()
def bad_image_files(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "bad"
    folder.mkdir()
    paths = {}
    for name, (make, _) in BAD_IMAGES.items():
        paths[name] = folder / name
        paths[name].write_bytes(make())
    paths["folder.jpg"] = folder / "folder.jpg"
    paths["folder.jpg"].mkdir()
    paths["huge.jpg"] = folder / "huge.jpg"
    with open(paths["huge.jpg"], "wb") as f:  # sparse: 1 byte over the limit, no disk used
        f.truncate(images.MAX_FILE_BYTES + 1)
    return paths


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_decode_image_and_read_image_give_one_sentence(name, tmp_path):
    make, words = BAD_IMAGES[name]
    data = make()
    with pytest.raises(ImageReadError) as info:
        decode_image_spy(data, name)
    sentence(str(info.value), name, *words)
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageReadError) as info:
        images.read_image(path)
    sentence(str(info.value), name, *words)


def decode_image_spy(data: bytes, name: str):
    """decode_image, failing the test if pixels of an image above the size limit get decoded."""
    original = ImageFile.ImageFile.load

    def load(self):
        assert self.size[0] * self.size[1] <= images.MAX_PIXELS, f"decoded a {self.size} image"
        return original(self)

    ImageFile.ImageFile.load = load
    try:
        return images.decode_image(data, name)
    finally:
        ImageFile.ImageFile.load = original


def test_bomb_headers_are_refused_before_any_decoding(monkeypatch):
    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self.size))
    for width, height in [(100_000, 100_000), (8000, 8000), (40_000, 1001)]:
        with pytest.raises(ImageReadError, match="limit is 40 megapixels"):
            images.decode_image(png_header(width, height), "bomb.png")
    assert loads == []


def test_oversized_files_name_the_limit(bad_image_files):
    with pytest.raises(ImageReadError) as info:
        images.read_image(bad_image_files["huge.jpg"])
    sentence(str(info.value), "huge.jpg", "the limit is 40 MB")
    with pytest.raises(ImageReadError) as info:
        images.decode_image(b"\xff\xd8" + bytes(images.MAX_FILE_BYTES), "upload.jpg")
    sentence(str(info.value), "upload.jpg", "the limit is 40 MB")


def test_a_folder_where_an_image_file_is_expected(bad_image_files):
    with pytest.raises(ImageReadError) as info:
        images.read_image(bad_image_files["folder.jpg"])
    sentence(str(info.value), "folder.jpg", "is a folder")


# ----------------------------------------------------------------------------------------------- unusual images


def unusual_images() -> dict[str, bytes]:
    gradient16 = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255  # red, opaque in the bottom half, transparent at the top
    rgba[8:, :, 3] = 255
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (12, 1))
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high; a white mark in the stored top-left corner
    stored[:6, :6] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    return {
        "sixteen_bit.png": cv2.imencode(".png", gradient16)[1].tobytes(),
        "rgba.png": encode(Image.fromarray(rgba, "RGBA"), "PNG"),
        "gray.png": encode(Image.fromarray(gray), "PNG"),
        "gray.jpg": encode(Image.fromarray(gray), "JPEG", quality=100),
        "one_pixel.png": encode(Image.fromarray(np.full((1, 1, 3), 200, np.uint8)), "PNG"),
        "rotated.jpg": encode(Image.fromarray(stored), "JPEG", exif=exif.tobytes()),
        "photo.gif": encode(Image.fromarray(cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2RGB)), "JPEG"),
    }


def test_unusual_but_valid_images_decode_correctly(tmp_path):
    data = unusual_images()
    out = {}
    for name, content in data.items():
        (tmp_path / name).write_bytes(content)
        out[name] = images.read_image(tmp_path / name)
        assert out[name].dtype == np.uint8 and out[name].ndim == 3 and out[name].shape[2] == 3
        assert np.array_equal(out[name], images.decode_image(content, name))
    sixteen = out["sixteen_bit.png"][0, :, 0]
    assert sixteen[0] == 0 and sixteen[-1] == 255 and np.all(np.diff(sixteen.astype(int)) >= 0)  # full range kept
    rgba = out["rgba.png"]
    assert (rgba[:8] == 255).all()  # transparent -> white
    assert (rgba[8:] == [0, 0, 255]).all()  # opaque red, in BGR order
    gray = out["gray.png"]
    assert gray.shape == (12, 25, 3) and (gray[..., 0] == gray[..., 2]).all() and gray[0, 3, 0] == 30
    assert np.abs(out["gray.jpg"].astype(int) - gray).max() <= 3
    assert out["one_pixel.png"].shape == (1, 1, 3) and (out["one_pixel.png"] == 200).all()
    rotated = out["rotated.jpg"]
    assert rotated.shape[:2] == (40, 20)  # the rotation is applied: now 20 wide, 40 high
    bright = np.argwhere(rotated[..., 0] > 128)
    assert bright[:, 0].max() < 8 and bright[:, 1].min() >= 12  # the mark moved to the top-right corner
    assert out["photo.gif"].shape == (512, 512, 3)


def test_cli_predict_reads_unusual_images(tmp_path, capsys):
    paths = []
    for name, content in unusual_images().items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(content)
    assert main(["predict", *map(str, paths), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == list(map(str, paths))
    assert all("error" not in r for r in results)
    gif = results[-1]
    assert len(gif["faces"]) == 1 and gif["faces"][0]["label"] in EMOTIONS  # the astronaut in a .gif-named JPEG


# ----------------------------------------------------------------------------------------------- CLI predict


def test_cli_predict_gives_one_line_per_bad_file_and_goes_on(bad_image_files, tmp_path, capsys):
    good = tmp_path / "astronaut.png"
    cv2.imwrite(str(good), astronaut_bgr())
    bad = [str(p) for p in bad_image_files.values()] + [str(tmp_path / "missing.jpg")]
    assert main(["predict", *bad, str(good)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    errors = captured.err.splitlines()
    assert len(errors) == len(bad)
    for arg, line in zip(bad, errors):
        assert line.startswith(f"{arg}: error: ") and line.endswith(".")
        assert Path(arg).name in line[len(arg) + 9 :]  # the message itself names the file
    assert captured.out.startswith(f"{good}: face 1 at")  # the good file was still processed

    assert main(["predict", *bad, "--json"]) == 1
    results = json.loads(capsys.readouterr().out)
    assert [set(r) for r in results] == [{"image", "error"}] * len(bad)
    messages = {Path(r["image"]).name: r["error"] for r in results}
    for name, (_, words) in BAD_IMAGES.items():
        sentence(messages[name], name, *words)
    sentence(messages["folder.jpg"], "is a folder")
    sentence(messages["huge.jpg"], "the limit is 40 MB")
    sentence(messages["missing.jpg"], "does not exist")


def test_installed_cli_prints_no_traceback_for_bad_files(bad_image_files):
    proc = subprocess.run(
        [sys.executable, "-m", "fer_realtime", "predict", *map(str, bad_image_files.values())],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    ours = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(ours) == len(bad_image_files)


def test_cli_predict_out_that_cannot_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    good = tmp_path / "astronaut.png"
    cv2.imwrite(str(good), astronaut_bgr())
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        assert main(["predict", str(good), "--out", str(out)]) == 2
        one_line(capsys.readouterr().err, "error: --out", str(out))


# ----------------------------------------------------------------------------------------------- model files


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory) -> dict[str, tuple[Path, list[str]]]:
    import keras

    folder = tmp_path_factory.mktemp("models")
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    outputs = keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(x))
    save_model(keras.Model(inputs, outputs), ModelMetadata(), folder / "lambda.keras")
    save_model(tiny_model(num_classes=5), ModelMetadata(), folder / "five_classes.keras")  # metadata: 7
    good = save_tiny_model(folder / "good.keras").read_bytes()
    (folder / "html.keras").write_bytes(b"<!doctype html><html><body>Sign in</body></html>")
    (folder / "empty.keras").write_bytes(b"")
    (folder / "random.keras").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "truncated.keras").write_bytes(good[: len(good) // 2])
    (folder / "folder.keras").mkdir()
    (folder / "photo.keras").write_bytes(_jpeg())
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(folder / "bad_metadata.keras", "w") as dst:
        for item in src.namelist():  # metadata that is not even text
            dst.writestr(item, b"\xff\xfe{" if item == "fer_realtime.json" else src.read(item))
    with zipfile.ZipFile(folder / "plain.zip.keras", "w") as archive:
        archive.writestr("notes.txt", "hello")
    keras_only = folder / "keras_only.keras"
    tiny_model().save(keras_only)
    return {
        "lambda": (folder / "lambda.keras", ["lambda.keras", "Lambda layer", "safe mode"]),
        "wrong classes": (folder / "five_classes.keras", ["five_classes.keras", "outputs (None, 5)", "7 classes"]),
        "html": (folder / "html.keras", ["html.keras", "not a Keras .keras model file"]),
        "empty": (folder / "empty.keras", ["empty.keras", "not a Keras .keras model file"]),
        "random": (folder / "random.keras", ["random.keras", "not a Keras .keras model file"]),
        "truncated": (folder / "truncated.keras", ["truncated.keras", "not a complete zip archive"]),
        "folder": (folder / "folder.keras", ["folder.keras", "is a folder"]),
        "jpeg": (folder / "photo.keras", ["photo.keras", "not a Keras .keras model file"]),
        "bad metadata": (folder / "bad_metadata.keras", ["bad_metadata.keras", "could not be read"]),
        "zip": (folder / "plain.zip.keras", ["plain.zip.keras", "not a Keras model (no config.json)"]),
        "not ours": (keras_only, ["keras_only.keras", "not a fer-realtime model"]),
        "missing": (folder / "missing.keras", ["missing.keras", "does not exist"]),
    }


@pytest.mark.parametrize("kind", ["lambda", "wrong classes", "html", "empty", "random", "truncated", "folder",
                                  "jpeg", "bad metadata", "zip", "not ours", "missing"])
def test_bad_model_files_give_one_sentence(bad_models, kind, capsys):
    path, words = bad_models[kind]
    with pytest.raises(ModelLoadError) as info:
        load_model(path)
    sentence(str(info.value), *words)
    if kind not in ("lambda", "wrong classes"):  # those two have good metadata: only loading finds the problem
        with pytest.raises(ModelLoadError) as info:
            read_metadata(path)
        sentence(str(info.value), *words)
    assert main(["predict", str(ROOT / "README.md"), "--model", str(path)]) == 2
    one_line(capsys.readouterr().err, "error: ", *words)


@pytest.mark.parametrize("kind", ["lambda", "wrong classes", "truncated"])
def test_cli_evaluate_with_a_bad_model(bad_models, kind, tmp_path, capsys):
    write_class_folders(tmp_path, {"happy": 1, "sad": 1})
    path, words = bad_models[kind]
    assert main(["evaluate", str(tmp_path), "--model", str(path)]) == 2
    one_line(capsys.readouterr().err, "error: ", *words)


# ----------------------------------------------------------------------------------------------- datasets


def _fer_csv(rows: int = 14, header: str = "emotion,pixels,Usage", pixels=None) -> bytes:
    rng = np.random.default_rng(0)
    lines = [header]
    for i in range(rows):
        values = pixels if pixels is not None else " ".join(map(str, rng.integers(0, 256, 48 * 48)))
        lines.append(f"{i % 7},{values},Training")
    return ("\n".join(lines) + "\n").encode()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


FACES = np.random.default_rng(0).integers(0, 256, (14, 48, 48), dtype=np.uint8)
LABELS = np.arange(14) % 7

BAD_DATASETS = {  # name -> (files {name: bytes}, words the message must contain)
    "empty csv": ({"data.csv": b""}, ["data.csv", "is empty"]),
    "wrong columns": ({"data.csv": _fer_csv(header="label,image,split")},
                      ["data.csv", "line 1", "no emotion or pixels column", "'label'"]),
    "unparsable pixels": ({"data.csv": _fer_csv(pixels=" ".join(["12", "x7"] * 1152))},
                          ["data.csv", "line 2", "whole numbers 0..255"]),
    "fractional pixels": ({"data.csv": _fer_csv(pixels=" ".join(["1.5"] * 2304))}, ["data.csv", "line 2"]),
    "non-square pixels": ({"data.csv": _fer_csv(pixels=" ".join(["9"] * 2000))},
                          ["data.csv", "2000 pixel values", "square"]),
    "truncated csv": ({"data.csv": _fer_csv()[:5000]}, ["data.csv", "line 2"]),
    "random bytes csv": ({"data.csv": np.random.default_rng(0).bytes(3000)}, ["data.csv", "not a CSV file"]),
    "html named csv": ({"data.csv": b"<!doctype html>\n<html><body>Moved</body></html>\n"},
                       ["data.csv", "no emotion or pixels column"]),
    "zip named csv": ({"data.csv": zip_bytes({"fer2013.csv": _fer_csv()})}, ["data.csv", "not a CSV file"]),
    "npy of different lengths": ({"X.npy": _npy(FACES), "Y.npy": _npy(LABELS[:-3])},
                                 ["X.npy has 14 images", "Y.npy has 11 labels"]),
    "pickled npy": ({"X.npy": _npy(np.array([{"face": i} for i in range(14)], dtype=object)), "Y.npy": _npy(LABELS)},
                    ["X.npy", "pickled", "refused"]),
    "pickle named npy": ({"X.npy": pickle.dumps(FACES), "Y.npy": _npy(LABELS)}, ["X.npy", "pickled", "refused"]),
    "empty npy": ({"X.npy": b"", "Y.npy": _npy(LABELS)}, ["X.npy", "not a .npy file"]),
    "truncated npy": ({"X.npy": _npy(FACES)[:1000], "Y.npy": _npy(LABELS)}, ["X.npy", "corrupt"]),
}


def _write_files(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder / sorted(files)[0]  # the CSV, or X.npy


@pytest.mark.parametrize("kind", sorted(BAD_DATASETS))
def test_bad_datasets_give_one_sentence(kind, tmp_path):
    files, words = BAD_DATASETS[kind]
    source = _write_files(tmp_path / "data", files)
    with pytest.raises(DatasetError) as info:
        load_dataset(source)
    sentence(str(info.value), *words)
    work = tmp_path / "uploads"
    with pytest.raises(DatasetError) as info:
        load_uploaded_dataset(list(files.items()), work)
    sentence(str(info.value), *words)
    assert str(work) not in str(info.value)  # the upload's own names, not the server's paths
    assert list(work.iterdir()) == []  # nothing of a refused upload is kept


@pytest.mark.parametrize("kind", ["wrong columns", "unparsable pixels", "npy of different lengths", "pickled npy",
                                  "zip named csv"])
def test_cli_train_and_compare_with_bad_datasets(kind, tmp_path, capsys):
    files, words = BAD_DATASETS[kind]
    source = _write_files(tmp_path / "data", files)
    out = tmp_path / "out"
    for argv in (["train", "--data", str(source), "--epochs", "1", "--out", str(out / "m.keras")],
                 ["train", "--data", str(source), "--arch", "rnn", "--epochs", "1", "--out", str(out / "r.keras")],
                 ["compare", "--data", str(source), "--epochs", "1", "--out", str(out / "cmp")]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        one_line(captured.err, "error: ", *words)
        assert captured.out == ""
    assert not list(out.rglob("*.keras"))


def test_a_folder_where_a_dataset_file_is_expected(tmp_path, capsys):
    (tmp_path / "fer2013.csv").mkdir()
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path / "fer2013.csv")
    sentence(str(info.value), "fer2013.csv", "No dataset found")
    (tmp_path / "pair").mkdir()
    (tmp_path / "pair" / "X.npy").mkdir()
    (tmp_path / "pair" / "Y.npy").write_bytes(_npy(LABELS))
    with pytest.raises(DatasetError) as info:
        load_dataset(tmp_path / "pair" / "Y.npy")
    sentence(str(info.value), "Y.npy", "No matching")
    assert main(["train", "--data", str(tmp_path / "fer2013.csv"), "--out", str(tmp_path / "m.keras")]) == 2
    one_line(capsys.readouterr().err, "error: ", "fer2013.csv", "No dataset found")
    assert main(["evaluate", str(tmp_path / "pair" / "Y.npy")]) == 2
    one_line(capsys.readouterr().err, "error: ", "Y.npy", "is a file, not a folder")
    (tmp_path / "notes.md").write_text("# notes\n")
    assert main(["compare", "--data", str(tmp_path / "notes.md"), "--out", str(tmp_path / "cmp")]) == 2
    one_line(capsys.readouterr().err, "error: ", "notes.md", "is not a dataset")


def test_bad_images_inside_class_folders_are_skipped_without_decoding_bombs(tmp_path, monkeypatch, capsys):
    root = write_class_folders(tmp_path / "faces", {"happy": 3, "sad": 3})
    for name, (make, _) in BAD_IMAGES.items():
        (root / "happy" / name).write_bytes(make())
    (root / "sad" / "folder.png").mkdir()
    decoded = []
    imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda buf, flags: decoded.append(len(buf)) or imdecode(buf, flags))
    data = load_dataset(root)
    assert len(data.train) == 6
    unreadable = sorted(Path(p).name for p in data.summary().unreadable_files)
    assert unreadable == sorted(BAD_IMAGES)
    assert len(decoded) == 6 + 2  # only the good and the truncated files got to the decoder, never the bombs
    assert any("8 unreadable image(s) ignored" in note for note in data.summary().warnings())

    assert main(["evaluate", str(root), "--json"]) == 0  # evaluate reads class folders the same way
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 6

    upload = zip_bytes({f"faces/happy/{name}": make() for name, (make, _) in BAD_IMAGES.items()}
                  | {f"faces/{c}/{i}.png": cv2.imencode(".png", FACES[i])[1].tobytes()
                     for c in ("happy", "sad") for i in range(2)})
    uploaded = load_uploaded_dataset([("faces.zip", upload)], tmp_path / "uploads")
    assert len(uploaded.train) == 4 and len(uploaded.summary().unreadable_files) == len(BAD_IMAGES)


def test_uploads_above_the_size_limit_are_refused_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 3 * 2**20)
    files = [("X_big.npy", bytes(2 * 2**20)), ("Y_big.npy", bytes(2 * 2**20))]
    with pytest.raises(DatasetError) as info:
        load_uploaded_dataset(files, tmp_path / "uploads")
    sentence(str(info.value), "X_big.npy", "Y_big.npy", "is 4 MB", "the limit is 3 MB")
    assert not (tmp_path / "uploads").exists()


def test_cli_train_refuses_an_out_path_it_could_not_save_to_before_training(tmp_path, capsys):
    write_class_folders(tmp_path / "faces", {name: 2 for name in EMOTIONS})
    for out in (tmp_path / "model.h5", tmp_path):
        assert main(["train", "--data", str(tmp_path / "faces"), "--epochs", "1", "--out", str(out)]) == 2
        captured = capsys.readouterr()
        one_line(captured.err, "error: --out", "ending in .keras")
        assert captured.out == ""  # refused before loading data or training


@pytest.mark.parametrize(
    "argv, words",
    [
        (["evaluate", "{data}", "--batch-size", "0"], ["--batch-size must be at least 1, got 0."]),
        (["train", "--data", "{data}", "--epochs", "0", "--out", "{out}/m.keras"], ["--epochs must be at least 1"]),
        (["train", "--data", "{data}", "--arch", "rnn", "--batch-size", "-4", "--out", "{out}/m.keras"],
         ["--batch-size must be at least 1, got -4."]),
        (["train", "--data", "{data}", "--learning-rate", "-0.1", "--out", "{out}/m.keras"],
         ["--learning-rate must be above 0"]),
        (["compare", "--data", "{data}", "--epochs", "-1", "--out", "{out}/cmp"], ["--epochs must be at least 1"]),
        (["compare", "--data", "{data}", "--archs", "cnn,bogus", "--out", "{out}/cmp"], ["Unknown architecture bogus"]),
        (["compare", "--data", "{data}", "--pca", "-2", "--out", "{out}/cmp"], ["--pca -2.0", "fraction of variance"]),
        (["compare", "--data", "{data}", "--archs", "transfer", "--transfer-base", "mobilenet_v2", "--epochs", "1",
          "--transfer-weights", "{out}/page.h5", "--out", "{out}/cmp"], ["page.h5"]),
    ],
)
def test_cli_bad_option_values_are_one_line(argv, words, tmp_path, capsys):
    data = write_class_folders(tmp_path / "faces", {name: 2 for name in EMOTIONS})
    out = tmp_path / "out"
    out.mkdir()
    (out / "page.h5").write_bytes(b"<!doctype html><html><body>Please log in</body></html>")
    argv = [arg.format(data=data, out=out) for arg in argv]
    assert main(argv) == 2
    one_line(capsys.readouterr().err, "error: ", *words)
    assert not list(out.rglob("*.keras"))


def test_cli_io_errors_are_one_line(tmp_path, capsys):
    write_class_folders(tmp_path / "faces", {name: 2 for name in EMOTIONS})
    (tmp_path / "file").write_text("x")
    argv = ["train", "--data", str(tmp_path / "faces"), "--epochs", "1", "--out", str(tmp_path / "m.keras"),
            "--cache-dir", str(tmp_path / "file" / "cache")]
    assert main(argv) == 2
    one_line(capsys.readouterr().err, "error: ", str(tmp_path / "file"))


# ----------------------------------------------------------------------------------------------- nothing half-written


class FailingModel:
    """Writes part of a model file, then fails like a full disk."""

    optimizer = None

    def save(self, path):
        Path(path).write_bytes(b"PK\x03\x04 half a model")
        raise OSError(28, "No space left on device")


def test_a_model_save_that_fails_midway_leaves_no_file_and_no_temp_file(tmp_path):
    with pytest.raises(OSError, match="No space"):
        save_model(FailingModel(), ModelMetadata(), tmp_path / "new.keras")
    assert list(tmp_path.iterdir()) == []

    previous = save_tiny_model(tmp_path / "m.keras")
    before = previous.read_bytes()
    with pytest.raises(OSError, match="No space"):
        save_model(FailingModel(), ModelMetadata(), previous)
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"] and previous.read_bytes() == before
    assert load_model(previous).metadata.classes == EMOTIONS  # the old model is intact and loads


def test_a_model_save_that_fails_after_keras_wrote_it_leaves_nothing(tmp_path, monkeypatch):
    def fail(self):
        raise RuntimeError("metadata could not be serialised")

    monkeypatch.setattr(ModelMetadata, "to_json", fail)
    with pytest.raises(RuntimeError):
        save_model(tiny_model(), ModelMetadata(), tmp_path / "m.keras")
    assert list(tmp_path.iterdir()) == []


def test_exports_are_written_atomically(tmp_path, monkeypatch):
    target = tmp_path / "history.json"
    atomic.write_json_atomic(target, {"version": 1})

    def replace_fails(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic.os, "replace", replace_fails)
    with pytest.raises(OSError):
        atomic.write_json_atomic(target, {"version": 2})
    with pytest.raises(OSError):
        atomic.write_bytes_atomic(tmp_path / "comparison.png", b"\x89PNG half")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]
    assert json.loads(target.read_text()) == {"version": 1}
    atomic.write_bytes_atomic(tmp_path / "chart.png", b"png")
    assert oct((tmp_path / "chart.png").stat().st_mode & 0o777) == "0o644"


def test_a_dataset_cache_write_that_fails_leaves_no_temp_file(tmp_path, monkeypatch):
    root = write_class_folders(tmp_path / "faces", {"happy": 2, "sad": 2})

    def savez_fails(file, **arrays):
        Path(file).write_bytes(b"PK half an npz")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(class_folders.np, "savez", savez_fails)
    with pytest.raises(OSError):
        class_folders.load_class_folders_cached(root, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_cli_predict_annotated_copies_are_never_half_written(tmp_path, monkeypatch, capsys):
    good = tmp_path / "astronaut.png"
    cv2.imwrite(str(good), astronaut_bgr())
    out = tmp_path / "out"

    def replace_fails(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(atomic.os, "replace", replace_fails)
    assert main(["predict", str(good), "--out", str(out)]) == 2
    one_line(capsys.readouterr().err, "error: ", "No space left on device")
    assert list(out.iterdir()) == []
