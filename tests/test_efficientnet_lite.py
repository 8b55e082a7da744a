"""EfficientNet-Lite0 with ImageNet weights from the registry package, read without PyTorch: the network knows
ImageNet (skimage's cat and coffee), the reader refuses anything but tensors, and the transfer base works offline."""

import collections
import pickle
import struct
import sys
import types
import zipfile

import cv2
import numpy as np
import pytest
import skimage.data

from fer_realtime.training.efficientnet_lite import (INPUT_MEAN, INPUT_STD, EfficientNetLiteConfig,
                                                     PretrainedWeightsMissing, build_efficientnet_lite0,
                                                     imagenet_weights_path, load_imagenet_weights)
from fer_realtime.training.torch_state_dict import StateDictError, read_state_dict

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


def _imagenet_input(image: np.ndarray, size: int = 224) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = cv2.resize(image[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)
    return ((square.astype(np.float32) - INPUT_MEAN) / INPUT_STD)[None]


def test_the_converted_network_knows_a_cat_and_a_cup_of_coffee():
    model = build_efficientnet_lite0(EfficientNetLiteConfig(include_top=True))
    assert load_imagenet_weights(model) == 99  # every convolution, batch normalisation and the classifier
    cat = model.predict(_imagenet_input(skimage.data.chelsea()), verbose=0)[0]
    coffee = model.predict(_imagenet_input(skimage.data.coffee()), verbose=0)[0]
    assert int(cat.argmax()) in CATS and cat[list(CATS)].sum() > 0.8
    assert int(coffee.argmax()) in COFFEE and coffee[list(COFFEE)].sum() > 0.8


def test_the_package_state_dict_holds_every_lite0_tensor():
    tensors = read_state_dict(imagenet_weights_path())
    assert tensors["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert tensors["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert tensors["_fc.weight"].shape == (1000, 1280) and tensors["_fc.weight"].dtype == np.float32
    assert not any("_se_" in name for name in tensors)  # Lite: no squeeze-excite


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch should-not-exist",))


def _legacy_file(path, tree, storages):
    """A state dict in torch.save's legacy layout (pickles, then each storage's size and bytes)."""
    with path.open("wb") as handle:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, handle, protocol=2)
        _FakeTorch.pickler(handle).dump(tree)
        pickle.dump(list(storages), handle, protocol=2)
        for data in storages.values():
            handle.write(struct.pack("<q", data.size) + data.tobytes())


class _FakeTorch:
    """Just enough of a `torch` module for the pickler to name torch.FloatStorage and torch._utils (not installed)."""

    FloatStorage = None  # the fake_torch fixture puts torch.FloatStorage here

    @staticmethod
    def pickler(handle):
        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _StorageRef):
                    return ("storage", _FakeTorch.FloatStorage, obj.key, "cpu", obj.numel)
                return None

        return Pickler(handle, protocol=2)


class _StorageRef:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


def _tensor(storage, offset, shape, stride):
    return (storage, offset, shape, stride)


@pytest.fixture
def fake_torch(monkeypatch):
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    storage_type = type("FloatStorage", (), {"__module__": "torch"})
    torch.FloatStorage = storage_type
    monkeypatch.setattr(_FakeTorch, "FloatStorage", storage_type)

    class Rebuilt:
        def __init__(self, *args):
            self.args = args

        def __reduce__(self):
            return (utils._rebuild_tensor_v2, self.args)

    def rebuild(*args):
        return Rebuilt(*args)

    rebuild.__module__, rebuild.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = rebuild
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return Rebuilt


def test_legacy_and_zip_files_read_with_their_strides(tmp_path, fake_torch):
    data = np.arange(12, dtype=np.float32)
    storage = _StorageRef("0", 12)
    # A (3, 4) tensor stored column-major (strides 1, 3), and a (2,) view at offset 10.
    tree = collections.OrderedDict(w=fake_torch(storage, 0, (3, 4), (1, 3), False, collections.OrderedDict()),
                                   b=fake_torch(storage, 10, (2,), (1,), False, collections.OrderedDict()))
    legacy = tmp_path / "legacy.pth"
    _legacy_file(legacy, tree, {"0": data})
    expected_w = data.reshape(4, 3).T
    read = read_state_dict(legacy)
    assert np.array_equal(read["w"], expected_w) and np.array_equal(read["b"], [10, 11])

    archive = tmp_path / "zipped.pth"
    with zipfile.ZipFile(archive, "w") as out:
        with out.open("archive/data.pkl", "w") as handle:
            _FakeTorch.pickler(handle).dump(tree)
        out.writestr("archive/data/0", data.tobytes())
    read = read_state_dict(archive)
    assert np.array_equal(read["w"], expected_w) and np.array_equal(read["b"], [10, 11])


def test_a_file_that_would_run_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pth"
    with evil.open("wb") as handle:
        pickle.dump(0x1950A86A20F9469CFC6C, handle, protocol=2)
        pickle.dump(_Evil(), handle, protocol=2)
    with pytest.raises(StateDictError, match="posix.system|os.system|never needs"):
        read_state_dict(evil)
    assert not (tmp_path / "should-not-exist").exists()


def test_truncated_and_foreign_files_get_one_sentence(tmp_path):
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(imagenet_weights_path().read_bytes()[:100_000])
    with pytest.raises(StateDictError, match="cut.pth"):
        read_state_dict(truncated)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(StateDictError, match="notes.pth"):
        read_state_dict(text)
    with pytest.raises(StateDictError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")
    model = build_efficientnet_lite0(EfficientNetLiteConfig(input_shape=(32, 32, 3)))
    with pytest.raises(PretrainedWeightsMissing, match="cut.pth"):
        load_imagenet_weights(model, truncated)


def test_the_default_transfer_base_is_imagenet_lite0_in_stages_without_a_file():
    from fer_realtime.training.architectures import TransferConfig, build_transfer

    built = build_transfer(TransferConfig(image_size=64, head_units=8))
    assert built.block_names == ["stem", *(f"stage{k}" for k in range(1, 8)), "top"]
    assert "ImageNet" in built.base_description and "Apache-2.0" in built.base_description
    backbone = built.model.get_layer("backbone")
    assert backbone.input_shape[1:] == (64, 64, 3)
    assert not any(w.trainable for w in backbone.weights)  # stage 0: the head alone trains
    reference = build_efficientnet_lite0(EfficientNetLiteConfig(input_shape=(64, 64, 3)))
    load_imagenet_weights(reference)
    assert np.array_equal(backbone.get_layer("stage6_block4_project_conv").get_weights()[0],
                          reference.get_layer("stage6_block4_project_conv").get_weights()[0])
    # Gray faces in [0, 1] reach the backbone as the ImageNet preprocessing: (255 p - 127) / 128 in each channel.
    kernel, bias = built.model.get_layer("to_rgb").get_weights()
    assert np.allclose(kernel * 1.0 + bias, (255 - 127) / 128) and np.allclose(bias, -127 / 128)
