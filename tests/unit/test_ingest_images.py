"""Reference image checks: real PNG/JPEG/WebP only, bounded bytes and pixels, no bombs."""

from __future__ import annotations

import pytest

from services.ingest.errors import IngestError, Invalid, TooLarge, UnsupportedMedia
from services.ingest.images import MAX_IMAGE_BYTES, check_image
from services.ingest.references import sniff_mime
from tests.support.ingest_images import huge_canvas_png, image_bytes, truncated


@pytest.mark.parametrize(
    ("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]
)
def test_png_jpeg_and_webp_are_accepted_with_their_size(fmt: str, mime: str) -> None:
    data = image_bytes(fmt, (40, 30))
    checked = check_image(data)
    assert (checked.mime, checked.width, checked.height, checked.data) == (mime, 40, 30, data)
    assert sniff_mime(data[:16]) == mime


def test_the_largest_accepted_canvas_is_4096_square() -> None:
    assert check_image(huge_canvas_png(4096, 4096)).width == 4096


@pytest.mark.parametrize(
    ("data", "error", "code"),
    [
        (image_bytes("GIF"), UnsupportedMedia, "not_an_image"),
        (image_bytes("BMP1"), UnsupportedMedia, "not_an_image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", UnsupportedMedia, "not_an_image"),
        (b"", Invalid, "empty_image"),
        (truncated(image_bytes("PNG", (300, 300), "red")), Invalid, "corrupt_image"),
        (truncated(image_bytes("JPEG", (300, 300), "red")), Invalid, "corrupt_image"),
        (huge_canvas_png(4097, 16), TooLarge, "too_many_pixels"),
        (huge_canvas_png(5000, 5000), TooLarge, "too_many_pixels"),
        (huge_canvas_png(15000, 15000), TooLarge, "too_many_pixels"),
        (b"\x89PNG" + bytes(MAX_IMAGE_BYTES), TooLarge, "too_large"),
    ],
)
def test_anything_else_is_refused_with_its_status(
    data: bytes, error: type[IngestError], code: str
) -> None:
    with pytest.raises(error) as raised:
        check_image(data)
    assert raised.value.problems[0].code == code
    assert raised.value.problems[0].field == "image"


def test_a_refused_format_is_named_when_pillow_knows_it() -> None:
    with pytest.raises(UnsupportedMedia) as raised:
        check_image(image_bytes("GIF"))
    assert "GIF" in raised.value.problems[0].message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("tail", [b"PK\x03\x04" + bytes(100), b"<script>alert(1)</script>"])
def test_an_image_with_something_appended_is_refused(fmt: str, tail: bytes) -> None:
    with pytest.raises(Invalid) as raised:
        check_image(image_bytes(fmt) + tail)
    assert raised.value.problems[0].code == "trailing_data"


def test_zero_padding_after_a_jpeg_is_tolerated() -> None:
    assert check_image(image_bytes("JPEG") + bytes(16)).mime == "image/jpeg"
