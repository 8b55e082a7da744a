"""Datasets uploaded on the page: one .zip of class folders, one FER2013 .csv or an X/Y .npy pair, stored in a
fresh folder; archives are checked (paths, sizes, member counts) before anything is written."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from ..core.errors import DatasetError
from ..core.labels import canonical_emotion
from .class_folders import SPLIT_NAMES
from .dataset import Dataset
from .loader import load_dataset

MAX_UNZIPPED_BYTES = 2 * 1024**3
MAX_ZIP_MEMBERS = 200_000
MAX_UPLOAD_BYTES = 1024**3  # all files of one dataset upload together


def load_uploaded_dataset(
    files: list[tuple[str, bytes]],
    workdir: str | os.PathLike,
    size: tuple[int, int] = (48, 48),
    require_all_classes: bool = False,
) -> Dataset:
    """A dataset from uploaded (name, content) files: one .zip of class folders, one FER2013 .csv, or two .npy
    files named X… and Y…. They are stored in a fresh folder under `workdir` (kept: the Dataset's source points
    there); on any error that folder is removed and the message names the uploaded files."""
    kind = _upload_kind(files)
    total = sum(len(content) for _, content in files)
    if total > MAX_UPLOAD_BYTES:
        names = ", ".join(Path(name).name for name, _ in files)
        raise DatasetError(
            f"The upload ({names}) is {total / 2**20:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB."
        )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=workdir))
    shown: dict[str, str] = {str(folder): "the upload"}
    try:
        source = _store_upload(kind, files, folder, shown)
        return load_dataset(source, size, require_all_classes)
    except DatasetError as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise DatasetError(_with_upload_names(str(error), shown)) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def upload_digest(files: list[tuple[str, bytes]]) -> str:
    """A short fingerprint of uploaded (name, content) files, the same whatever their order."""
    digest = hashlib.sha256()
    for name, content in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()[:20]


def _upload_kind(files: list[tuple[str, bytes]]) -> str:
    names = [name for name, _ in files]
    suffixes = sorted(Path(name).suffix.lower() for name in names)
    if suffixes == [".zip"]:
        return "zip"
    if suffixes == [".csv"]:
        return "csv"
    if suffixes == [".npy", ".npy"]:
        if sorted(Path(name).name[:1].lower() for name in names) == ["x", "y"]:
            return "npy"
        raise DatasetError(f"Name the two .npy files X… (images) and Y… (labels); got {', '.join(names)}.")
    got = f"; got {', '.join(names)}" if names else ""
    raise DatasetError(
        f"Upload one .zip of class folders, one FER2013 .csv, or two .npy files named X… and Y…{got}."
    )


def _store_upload(kind: str, files: list[tuple[str, bytes]], folder: Path, shown: dict[str, str]) -> Path:
    """Write the upload below `folder`; return what to load. `shown` learns stored path -> uploaded name."""
    if kind == "zip":
        name, content = files[0]
        target = folder / (_safe_name(Path(name).stem) or "dataset")
        shown[str(target)] = Path(name).name
        _extract_zip(content, Path(name).name, target)
        return _unwrap_single_folder(target)
    if kind == "csv":
        name, content = files[0]
        target = folder / (_safe_name(Path(name).name) or "dataset.csv")
        shown[str(target)] = Path(name).name
        target.write_bytes(content)
        return target
    for name, content in files:  # npy: stored as X.npy / Y.npy so they pair up whatever they were called
        target = folder / f"{Path(name).name[:1].upper()}.npy"
        shown[str(target)] = Path(name).name
        target.write_bytes(content)
    return folder / "X.npy"


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name).lstrip(".")


def _with_upload_names(message: str, shown: dict[str, str]) -> str:
    for path in sorted(shown, key=len, reverse=True):  # the longest first: the folder is a prefix of the others
        message = message.replace(path, shown[path])
    return message


def _extract_zip(content: bytes, name: str, target: Path) -> None:
    """Extract into `target`, refusing unsafe member paths and oversized archives before writing anything."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile:
        raise DatasetError(f"{name} is not a valid zip archive.") from None
    with archive:
        members = [info for info in archive.infolist() if not _ignored_member(info.filename) and not info.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise DatasetError(f"{name} has {len(members)} files; at most {MAX_ZIP_MEMBERS} are accepted.")
        for info in members:
            if _member_parts(info.filename) is None:
                raise DatasetError(
                    f"{name} contains the unsafe path {info.filename!r} (absolute or outside the archive); "
                    "nothing was extracted."
                )
        if sum(info.file_size for info in members) > MAX_UNZIPPED_BYTES:
            raise DatasetError(f"{name} unpacks to more than {MAX_UNZIPPED_BYTES // 1024**3} GB.")
        target.mkdir()
        budget = MAX_UNZIPPED_BYTES
        for info in members:
            budget -= _extract_member(archive, info, target.joinpath(*_member_parts(info.filename)), budget, name)


def _ignored_member(filename: str) -> bool:
    parts = filename.replace("\\", "/").split("/")
    return parts[0] == "__MACOSX" or parts[-1] == ".DS_Store" or parts[-1].startswith("._")


def _member_parts(filename: str) -> list[str] | None:
    """The path parts of a zip member, or None where it is absolute or climbs out with '..'."""
    name = filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return parts


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, budget: int, name: str) -> int:
    """Copy one member, counting real bytes (declared sizes can lie); return how many were written."""
    written = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(path, "wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > budget:
                    raise DatasetError(f"{name} unpacks to more than {MAX_UNZIPPED_BYTES // 1024**3} GB.")
                dst.write(chunk)
    except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, ValueError) as error:
        raise DatasetError(f"{name}: could not extract {info.filename!r} ({error}).") from None
    return written


def _unwrap_single_folder(root: Path) -> Path:
    """Archives often wrap everything in one top folder (fer2013/train/...): descend to where the data starts."""
    while True:
        children = list(root.iterdir())
        dirs = [p for p in children if p.is_dir()]
        if len(children) != 1 or len(dirs) != 1:
            return root
        only = dirs[0]
        if canonical_emotion(only.name) is not None or only.name.lower() in SPLIT_NAMES:
            return root
        root = only
