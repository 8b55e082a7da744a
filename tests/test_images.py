import numpy as np
import pytest
from PIL import Image

from fer_realtime.core.errors import ImageReadError
from fer_realtime.core.images import decode_image, read_image
from helpers import encode, png_header


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
def test_common_formats_decode_to_bgr(fmt):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 250  # red
    out = decode_image(encode(Image.fromarray(rgb), fmt), f"x.{fmt.lower()}")
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert out[..., 2].mean() > 200 and out[..., 0].mean() < 40  # BGR order


def test_unusual_but_valid_images():
    rgba = Image.fromarray(np.zeros((8, 8, 4), np.uint8))  # fully transparent -> white background
    assert decode_image(encode(rgba, "PNG")).min() == 255
    sixteen = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    assert decode_image(encode(sixteen, "PNG")).min() == 255
    gray = Image.fromarray(np.full((5, 7), 77, np.uint8))
    assert decode_image(encode(gray, "PNG")).shape == (5, 7, 3)
    assert decode_image(encode(gray.resize((1, 1)), "PNG")).shape == (1, 1, 3)


def test_exif_rotation_is_applied():
    img = Image.fromarray(np.zeros((20, 40, 3), np.uint8))  # 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    out = decode_image(encode(img, "JPEG", exif=exif))
    assert out.shape[:2] == (40, 20)


def test_jpeg_with_wrong_extension_is_read(tmp_path):
    path = tmp_path / "photo.gif"
    path.write_bytes(encode(Image.fromarray(np.zeros((10, 10, 3), np.uint8)), "JPEG"))
    assert read_image(path).shape == (10, 10, 3)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an image"),
        (b"<!doctype html><html><body>hello</body></html>", "not an image"),
        (png_header(100_000, 100_000), "limit"),
    ],
)
def test_bad_bytes_give_one_clear_error(data, message):
    with pytest.raises(ImageReadError, match=message):
        decode_image(data, "upload.jpg")


def test_truncated_jpeg(tmp_path):
    data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        read_image(path)


def test_zip_named_jpg_and_directory(tmp_path):
    import zipfile

    path = tmp_path / "archive.jpg"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.txt", "x")
    with pytest.raises(ImageReadError, match="not an image"):
        read_image(path)
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "missing.png")
