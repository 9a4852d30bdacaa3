"""Uploaded bytes -> one 32x32 RGB uint8 image (3,072 bytes, row-major HWC).

Accepted:
* ``application/octet-stream``: exactly 3,072 bytes, 32x32 RGB, row-major, HWC (as a board takes);
* ``image/png``, ``image/jpeg``, ``image/bmp``, ``image/webp``, decoded with Pillow. Other sizes are
  resized to 32x32 (bilinear, aspect ratio not kept: CIFAR-10 images are square); grayscale,
  palette, CMYK and alpha images are converted to RGB (alpha is dropped, not composited).
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from .errors import FleetvoteError

RAW_BYTES = 32 * 32 * 3
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/bmp": "BMP",
               "image/x-ms-bmp": "BMP", "image/webp": "WEBP"}
RAW_TYPES = ("application/octet-stream",)
_FORMATS = {"PNG": {"PNG"}, "JPEG": {"JPEG", "MPO"}, "BMP": {"BMP", "DIB"}, "WEBP": {"WEBP"}}
_DECODERS = sorted(set().union(*_FORMATS.values()) - {"MPO"})  # a JPEG plugin opens MPO files itself
# decompression-bomb guard: a 32x32 classifier has no use for more than this many input pixels
MAX_PIXELS = 4096 * 4096


class ImageError(FleetvoteError):
    """The upload cannot be turned into an image; ``status`` is the HTTP code to answer."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def decode(data: bytes, content_type: str | None) -> np.ndarray:
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in RAW_TYPES or (not ctype and len(data) == RAW_BYTES):
        if len(data) != RAW_BYTES:
            raise ImageError(f"raw body is {len(data)} bytes; application/octet-stream must be exactly "
                             f"{RAW_BYTES} bytes (32x32 RGB, row-major, HWC)", 422)
        return np.frombuffer(data, dtype=np.uint8).reshape(32, 32, 3).copy()
    if ctype and ctype not in IMAGE_TYPES:
        raise ImageError(f"unsupported content type {ctype!r}; send image/png, image/jpeg, image/bmp, "
                         "image/webp or application/octet-stream (3,072 raw bytes)", 415)
    from PIL import Image

    if not data:
        raise ImageError("empty upload: no image bytes", 422)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # only the formats the API names: without a content type, Pillow would otherwise try
            # every decoder it has (TIFF, GIF, PSD, EPS through ghostscript, ...)
            img = Image.open(io.BytesIO(data), formats=_DECODERS)
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"image is {img.width}x{img.height}; at most {MAX_PIXELS:,} pixels", 413)
            if ctype and img.format and img.format not in _FORMATS[IMAGE_TYPES[ctype]]:
                raise ImageError(f"content type says {ctype} but the data is {img.format}", 415)
            img.load()
            img = img.convert("RGB")
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large to decode safely ({exc})", 413) from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageError("the data is not a PNG, JPEG, BMP or WebP image", 422) from exc
    except Exception as exc:  # Pillow raises many types for damaged data
        raise ImageError(f"could not decode the image: damaged or truncated ({type(exc).__name__})", 422) from exc
    if img.size != (32, 32):
        img = img.resize((32, 32), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).copy()
