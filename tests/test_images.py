"""Upload decoding: every accepted format, and a clear 4xx for every bad one."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fleetvote.images import ImageError, decode


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


RGB = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def test_raw_bytes_are_taken_as_hwc_rgb():
    assert np.array_equal(decode(RGB.tobytes(), "application/octet-stream"), RGB)


@pytest.mark.parametrize("fmt,ctype", [("PNG", "image/png"), ("BMP", "image/bmp"), ("WEBP", "image/webp")])
def test_lossless_formats_round_trip_exactly(fmt, ctype):
    data = encoded(Image.fromarray(RGB), fmt) if fmt != "WEBP" else None
    if fmt == "WEBP":
        buf = io.BytesIO()
        Image.fromarray(RGB).save(buf, "WEBP", lossless=True)
        data = buf.getvalue()
    assert np.array_equal(decode(data, ctype), RGB)


def test_other_sizes_grayscale_and_alpha_are_converted():
    big = Image.fromarray(np.zeros((64, 48), np.uint8))  # grayscale, 48x64
    assert decode(encoded(big, "PNG"), "image/png").shape == (32, 32, 3)
    rgba = Image.fromarray(np.dstack([RGB, np.full((32, 32), 7, np.uint8)]), "RGBA")
    assert np.array_equal(decode(encoded(rgba, "PNG"), "image/png"), RGB)
    jpeg = decode(encoded(Image.fromarray(RGB), "JPEG"), "image/jpeg")
    assert jpeg.shape == (32, 32, 3)


@pytest.mark.parametrize("data,ctype,status,match", [
    (b"\x00" * 3071, "application/octet-stream", 422, "exactly 3072"),
    (b"\x00" * 3073, "application/octet-stream", 422, "exactly 3072"),
    (b"not an image", "image/png", 422, "not a PNG"),
    (b"", "image/png", 422, "empty"),
    (b"GIF89a", "image/gif", 415, "unsupported content type"),
    (b"{}", "application/json", 415, "unsupported content type"),
])
def test_bad_uploads_get_a_status_and_a_reason(data, ctype, status, match):
    with pytest.raises(ImageError, match=match) as e:
        decode(data, ctype)
    assert e.value.status == status


def test_truncated_png_is_a_clear_error():
    data = encoded(Image.fromarray(RGB), "PNG")
    with pytest.raises(ImageError) as e:
        decode(data[: len(data) // 2], "image/png")
    assert e.value.status == 422


def test_content_type_that_lies_is_refused():
    with pytest.raises(ImageError, match="content type says image/jpeg but the data is PNG"):
        decode(encoded(Image.fromarray(RGB), "PNG"), "image/jpeg")


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_a_format_the_api_does_not_name_is_refused_even_without_a_content_type(fmt):
    import io

    from PIL import Image

    from fleetvote.images import ImageError, decode

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, format=fmt)
    with pytest.raises(ImageError) as exc:
        decode(buf.getvalue(), None)
    assert exc.value.status == 422
