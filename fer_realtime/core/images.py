"""Reading user images safely: size limits before decoding, EXIF rotation, any bit depth or alpha -> BGR uint8."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from .errors import ImageReadError

MAX_FILE_BYTES = 40 * 1024 * 1024
MAX_PIXELS = 40_000_000  # about 7700 x 5200; larger images are refused before they are decoded
IMAGE_TYPES = ("jpg", "jpeg", "png", "webp", "bmp")


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode image bytes into an HxWx3 uint8 BGR array, or raise ImageReadError with one clear sentence."""
    return _open_checked(data, name, decode=True)


def image_size(data: bytes, name: str = "image") -> tuple[int, int]:
    """(width, height) from the image's header alone, no pixel decoded, after the same checks as decode_image."""
    return _open_checked(data, name, decode=False)


def _open_checked(data: bytes, name: str, decode: bool):
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) == 0:
        raise ImageReadError(f"{name} is empty (0 bytes).")
    if len(data) > MAX_FILE_BYTES:
        raise ImageReadError(f"{name} is {len(data) / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise ImageReadError(
                        f"{name} is {width}x{height} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels."
                    )
                if width < 1 or height < 1:
                    raise ImageReadError(f"{name} has no pixels.")
                if not decode:
                    return width, height
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_bgr(img)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{name} is not an image in a format we read ({', '.join(IMAGE_TYPES)}).") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageReadError(
            f"{name} declares more pixels than can be decoded safely; the limit is {MAX_PIXELS / 1e6:.0f} megapixels."
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(f"{name} is damaged or truncated and cannot be decoded ({exc}).") from None


def _to_bgr(img) -> np.ndarray:
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img, dtype=np.float64)
        top = array.max()
        array = (array / (65535.0 if top > 255 else 255.0) * 255.0) if top > 0 else array
        gray = np.clip(array, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "F":
        array = np.asarray(img, dtype=np.float64)
        lo, hi = float(array.min()), float(array.max())
        gray = ((array - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(array)).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1])


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into BGR uint8, or raise ImageReadError naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path} does not exist.")
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image file.")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImageReadError(f"{path.name} is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path} cannot be read ({exc.strerror}).") from None
    return decode_image(data, path.name)
