"""Checking that an uploaded reference image really is one, and a sane one.

Order of checks, cheapest first:

1. size in bytes (the HTTP layer stops reading past :data:`MAX_IMAGE_BYTES`) → 413;
2. Pillow identifies the format from the bytes (the client's Content-Type is not
   trusted): PNG, JPEG or WebP only → otherwise 415;
3. dimensions from the header, *before* any pixel is decoded: at most
   :data:`MAX_SIDE` per side and :data:`MAX_PIXELS` in all → otherwise 413. This is the
   decompression-bomb guard: a tiny file claiming a huge canvas is never decoded
   (Pillow's own ``DecompressionBombError`` is caught too);
4. a full decode (``verify`` then ``load``): truncated or corrupt data → 422;
5. nothing after the image's own end (a PNG's ``IEND``, a JPEG's ``EOI``, a WebP's RIFF
   size): a file that is also something else (an image with a ZIP or a script
   appended, a "polyglot") is refused with 422, since the stored bytes are served
   back publicly as they are.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import warnings

from PIL import Image, UnidentifiedImageError

from services.ingest.errors import Invalid, TooLarge, UnsupportedMedia

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_SIDE = 4096
MAX_PIXELS = 4096 * 4096
#: Pillow format name → the MIME type stored and served.
ACCEPTED = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
UPLOAD_MEDIA_TYPES = frozenset(ACCEPTED.values())


@dataclasses.dataclass(frozen=True)
class CheckedImage:
    data: bytes
    mime: str
    width: int
    height: int


def check_image(data: bytes) -> CheckedImage:
    """``data`` if it is an acceptable image; raises 413, 415 or 422 otherwise.

    CPU-bound (a full decode): call it in a worker thread.
    """
    if len(data) > MAX_IMAGE_BYTES:
        raise TooLarge(
            f"the image is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES}", field="image"
        )
    if not data:
        raise Invalid("the image is empty", field="image", code="empty_image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _decode(data)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise TooLarge(
                f"the image claims too many pixels (limit {MAX_SIDE}x{MAX_SIDE})",
                field="image",
                code="too_many_pixels",
            ) from None


def _decode(data: bytes) -> CheckedImage:
    try:
        with Image.open(io.BytesIO(data), formats=list(ACCEPTED)) as image:
            fmt = str(image.format)
            width, height = image.size
    except UnidentifiedImageError:
        raise UnsupportedMedia(
            f"not a PNG, JPEG or WebP image{_other_format(data)}",
            field="image",
            code="not_an_image",
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise Invalid(
            f"the image cannot be read: {exc}", field="image", code="corrupt_image"
        ) from None
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise TooLarge(
            f"the image is {width}x{height} pixels; at most {MAX_SIDE}x{MAX_SIDE} are accepted",
            field="image",
            code="too_many_pixels",
        )
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as image:
            image.verify()
        with Image.open(io.BytesIO(data), formats=[fmt]) as image:
            image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise Invalid(
            f"the {fmt} data is truncated or corrupt: {exc}", field="image", code="corrupt_image"
        ) from None
    if has_trailing_data(fmt, data):
        raise Invalid(
            f"data follows the end of the {fmt} image (a file that is also something else?); "
            "send the image alone",
            field="image",
            code="trailing_data",
        )
    return CheckedImage(data=data, mime=ACCEPTED[fmt], width=width, height=height)


def has_trailing_data(fmt: str, data: bytes) -> bool:
    """Whether bytes follow the end of the image proper."""
    if fmt == "PNG":
        return _png_end(data) != len(data)
    if fmt == "JPEG":
        # Some encoders pad with zeros after EOI; anything else is not part of the image.
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if fmt == "WEBP":
        declared = 8 + int(struct.unpack_from("<I", data, 4)[0])
        return len(data) > declared + declared % 2
    return False


def _png_end(data: bytes) -> int | None:
    """The offset just after the ``IEND`` chunk, or None if there is none."""
    offset = 8
    while offset + 12 <= len(data):
        length = int(struct.unpack_from(">I", data, offset)[0])
        kind = data[offset + 4 : offset + 8]
        offset += 12 + length
        if kind == b"IEND":
            return offset
    return None


def _other_format(data: bytes) -> str:
    """`` (it is a GIF)`` when Pillow knows the format but ingest does not take it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return f" (it is {image.format})"
    except Exception:
        return ""
