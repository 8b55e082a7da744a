"""The model list (shipped default + a folder) and adding uploaded model files (fer_realtime.app.model_catalog)."""

import pytest

from fer_realtime import ModelLoadError
from fer_realtime.app.model_catalog import add_uploaded_model, list_models, model_entry, safe_file_name
from fer_realtime.core.model_file import default_model_path
from helpers import save_tiny_model


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> bytes:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras").read_bytes()


def test_models_folder_is_listed_after_the_default_without_hidden_or_foreign_files(tmp_path, model_bytes,
                                                                                   monkeypatch):
    monkeypatch.delenv("FER_REALTIME_MODEL", raising=False)
    models = tmp_path / "models"
    models.mkdir()
    (models / "b.keras").write_bytes(model_bytes)
    (models / "a.keras").write_bytes(b"not a zip")
    (models / ".b-tmp123.keras").write_bytes(model_bytes)  # a save in progress
    (models / "notes.txt").write_text("x")
    entries = list_models(models, "models")
    assert entries[0].path == str(default_model_path()) and entries[0].name.endswith("(shipped)")
    assert [e.name for e in entries[1:]] == ["models/a.keras", "models/b.keras"]
    broken, good = entries[1:]
    assert broken.metadata is None and broken.label == "models/a.keras (unreadable)"
    assert "a.keras" in broken.error and "\n" not in broken.error
    assert good.error is None and good.label == "models/b.keras · held-out accuracy not recorded"


def test_a_missing_models_folder_is_created(tmp_path):
    folder = tmp_path / "new" / "models"
    assert len(list_models(folder)) == 1 and folder.is_dir()


def test_entry_of_a_missing_file_says_so(tmp_path):
    entry = model_entry(tmp_path / "gone.keras", "gone.keras")
    assert entry.metadata is None and "does not exist" in entry.error


@pytest.mark.parametrize("name, suffix, expected", [
    ("my model (1).keras", ".keras", "my_model_1_.keras"),
    ("../../etc/passwd", ".keras", "passwd.keras"),
    (".hidden.keras", ".keras", "hidden.keras"),
    ("???", ".mp4", "upload.mp4"),
    ("clip.MP4", ".mp4", "clip.MP4"),
])
def test_safe_file_names(name, suffix, expected):
    assert safe_file_name(name, suffix) == expected


def test_uploaded_model_is_checked_then_added_once_and_renamed_when_the_name_is_taken(tmp_path, model_bytes):
    models, scratch = tmp_path / "models", tmp_path / "uploads"
    first = add_uploaded_model("mine.keras", model_bytes, models, scratch)
    assert first == models / "mine.keras" and first.read_bytes() == model_bytes
    assert add_uploaded_model("mine.keras", model_bytes, models, scratch) == first  # the same file again
    other = save_tiny_model(tmp_path / "other.keras").read_bytes()
    assert other != model_bytes
    second = add_uploaded_model("mine.keras", other, models, scratch)
    assert second == models / "mine-2.keras" and second.read_bytes() == other
    assert sorted(p.name for p in models.iterdir()) == ["mine-2.keras", "mine.keras"]
    assert list(scratch.iterdir()) == []  # the checking copies are gone


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 broken zip", b"just text"])
def test_a_file_that_is_not_our_model_is_refused_and_nothing_is_written(tmp_path, content):
    models, scratch = tmp_path / "models", tmp_path / "uploads"
    with pytest.raises(ModelLoadError) as error:
        add_uploaded_model("bad.keras", content, models, scratch)
    assert "bad.keras" in str(error.value)
    assert not models.exists() or list(models.iterdir()) == []
    assert list(scratch.iterdir()) == []


def test_oversized_uploads_are_refused_before_loading(tmp_path):
    with pytest.raises(ModelLoadError, match="limited to 1 MB"):
        add_uploaded_model("big.keras", b"0" * (2 * 2**20), tmp_path / "models", tmp_path / "uploads", max_mb=1)
    assert not (tmp_path / "models").exists()
