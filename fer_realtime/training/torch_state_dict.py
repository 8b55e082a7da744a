"""A PyTorch state dict read as NumPy arrays, without PyTorch and without running pickled code.

`torch.save` writes a pickle whose tensors point at raw storages: in the legacy format (PyTorch < 1.6) the
storages follow the pickle in the same file, in the zip format they are archive entries. The unpickler here
resolves only the handful of names a plain state dict uses (an OrderedDict, tensor rebuilding, storage types);
any other global in the file is refused, so a file cannot make it run code — the restriction
`torch.load(..., weights_only=True)` applies, in a few dozen lines and with no PyTorch installed.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import FerError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class StateDictError(FerError, ValueError):
    """A file is not a plain PyTorch state dict this reader accepts."""


@dataclass
class _Storage:
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise StateDictError("a tensor points at a storage the file does not hold")
        itemsize = data.dtype.itemsize
        needed = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) + 1 if all(self.shape) else 0
        if needed > data.size:
            raise StateDictError("a tensor reaches past the end of its storage")
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.shape, strides=tuple(s * itemsize for s in self.stride), writeable=False
        )
        return np.array(view, copy=True)  # contiguous, and independent of the file's buffer


def _rebuild_tensor(storage, offset, shape, stride, *_ignored) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(n) for n in shape), tuple(int(s) for s in stride))


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(np.dtype(_STORAGE_DTYPES[name]))
        raise StateDictError(f"the file asks for {module}.{name}, which a plain state dict never needs")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage" or not isinstance(pid[1], _StorageType):
            raise StateDictError("the file holds an object that is not a tensor storage")
        key = str(pid[2])
        storage = self._storages.setdefault(key, _Storage(pid[1].dtype, int(pid[4])))
        return storage


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Name -> array for every tensor of a state dict saved by `torch.save` (legacy or zip format).

    Raises StateDictError (one sentence) if the file is missing, truncated, or holds anything but tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise StateDictError(f"The weights file {path} does not exist.")
    storages: dict[str, _Storage] = {}
    try:
        if zipfile.is_zipfile(path):
            tree = _read_zip(path, storages)
        else:
            tree = _read_legacy(path, storages)
    except StateDictError as exc:
        raise StateDictError(f"{path.name} is not a plain PyTorch state dict: {exc}.") from exc
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, KeyError, IndexError, TypeError) as exc:
        raise StateDictError(f"{path.name} is not a readable PyTorch state dict ({type(exc).__name__}).") from exc
    if not isinstance(tree, dict) or not all(isinstance(v, _TensorRef) for v in tree.values()):
        raise StateDictError(f"{path.name} does not hold a state dict (a mapping of names to tensors).")
    try:
        return {str(name): ref.array() for name, ref in tree.items()}
    except StateDictError as exc:
        raise StateDictError(f"{path.name} is not a plain PyTorch state dict: {exc}.") from exc


def _read_legacy(path: Path, storages: dict[str, _Storage]):
    with path.open("rb") as file:
        if _RestrictedUnpickler(file, storages).load() != _LEGACY_MAGIC:
            raise StateDictError("it does not start with PyTorch's magic number")
        _RestrictedUnpickler(file, storages).load()  # protocol version
        _RestrictedUnpickler(file, storages).load()  # system info (byte order, type sizes)
        tree = _RestrictedUnpickler(file, storages).load()
        keys = _RestrictedUnpickler(file, storages).load()
        for key in keys:
            storage = storages[str(key)]
            (numel,) = struct.unpack("<q", file.read(8))
            raw = file.read(numel * storage.dtype.itemsize)
            if len(raw) != numel * storage.dtype.itemsize:
                raise StateDictError("it ends inside a tensor's data")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return tree


def _read_zip(path: Path, storages: dict[str, _Storage]):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise StateDictError("the archive has no single data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        with archive.open(pickles[0]) as file:
            tree = _RestrictedUnpickler(file, storages).load()
        for key, storage in storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)[: storage.numel]
    return tree
