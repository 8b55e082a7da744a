"""Every dataset format the Training tab accepts: FER2013 CSV, class folders, X/Y .npy pairs, and uploads of them.

All fixtures are generated into tmp_path (7 classes x a few images); nothing here imports TensorFlow.
"""

import io
import pickle

import cv2
import numpy as np
import pytest

from fer_realtime.core.errors import DatasetError
from fer_realtime.core.labels import EMOTIONS
from fer_realtime.data import uploads
from fer_realtime.data.class_folders import load_class_folders_cached, load_folder_dataset
from fer_realtime.data.dataset import FaceArrays, train_heldout_split
from fer_realtime.data.fer2013_csv import load_fer2013_csv
from fer_realtime.data.loader import load_dataset
from fer_realtime.data.numpy_pair import load_npy_dataset
from fer_realtime.data.uploads import load_uploaded_dataset
from helpers import write_class_folders, zip_bytes


def faces(per_class=3, size=(48, 48), seed=0, classes=range(7)):
    """Random grayscale faces, `per_class` of each class index in `classes`, in class order."""
    labels = np.repeat(np.asarray(list(classes)), per_class)
    images = np.random.default_rng(seed).integers(0, 256, (len(labels), *size), dtype=np.uint8)
    return images, labels


def write_csv(path, images, labels, usages=None, header="emotion,pixels,Usage", newline="\n"):
    lines = [header]
    for i, (image, label) in enumerate(zip(images, labels)):
        row = f"{label},{' '.join(map(str, image.ravel()))}"
        lines.append(row + (f",{usages[i]}" if usages is not None else ""))
    path.write_text(newline.join(lines) + newline)
    return path


def write_folders(root, counts: dict[str, int], size=(48, 48), seed=0):
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 256, size, dtype=np.uint8))
    return root


ALL_CLASSES = {name: 3 for name in EMOTIONS}


def png(value=128, size=(48, 48)) -> bytes:
    return cv2.imencode(".png", np.full(size, value, np.uint8))[1].tobytes()


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        call(*args, **kwargs)
    return str(info.value)


# ----------------------------------------------------------------------------------------------- FER2013 CSV


def test_csv_with_all_three_usages_gives_train_val_test(tmp_path):
    images, labels = faces(per_class=3)  # 21 rows: 7 train, 7 val, 7 test (one of each class in each)
    usages = ["Training", "PublicTest", "PrivateTest"] * 7
    data = load_dataset(write_csv(tmp_path / "fer2013.csv", images, labels, usages))
    assert data.format == "fer2013-csv" and data.classes == EMOTIONS and data.image_size == (48, 48)
    assert list(data.splits) == ["train", "val", "test"]
    for offset, split in enumerate(["train", "val", "test"]):
        arrays = data.splits[split]
        assert arrays.images.dtype == np.uint8 and arrays.images.shape == (7, 48, 48)
        assert np.array_equal(arrays.images, images[offset::3])
        assert np.array_equal(arrays.labels, labels[offset::3])


def test_csv_without_usage_is_all_train(tmp_path):
    images, labels = faces(per_class=2)
    data = load_fer2013_csv(write_csv(tmp_path / "a.csv", images, labels, header="emotion,pixels"))
    assert list(data.splits) == ["train"] and len(data.train) == 14
    assert np.array_equal(data.train.images, images)


def test_csv_header_variants_quotes_and_crlf(tmp_path):
    images, labels = faces(per_class=1)
    path = tmp_path / "variant.csv"
    rows = [f'{lab},"{" ".join(map(str, img.ravel()))}", Training ' for img, lab in zip(images, labels)]
    path.write_bytes(("\ufeffEmotion, pixels , Usage \r\n" + "\r\n".join(rows) + "\r\n\r\n").encode())
    data = load_fer2013_csv(path)
    assert np.array_equal(data.train.images, images) and np.array_equal(data.train.labels, labels)


def test_csv_of_another_image_size_is_resized_and_recorded(tmp_path):
    images, labels = faces(per_class=1, size=(24, 24))
    data = load_dataset(write_csv(tmp_path / "small.csv", images, labels, header="emotion,pixels"))
    assert data.train.images.shape == (7, 48, 48)
    summary = data.summary()
    assert summary.resized_count == 7 and summary.resized_from == {(24, 24): 7}
    assert any("resized" in note for note in summary.warnings())


def _good_rows():
    images, labels = faces(per_class=1)
    return [f"{lab},{' '.join(map(str, img.ravel()))},Training" for img, lab in zip(images, labels)]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", ["empty"]),
        (b"emotion,pixels,Usage\n", ["no data rows"]),
        (b"emotion,image,Usage\n0,1 2 3 4,Training\n", ["pixels", "'image'", "columns found"]),
        ("ROWS[2] = '3,1 2 x 4,Training'", ["line 4", "whole numbers"]),
        ("ROWS[0] = '3,1 2 3,Training'", ["line 2", "3 pixel values", "square"]),
        ("ROWS[5] = '3,' + ' '.join(['7'] * 2303) + ',Training'", ["line 7", "2303 pixel values"]),
        ("ROWS[1] = '9,' + ' '.join(['7'] * 2304) + ',Training'", ["line 3", "emotion 9", "0..6"]),
        ("ROWS[3] = '2,' + ' '.join(['300'] * 2304) + ',Training'", ["line 5", "above 255"]),
        ("ROWS[4] = '2,' + ' '.join(['1'] * 2304) + ',Validate'", ["line 6", "Usage"]),
        ("ROWS[6] = '2,1 2'", ["line 8", "2 fields"]),
        (bytes(range(256)) * 40, ["not a CSV"]),
        (b"\xff\xfe\xfa garbage \xc3(" * 50, ["not a CSV"]),
    ],
)
def test_bad_csvs_give_one_error_naming_problem_and_line(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    if isinstance(content, str):  # an edit applied to 7 good rows
        rows = _good_rows()
        exec(content, {}, {"ROWS": rows})
        content = ("emotion,pixels,Usage\n" + "\n".join(rows) + "\n").encode()
    path.write_bytes(content)
    message = error_of(load_dataset, path)
    assert str(path) in message
    for words in expected:
        assert words in message


# ----------------------------------------------------------------------------------------------- class folders


def test_folders_without_splits_with_aliases_and_skipped(tmp_path):
    counts = {"Anger": 2, "disgusted": 3, "fearful": 1, "HAPPINESS": 4, "sadness": 2, "surprised": 2, "Neutral": 5,
              "contempt": 2}
    write_folders(tmp_path, counts)
    data = load_dataset(tmp_path)
    assert data.format == "class-folders" and list(data.splits) == ["train"]
    assert list(data.train.class_counts().values()) == [2, 3, 1, 4, 2, 2, 5]
    summary = data.summary()
    assert summary.skipped_folders == ["contempt"] and summary.total == 19 and summary.missing_classes == []


@pytest.mark.parametrize("held_name, split", [("val", "val"), ("Validation", "val"), ("test", "test")])
def test_folders_with_their_own_split(tmp_path, held_name, split):
    write_folders(tmp_path / "Train", ALL_CLASSES)
    write_folders(tmp_path / held_name, {"happy": 2, "sad": 1, "misc": 1})
    (tmp_path / "notes").mkdir()
    data = load_folder_dataset(tmp_path)
    assert list(data.splits) == ["train", split]
    assert len(data.train) == 21 and data.splits[split].class_counts()["happy"] == 2
    assert data.summary().skipped_folders == ["notes", f"{held_name}/misc"]


def test_folders_with_train_val_and_test(tmp_path):
    for name in ("train", "val", "test"):
        write_folders(tmp_path / name, ALL_CLASSES)
    assert list(load_dataset(tmp_path).splits) == ["train", "val", "test"]


def test_mixed_image_sizes_are_resized_and_recorded(tmp_path):
    write_folders(tmp_path, {name: 2 for name in EMOTIONS})
    write_folders(tmp_path, {"happy": 1}, size=(64, 64), seed=1)
    cv2.imwrite(str(tmp_path / "sad" / "wide.png"), np.zeros((30, 40), np.uint8))
    (tmp_path / "sad" / "broken.jpg").write_bytes(b"not a jpeg")
    data = load_dataset(tmp_path)
    assert data.train.images.shape[1:] == (48, 48)
    summary = data.summary()
    assert summary.resized_count == 2 and summary.resized_from == {(64, 64): 1, (30, 40): 1}
    assert len(summary.unreadable_files) == 1 and summary.unreadable_files[0].endswith("broken.jpg")
    assert any("30×40" in note for note in summary.warnings())


def test_held_out_folder_without_train_folder_is_refused(tmp_path):
    write_folders(tmp_path / "val", ALL_CLASSES)
    assert "no train/ folder" in error_of(load_dataset, tmp_path)


def test_folder_without_any_dataset(tmp_path):
    (tmp_path / "photos").mkdir()
    message = error_of(load_dataset, tmp_path)
    assert "No dataset found" in message and str(tmp_path) in message


def test_cached_folders_keep_skipped_unreadable_and_resized(tmp_path):
    root = write_folders(tmp_path / "data", {"happy": 2, "sad": 2, "other": 1})
    write_folders(root, {"happy": 1}, size=(32, 32))
    (root / "sad" / "bad.png").write_bytes(b"x")
    first = load_class_folders_cached(root, tmp_path / "cache")
    again = load_class_folders_cached(root, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    for arrays in (first, again):
        assert arrays.skipped_folders == ["other"] and len(arrays.unreadable_files) == 1
        assert arrays.resized_from == {(32, 32): 1}
    assert np.array_equal(first.images, again.images)


# ----------------------------------------------------------------------------------------------- X/Y .npy


@pytest.mark.parametrize("shape", ["nhw", "nhw1", "flat"])
@pytest.mark.parametrize("label_form", ["int", "onehot", "column"])
def test_npy_shapes_and_label_forms(tmp_path, shape, label_form):
    images, labels = faces(per_class=2)
    x = {"nhw": images, "nhw1": images[..., None], "flat": images.reshape(len(images), -1)}[shape]
    y = {"int": labels, "onehot": np.eye(7, dtype=np.float32)[labels], "column": labels[:, None]}[label_form]
    np.save(tmp_path / "X.npy", x)
    np.save(tmp_path / "Y.npy", y)
    data = load_dataset(tmp_path)
    assert data.format == "npy" and data.source == str(tmp_path / "X.npy")
    assert np.array_equal(data.train.images, images) and np.array_equal(data.train.labels, labels)


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_npy_float_images_become_uint8(tmp_path, scale):
    images, labels = faces(per_class=1)
    np.save(tmp_path / "X.txt.npy", images.astype(np.float64) / 255.0 * scale)
    np.save(tmp_path / "Y.txt.npy", labels)
    for source in (tmp_path, tmp_path / "X.txt.npy", tmp_path / "Y.txt.npy"):
        data = load_dataset(source)
        assert data.train.images.dtype == np.uint8 and np.array_equal(data.train.images, images)


def test_npy_pair_with_suffix_names_and_string_labels(tmp_path):
    images, labels = faces(per_class=1)
    np.save(tmp_path / "X_faces.npy", images)
    np.save(tmp_path / "Y_faces.npy", np.asarray([EMOTIONS[i].upper() for i in labels]))
    assert np.array_equal(load_dataset(tmp_path).train.labels, labels)


def _save_pair(folder, x, y):
    np.save(folder / "X.npy", x)
    np.save(folder / "Y.npy", y)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d, im, lab: _save_pair(d, im, lab[:-1]), ["X.npy has 7 images", "Y.npy has 6 labels"]),
        (lambda d, im, lab: _save_pair(d, im, np.where(lab == 3, 7, lab)), ["Y.npy row 3", "label 7", "0..6"]),
        (lambda d, im, lab: _save_pair(d, im, lab - 1), ["Y.npy row 0", "label -1"]),
        (lambda d, im, lab: _save_pair(d, im.reshape(7, -1)[:, :2000], lab), ["2000 values", "square"]),
        (lambda d, im, lab: _save_pair(d, im[:, :, :, None, None], lab), ["X.npy has shape", "(N, H, W)"]),
        (lambda d, im, lab: _save_pair(d, im, np.zeros((7, 3))), ["Y.npy has shape", "one-hot"]),
        (lambda d, im, lab: _save_pair(d, im.astype(float) - 10, lab), ["pixel values from -10", "0..255"]),
        (lambda d, im, lab: _save_pair(d, np.asarray([{"a": 1}] * 7, dtype=object), lab), ["pickled", "refused"]),
        (lambda d, im, lab: (_save_pair(d, im, lab), (d / "X.npy").write_bytes(pickle.dumps(im))), ["pickled"]),
        (lambda d, im, lab: (_save_pair(d, im, lab), (d / "Y.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")),
         ["Y.npy", "corrupt"]),
        (lambda d, im, lab: (_save_pair(d, im, lab), (d / "X.npy").write_bytes(b"nonsense" * 10)),
         ["X.npy", "not a .npy"]),
    ],
)
def test_bad_npy_pairs_give_one_error(tmp_path, make, expected):
    images, labels = faces(per_class=1)
    make(tmp_path, images, labels)
    message = error_of(load_dataset, tmp_path / "X.npy")
    for words in expected:
        assert words in message


def test_npy_truncated_file_is_corrupt(tmp_path):
    images, labels = faces(per_class=1)
    _save_pair(tmp_path, images, labels)
    data = (tmp_path / "X.npy").read_bytes()
    (tmp_path / "X.npy").write_bytes(data[: len(data) // 2])
    assert "corrupt" in error_of(load_npy_dataset, tmp_path)


def test_x_file_without_partner(tmp_path):
    np.save(tmp_path / "X.npy", faces()[0])
    assert "No matching labels file" in error_of(load_dataset, tmp_path / "X.npy")


# ----------------------------------------------------------------------------------------------- common checks


def test_class_without_images_is_listed_as_missing(tmp_path):
    images, labels = faces(per_class=2, classes=[0, 2, 3, 4, 5, 6])
    data = load_dataset(write_csv(tmp_path / "f.csv", images, labels, header="emotion,pixels"))
    summary = data.summary()
    assert summary.missing_classes == ["disgust"] and summary.counts["train"]["disgust"] == 0
    assert any("disgust" in note for note in summary.warnings())
    message = error_of(load_dataset, tmp_path / "f.csv", require_all_classes=True)
    assert "disgust" in message and str(tmp_path / "f.csv") in message


def test_fewer_than_two_classes_is_refused(tmp_path):
    write_folders(tmp_path, {"happy": 3, "contempt": 2})
    message = error_of(load_dataset, tmp_path)
    assert "only happy" in message and "at least two" in message


def test_require_all_classes_for_folders(tmp_path):
    write_folders(tmp_path, {"happy": 2, "sad": 2})
    (tmp_path / "angry").mkdir()  # a folder, but no images in it
    message = error_of(load_dataset, tmp_path, require_all_classes=True)
    assert "angry" in message and "neutral" in message


def test_missing_source_and_unknown_file(tmp_path):
    assert "does not exist" in error_of(load_dataset, tmp_path / "nope")
    (tmp_path / "face.png").write_bytes(png())
    assert "not a dataset" in error_of(load_dataset, tmp_path / "face.png")


def test_summary_counts_and_samples(tmp_path):
    images, labels = faces(per_class=5)
    usages = (["Training"] * 4 + ["PublicTest"]) * 7
    data = load_dataset(write_csv(tmp_path / "f.csv", images, labels, usages))
    summary = data.summary()
    assert summary.total == 35 and summary.image_size == (48, 48) and summary.format == "fer2013-csv"
    assert summary.counts["train"] == {name: 4 for name in EMOTIONS}
    assert summary.counts["val"] == {name: 1 for name in EMOTIONS}
    samples = data.samples(per_class=3, seed=1)
    assert list(samples) == list(EMOTIONS)
    assert all(s.shape == (3, 48, 48) and s.dtype == np.uint8 for s in samples.values())
    assert all(np.array_equal(a, b) for a, b in zip(samples.values(), data.samples(per_class=3, seed=1).values()))
    assert data.samples(per_class=10)["happy"].shape == (4, 48, 48)


def test_samples_of_a_missing_class_are_empty(tmp_path):
    write_folders(tmp_path, {"happy": 2, "sad": 3})
    samples = load_dataset(tmp_path).samples(per_class=8)
    assert samples["angry"].shape == (0, 48, 48) and samples["sad"].shape == (3, 48, 48)


# ----------------------------------------------------------------------------------------------- held-out split


def test_heldout_split_uses_the_datasets_own_val_then_test(tmp_path):
    for name in ("train", "val", "test"):
        write_folders(tmp_path / "a" / name, ALL_CLASSES, seed=len(name))
    data = load_dataset(tmp_path / "a")
    train, held, name = train_heldout_split(data)
    assert train is data.train and held is data.splits["val"] and "val split" in name
    del data.splits["val"]
    assert train_heldout_split(data)[1] is data.splits["test"]


def test_heldout_split_falls_back_to_stratified_and_is_deterministic(tmp_path):
    images, labels = faces(per_class=10)
    data = load_dataset(write_csv(tmp_path / "f.csv", images, labels, header="emotion,pixels"))
    train, held, name = train_heldout_split(data, fraction=0.2, seed=7)
    assert isinstance(held, FaceArrays) and len(train) + len(held) == 70
    assert held.class_counts() == {c: 2 for c in EMOTIONS}
    assert "stratified 20%" in name and "seed 7" in name
    train2, held2, _ = train_heldout_split(data, fraction=0.2, seed=7)
    assert np.array_equal(held.images, held2.images) and np.array_equal(train.labels, train2.labels)
    assert not {img.tobytes() for img in train.images} & {img.tobytes() for img in held.images}


# ----------------------------------------------------------------------------------------------- uploads


def test_upload_zip_of_class_folders_with_a_wrapper_folder(tmp_path):
    members = {f"faces/{name}/{i}.png": png(10 * i) for name in EMOTIONS for i in range(2)}
    members["__MACOSX/faces/._happy"] = b"resource fork"
    members["faces/happy/.DS_Store"] = b"junk"
    data = load_uploaded_dataset([("My Faces.zip", zip_bytes(members))], tmp_path / "work")
    assert data.format == "class-folders" and len(data.train) == 14
    assert load_dataset(data.source).summary().counts == data.summary().counts  # the source stays loadable
    assert not list((tmp_path / "work").rglob("__MACOSX"))


@pytest.mark.parametrize("evil", ["../evil.png", "faces/../../evil.png", "/tmp/evil.png", "C:/evil.png"])
def test_upload_zip_with_unsafe_member_extracts_nothing(tmp_path, evil):
    members = {f"{name}/0.png": png() for name in EMOTIONS}
    members[evil] = png()
    work = tmp_path / "work" / "uploads"
    message = error_of(load_uploaded_dataset, [("data.zip", zip_bytes(members))], work)
    assert "unsafe path" in message and "data.zip" in message
    assert list(work.iterdir()) == []
    assert not (tmp_path / "work" / "evil.png").exists() and not (tmp_path / "evil.png").exists()


def test_upload_zip_over_the_size_or_member_cap_leaves_nothing(tmp_path, monkeypatch):
    members = {f"{name}/{i}.png": png(i) for name in EMOTIONS for i in range(3)}
    monkeypatch.setattr(uploads, "MAX_UNZIPPED_BYTES", 1000)
    assert "more than" in error_of(load_uploaded_dataset, [("d.zip", zip_bytes(members))], tmp_path)
    monkeypatch.setattr(uploads, "MAX_UNZIPPED_BYTES", 2 * 1024**3)
    monkeypatch.setattr(uploads, "MAX_ZIP_MEMBERS", 5)
    assert "at most 5" in error_of(load_uploaded_dataset, [("d.zip", zip_bytes(members))], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_upload_not_a_zip(tmp_path):
    assert "not a valid zip" in error_of(load_uploaded_dataset, [("d.zip", b"PK nonsense")], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_upload_csv_and_bad_csv_names_the_upload(tmp_path):
    images, labels = faces(per_class=1)
    csv_bytes = write_csv(tmp_path / "src.csv", images, labels, header="emotion,pixels").read_bytes()
    work = tmp_path / "work"
    data = load_uploaded_dataset([("fer2013.csv", csv_bytes)], work)
    assert data.format == "fer2013-csv" and len(data.train) == 7
    message = error_of(load_uploaded_dataset, [("mine.csv", b"emotion,image\n1,2\n")], work)
    assert message.startswith("mine.csv line 1") and str(work) not in message
    assert len(list(work.iterdir())) == 1  # only the successful upload's folder


def test_upload_npy_pair_with_any_x_y_names(tmp_path):
    images, labels = faces(per_class=1)
    x, y = io.BytesIO(), io.BytesIO()
    np.save(x, images.reshape(7, -1))
    np.save(y, np.eye(7)[labels])
    data = load_uploaded_dataset([("y_labels.npy", y.getvalue()), ("X_data.npy", x.getvalue())], tmp_path)
    assert data.format == "npy" and np.array_equal(data.train.labels, labels)
    message = error_of(load_uploaded_dataset, [("X_data.npy", x.getvalue()), ("Y_lab.npy", y.getvalue()[:60])],
                       tmp_path / "w2")
    assert "Y_lab.npy" in message and "corrupt" in message
    assert list((tmp_path / "w2").iterdir()) == []


@pytest.mark.parametrize(
    "names, expected",
    [([], "Upload one .zip"), (["a.png"], "got a.png"), (["X.npy"], "Upload one .zip"),
     (["a.npy", "b.npy"], "X… (images) and Y…"), (["a.csv", "b.csv"], "Upload one .zip")],
)
def test_upload_of_unsupported_file_sets(tmp_path, names, expected):
    assert expected in error_of(load_uploaded_dataset, [(n, b"x") for n in names], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_dataset_signature_changes_when_images_or_files_change_but_not_otherwise(tmp_path):
    import os
    import time

    from fer_realtime.data.loader import dataset_signature

    root = write_class_folders(tmp_path / "data" / "train", {"happy": 2, "sad": 2}).parent
    first = dataset_signature(root)
    assert dataset_signature(root) == first
    time.sleep(0.01)
    (root / "train" / "happy" / "happy_000.png").unlink()  # the class folder's mtime moves
    second = dataset_signature(root)
    assert second != first
    (root / "labels.csv").write_text("emotion,pixels\n")
    assert dataset_signature(root) != second
    assert dataset_signature(tmp_path / "missing") == ("missing", str(tmp_path / "missing"))
    csv_file = root / "labels.csv"
    os.utime(csv_file, ns=(1, 1))
    assert dataset_signature(csv_file) == ("file", 1, csv_file.stat().st_size)


def test_upload_digest_ignores_the_order_of_the_files():
    from fer_realtime.data.uploads import upload_digest

    files = [("X.npy", b"abc"), ("Y.npy", b"def")]
    assert upload_digest(files) == upload_digest(files[::-1]) and len(upload_digest(files)) == 20
    assert upload_digest(files) != upload_digest([("X.npy", b"abc"), ("Y.npy", b"deg")])
    assert upload_digest(files) != upload_digest([("X2.npy", b"abc"), ("Y.npy", b"def")])
