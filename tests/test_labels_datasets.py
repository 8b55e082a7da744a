import numpy as np
import pytest

from fer_realtime.core.errors import DatasetError
from fer_realtime.core.labels import EMOTIONS, canonical_emotion
from fer_realtime.data.class_folders import load_class_folders
from fer_realtime.data.dataset import stratified_split
from helpers import write_class_folders


def test_class_order_is_fer2013s():
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.mark.parametrize(
    "name, expected",
    [("Anger", "angry"), ("sadness", "sad"), ("HAPPINESS", "happy"), ("fearful", "fear"),
     ("surprised", "surprise"), ("disgusted", "disgust"), ("neutral", "neutral"), ("contempt", None)],
)
def test_aliases(name, expected):
    assert canonical_emotion(name) == expected


def test_load_class_folders_with_aliases_and_skipped(tmp_path):
    write_class_folders(tmp_path, {"Anger": 3, "happiness": 4, "contempt": 2}, size=(40, 40))
    (tmp_path / "happiness" / "notes.txt").write_text("not an image")
    (tmp_path / "happiness" / "broken.png").write_bytes(b"\x89PNG garbage")
    data = load_class_folders(tmp_path, size=(48, 48))
    assert data.images.shape == (7, 48, 48) and data.images.dtype == np.uint8
    assert data.class_counts()["angry"] == 3 and data.class_counts()["happy"] == 4
    assert data.skipped_folders == ["contempt"]
    assert len(data.unreadable_files) == 1 and data.unreadable_files[0].endswith("broken.png")


@pytest.mark.parametrize("make", ["missing", "file", "empty", "no_images"])
def test_bad_dataset_folders_give_one_clear_error(tmp_path, make):
    target = tmp_path / "data"
    if make == "file":
        target.write_text("x")
    elif make == "empty":
        target.mkdir()
    elif make == "no_images":
        (target / "happy").mkdir(parents=True)
    with pytest.raises(DatasetError) as info:
        load_class_folders(target)
    assert str(target) in str(info.value)


def test_missing_classes_are_refused_when_required(tmp_path):
    write_class_folders(tmp_path, {"happy": 2, "sad": 2})
    with pytest.raises(DatasetError, match="angry"):
        load_class_folders(tmp_path, require_all=True)


def test_stratified_split_is_deterministic_and_keeps_every_class():
    labels = np.repeat(np.arange(7), [50, 5, 40, 90, 60, 30, 2])
    kept, held = stratified_split(labels, 0.1, seed=3)
    assert not set(kept) & set(held)
    assert len(kept) + len(held) == len(labels)
    assert set(labels[held]) == set(range(7))  # even the 2-image class gives one
    kept2, held2 = stratified_split(labels, 0.1, seed=3)
    assert np.array_equal(held, held2)
