"""Ingest an uploaded photo: validate it, decode it once, orient it, and normalise it to 8-bit sRGB RGB.

Accepted formats are JPEG (including multi-picture MPO files from phones), PNG, WebP and HEIC/HEIF, detected from
the file's content; the file name plays no part. Animated or multi-image files (animated WebP, APNG, MPO, HEIF
with several images) are accepted and their first (primary) image is used.

Every refusal raises `InputError` with one sentence the seller can act on, before anything could be stored.
Truncation detection relies on `PIL.ImageFile.LOAD_TRUNCATED_IMAGES` keeping its default, False; this module never
changes that process-wide setting.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from pipeline.errors import InputError

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 50_000_000
MIN_SHORT_SIDE = 256
# A progressive JPEG is decoded once per scan: phones and editors write about 10, while a file of thousands of
# tiny scans takes seconds per hundred kilobytes to decode (5,000 scans of a 7000 x 7000 image: 516 KB, 4.9 s).
MAX_JPEG_SCANS = 100

pillow_heif.register_heif_opener()

ACCEPTED_FORMATS_TEXT = "JPEG, PNG, WebP or HEIC"
_MEGABYTE = 1024 * 1024
_WHITE = (255, 255, 255)

# PIL format name -> (our format, extension for storing the original). MPO is how PIL names a JPEG that carries
# extra pictures (depth maps, previews), which many phones write.
_FORMATS = {
    "JPEG": ("jpeg", ".jpg"),
    "MPO": ("jpeg", ".jpg"),
    "PNG": ("png", ".png"),
    "WEBP": ("webp", ".webp"),
    "HEIF": ("heif", ".heic"),
}
_PIL_FORMATS_TO_TRY = ["JPEG", "PNG", "WEBP", "HEIF"]

# Signatures of files sellers upload by mistake, only to name them in the refusal.
_KNOWN_SIGNATURES = (
    (b"GIF87a", "a GIF"),
    (b"GIF89a", "a GIF"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"8BPS", "a Photoshop document"),
    (b"\x00\x00\x01\x00", "an icon file"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (b"PK\x03\x04", "a ZIP archive"),
)
_FTYP_BRANDS = {b"avif": "an AVIF image", b"avis": "an AVIF image", b"qt  ": "a video", b"isom": "a video",
                b"mp41": "a video", b"mp42": "a video", b"M4V ": "a video", b"3gp4": "a video"}

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
# ICC colour space -> the image mode a profile of that space can transform.
_ICC_SPACE_TO_MODE = {"RGB": "RGB", "GRAY": "L", "CMYK": "CMYK"}
_SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@dataclass(frozen=True)
class IngestedImage:
    image: Image.Image  # RGB, EXIF orientation applied, fully loaded
    original: bytes  # the file exactly as uploaded
    format: str  # "jpeg" | "png" | "webp" | "heif", detected from content
    extension: str  # ".jpg" | ".png" | ".webp" | ".heic", for storing the original


def ingest_file(path: str | os.PathLike) -> IngestedImage:
    """Ingest the file at `path`; its size on disk is checked before it is read."""
    _check_byte_size(os.stat(path).st_size)
    with open(path, "rb") as file:
        # One byte past the limit, in case the file grew after the stat.
        data = file.read(MAX_UPLOAD_BYTES + 1)
    return ingest_bytes(data)


def ingest_bytes(data: bytes) -> IngestedImage:
    """Validate and decode an uploaded file; raise `InputError` with a seller-facing sentence if it is unusable."""
    _check_byte_size(len(data))
    source = _open(data)
    _check_dimensions(source.size)
    if source.format in ("JPEG", "MPO"):
        _check_jpeg_scans(data)
    _decode(source)
    _apply_orientation(source)
    rgb = _to_rgb(source)
    our_format, extension = _FORMATS[source.format]
    return IngestedImage(image=rgb, original=data, format=our_format, extension=extension)


def _check_byte_size(size: int) -> None:
    if size == 0:
        raise InputError("The file is empty (0 bytes); upload the photo again.")
    if size > MAX_UPLOAD_BYTES:
        shown = math.ceil(size / _MEGABYTE * 10) / 10  # round up so a file just over the limit never shows "25.0"
        raise InputError(
            f"This file is {shown:.1f} MB; the limit is {MAX_UPLOAD_BYTES // _MEGABYTE} MB. "
            "Export a smaller JPEG from your phone and upload that."
        )


def _open(data: bytes) -> ImageFile.ImageFile:
    """Read the header only: format and dimensions, no pixels."""
    try:
        return Image.open(io.BytesIO(data), formats=_PIL_FORMATS_TO_TRY)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(_bomb_message(str(exc))) from exc
    except UnidentifiedImageError as exc:
        raise InputError(_unsupported_message(data)) from exc
    except Exception as exc:  # a recognised format whose header is damaged
        raise InputError(_damaged_message()) from exc


def _check_jpeg_scans(data: bytes) -> None:
    # In JPEG data the bytes FF DA only ever start a scan: the encoder stuffs a 00 after every FF it writes.
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise InputError(
            f"This JPEG is stored in {scans} progressive scans; the limit is {MAX_JPEG_SCANS}. "
            "Open it and save it again as a normal JPEG, then upload that."
        )


def _bomb_message(pil_message: str) -> str:
    match = re.search(r"\((\d+) pixels\)", pil_message)
    if match is None:
        return _too_many_pixels_message("This image has too many pixels")
    return _too_many_pixels_message(f"This image is {int(match.group(1)) / 1e6:.1f} megapixels")


def _too_many_pixels_message(description: str) -> str:
    return (
        f"{description}; the limit is {MAX_PIXELS // 1_000_000} megapixels. "
        "Upload a smaller version of the photo."
    )


def _unsupported_message(data: bytes) -> str:
    if _looks_like_accepted_format(data):
        return _damaged_message()
    kind = _name_unsupported_kind(data)
    if kind is None:
        return f"This file is not a photo Resell Studio can read; upload a {ACCEPTED_FORMATS_TEXT} photo."
    return (
        f"This file is {kind}; Resell Studio accepts {ACCEPTED_FORMATS_TEXT} photos, "
        "so export the photo as one of those."
    )


def _looks_like_accepted_format(data: bytes) -> bool:
    return (
        data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"))
        or (data.startswith(b"RIFF") and data[8:12] == b"WEBP")
        or (data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS)
    )


def _name_unsupported_kind(data: bytes) -> str | None:
    for signature, kind in _KNOWN_SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12])
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")):
        return "an SVG or XML file"
    if head.startswith((b"<!doctype html", b"<html")):
        return "a web page"
    return None


def _damaged_message() -> str:
    return (
        "This image file is damaged or incomplete and cannot be read; "
        "export the photo again from your phone and upload it."
    )


def _check_dimensions(size: tuple[int, int]) -> None:
    # Both checks are independent of orientation: a rotation swaps the sides but keeps the short side and the area.
    width, height = size
    if width * height > MAX_PIXELS:
        description = f"This image is {width} x {height} pixels ({width * height / 1e6:.1f} megapixels)"
        raise InputError(_too_many_pixels_message(description))
    if min(width, height) < MIN_SHORT_SIDE:
        raise InputError(
            f"This image is {width} x {height} pixels; its shorter side must be at least {MIN_SHORT_SIDE} pixels. "
            "Upload the full-size photo rather than a thumbnail or a small crop."
        )


def _decode(image: ImageFile.ImageFile) -> None:
    """Decode every pixel now, so a truncated or corrupt file is refused here and not later."""
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(_bomb_message(str(exc))) from exc
    except OSError as exc:
        if "truncated" in str(exc):
            raise InputError(
                "This image file is incomplete (it was cut off while uploading or copying); upload it again."
            ) from exc
        raise InputError(_damaged_message()) from exc
    except Exception as exc:
        raise InputError(_damaged_message()) from exc


def _apply_orientation(image: Image.Image) -> None:
    """Rotate or flip in place as the EXIF Orientation tag says; unreadable EXIF is ignored, not fatal."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:
        pass


def _to_rgb(image: Image.Image) -> Image.Image:
    icc_profile = image.info.get("icc_profile")
    image = _to_rgb_l_or_cmyk(image)
    if icc_profile:
        image = _apply_icc_profile(image, icc_profile)
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_rgb_l_or_cmyk(image: Image.Image) -> Image.Image:
    """Flatten transparency on white and reduce bit depth, leaving a mode an ICC profile can apply to."""
    if image.mode in _SIXTEEN_BIT_MODES:  # a rare tRNS on 16-bit grey is ignored
        return _sixteen_bit_grey_to_l(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return _flatten_on_white(image)
    if image.mode in ("RGB", "L", "CMYK"):
        return image
    return image.convert("RGB")


def _flatten_on_white(image: Image.Image) -> Image.Image:
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    flattened = Image.new("RGB", rgba.size, _WHITE)
    flattened.paste(rgba, mask=rgba.getchannel("A"))
    return flattened


def _sixteen_bit_grey_to_l(image: Image.Image) -> Image.Image:
    # PIL's own conversion clips at 255 instead of scaling 0..65535 down to 0..255.
    wide = np.asarray(image).astype(np.uint32)
    np.clip(wide, 0, 65535, out=wide)
    eight_bit = ((wide * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(eight_bit)


def _apply_icc_profile(image: Image.Image, icc_profile: bytes) -> Image.Image:
    """Convert to sRGB with the embedded profile.

    A broken or mismatched profile leaves the pixels as they are, and is dropped so that nobody re-embeds it later.
    """
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        if _ICC_SPACE_TO_MODE.get(profile.profile.xcolor_space.strip()) == image.mode:
            if _is_srgb(profile):
                return image
            return ImageCms.profileToProfile(image, profile, _SRGB_PROFILE, outputMode="RGB")
    except Exception:
        pass
    image.info.pop("icc_profile", None)
    return image


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    # Converting sRGB to sRGB changes nothing and costs ~0.3 s on a 12 MP photo.
    return "srgb" in profile.profile.profile_description.lower()
