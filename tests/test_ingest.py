"""Ingest: every input is generated here; nothing is read from shared data."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from pipeline.errors import InputError
from pipeline.ingest import MAX_UPLOAD_BYTES, IngestedImage, ingest_bytes, ingest_file

from image_files import encode, lossless_webp_declaring, png_by_hand

ACCEPTED_NAMES = "JPEG, PNG, WebP or HEIC"
RED, GREEN, BLUE, YELLOW, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (128, 128, 128)
ORIENTATION_TAG = 0x0112
# D50-adapted colorants of sRGB, for building test ICC profiles.
SRGB_RED, SRGB_GREEN, SRGB_BLUE = (0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141)


# ---------- input builders ----------


def corner_photo(size: tuple[int, int] = (400, 300)) -> Image.Image:
    """Grey with a solid block in each corner: red top-left, green top-right, blue bottom-left, yellow bottom-right."""
    width, height = size
    image = Image.new("RGB", size, GREY)
    block_w, block_h = width // 4, height // 4
    image.paste(RED, (0, 0, block_w, block_h))
    image.paste(GREEN, (width - block_w, 0, width, block_h))
    image.paste(BLUE, (0, height - block_h, block_w, height))
    image.paste(YELLOW, (width - block_w, height - block_h, width, height))
    return image


def corner_colours(image: Image.Image) -> tuple[tuple[int, ...], ...]:
    width, height = image.size
    inset_x, inset_y = width // 10, height // 10
    points = [(inset_x, inset_y), (width - inset_x, inset_y), (inset_x, height - inset_y),
              (width - inset_x, height - inset_y)]
    return tuple(image.getpixel(point) for point in points)


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes = b"") -> bytes:
    """A PNG written by hand: for 16-bit RGB (PIL cannot write it) and for headers that lie about the size."""
    return png_by_hand(width, height, bit_depth, colour_type, zlib.compress(rows))


def sixteen_bit_rgb_png(pixel: tuple[int, int, int], size: int = 256) -> bytes:
    row = b"\x00" + struct.pack(">HHH", *pixel) * size  # filter byte 0, then big-endian samples
    return raw_png(size, size, 16, 2, row * size)


def icc_rgb_profile(red, green, blue, gamma: float = 2.2, name: str = "Test RGB") -> bytes:
    """A minimal ICC v2 matrix/TRC display profile."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(values) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(s15(v) for v in values)

    ascii_name = name.encode() + b"\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(ascii_name)) + ascii_name + b"\0" * 8 + b"\0" * 70
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", xyz((0.9642, 1.0, 0.8249))), (b"rXYZ", xyz(red)), (b"gXYZ", xyz(green)),
            (b"bXYZ", xyz(blue)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    first_offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, payload in tags:
        payload += b"\0" * (-len(payload) % 4)
        table += signature + struct.pack(">II", first_offset + len(body), len(payload))
        body += payload
    header = (struct.pack(">I", first_offset + len(body)) + b"\0" * 4 + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 28 + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + body


def assert_close(actual, expected, tolerance: int) -> None:
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)), (actual, expected)


def refusal(data: bytes) -> str:
    with pytest.raises(InputError) as caught:
        ingest_bytes(data)
    return str(caught.value)


# ---------- accepted formats, detected from content ----------


@pytest.mark.parametrize(
    ("pil_format", "options", "expected_format", "expected_extension", "misleading_name"),
    [
        ("JPEG", {"quality": 95}, "jpeg", ".jpg", "photo.png"),
        ("PNG", {}, "png", ".png", "photo.jpg"),
        ("WEBP", {"quality": 95}, "webp", ".webp", "photo"),
        ("HEIF", {"quality": 95}, "heif", ".heic", "IMG_0001.JPG"),
    ],
)
def test_accepts_each_format_whatever_the_file_name(
    tmp_path, pil_format, options, expected_format, expected_extension, misleading_name
):
    data = encode(corner_photo(), pil_format, **options)
    path = tmp_path / misleading_name
    path.write_bytes(data)

    result = ingest_file(path)

    assert isinstance(result, IngestedImage)
    assert (result.format, result.extension) == (expected_format, expected_extension)
    assert result.original == data
    assert result.image.mode == "RGB" and result.image.size == (400, 300)
    for actual, expected in zip(corner_colours(result.image), (RED, GREEN, BLUE, YELLOW)):
        assert_close(actual, expected, tolerance=12)


def test_accepts_str_path_and_keeps_exact_bytes(tmp_path):
    data = encode(corner_photo(), "JPEG") + b"trailing bytes some phones append"
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    result = ingest_file(str(path))
    assert result.original == data
    assert result.format == "jpeg"


def test_multi_picture_jpeg_from_a_phone_is_a_jpeg():
    data = encode(corner_photo(), "MPO", save_all=True, append_images=[Image.new("RGB", (400, 300))])
    result = ingest_bytes(data)
    assert (result.format, result.extension) == ("jpeg", ".jpg")
    assert_close(corner_colours(result.image)[0], RED, tolerance=12)


def test_animated_webp_uses_the_first_frame():
    frames = [Image.new("RGB", (300, 300), RED), Image.new("RGB", (300, 300), BLUE)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    result = ingest_bytes(data)
    assert result.format == "webp"
    assert result.image.getpixel((150, 150)) == RED


def test_image_is_fully_loaded_and_independent_of_the_upload_buffer():
    result = ingest_bytes(encode(corner_photo(), "PNG"))
    assert result.image.getpixel((0, 0)) == RED
    assert result.image.tobytes()  # no lazy file handle left to read


# ---------- EXIF orientation ----------

# What a camera stores for each orientation, given the upright picture: the inverse of what the viewer applies.
STORED_FROM_UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", sorted(STORED_FROM_UPRIGHT))
def test_exif_orientation_is_applied(orientation):
    upright = corner_photo((400, 300))
    method = STORED_FROM_UPRIGHT[orientation]
    stored = upright if method is None else upright.transpose(method)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation

    result = ingest_bytes(encode(stored, "PNG", exif=exif.tobytes()))

    assert result.image.size == (400, 300)
    assert corner_colours(result.image) == (RED, GREEN, BLUE, YELLOW)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_in_a_jpeg(orientation):
    upright = corner_photo((400, 300))
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    data = encode(upright.transpose(STORED_FROM_UPRIGHT[orientation]), "JPEG", quality=95, exif=exif.tobytes())

    result = ingest_bytes(data)

    assert result.image.size == (400, 300)
    for actual, expected in zip(corner_colours(result.image), (RED, GREEN, BLUE, YELLOW)):
        assert_close(actual, expected, tolerance=12)


def test_unreadable_exif_is_ignored():
    data = encode(corner_photo(), "JPEG", exif=b"Exif\x00\x00garbage that is not a TIFF header")
    result = ingest_bytes(data)
    assert result.image.size == (400, 300)


# ---------- colour modes to RGB ----------


def test_rgba_is_flattened_on_white():
    image = Image.new("RGBA", (300, 300), (255, 0, 0, 0))  # fully transparent red
    image.paste((0, 0, 255, 128), (0, 0, 100, 100))  # half-transparent blue
    image.paste((0, 255, 0, 255), (200, 200, 300, 300))  # opaque green
    result = ingest_bytes(encode(image, "PNG"))
    assert result.image.mode == "RGB"
    assert result.image.getpixel((150, 150)) == (255, 255, 255)
    assert_close(result.image.getpixel((50, 50)), (127, 127, 255), tolerance=2)
    assert result.image.getpixel((250, 250)) == GREEN


def test_transparent_webp_is_flattened_on_white():
    image = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    result = ingest_bytes(encode(image, "WEBP", lossless=True))
    assert result.image.getpixel((10, 10)) == (255, 255, 255)


def test_grey_with_alpha_is_flattened_on_white():
    image = Image.new("LA", (300, 300), (0, 0))  # transparent black
    image.paste((0, 255), (0, 0, 100, 100))  # opaque black
    result = ingest_bytes(encode(image, "PNG"))
    assert result.image.getpixel((200, 200)) == (255, 255, 255)
    assert result.image.getpixel((50, 50)) == (0, 0, 0)


def test_palette_with_transparency_is_flattened_on_white():
    image = Image.new("P", (300, 300), 0)
    image.putpalette([0, 0, 0] + list(RED) + [0] * (254 * 3))
    image.paste(1, (0, 0, 100, 100))
    result = ingest_bytes(encode(image, "PNG", transparency=0))
    assert result.image.getpixel((200, 200)) == (255, 255, 255)
    assert result.image.getpixel((50, 50)) == RED


def test_palette_without_transparency():
    image = corner_photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    result = ingest_bytes(encode(image, "PNG"))
    assert result.image.mode == "RGB"
    assert corner_colours(result.image) == (RED, GREEN, BLUE, YELLOW)


def test_grey_becomes_three_equal_channels():
    result = ingest_bytes(encode(Image.new("L", (300, 300), 77), "PNG"))
    assert result.image.mode == "RGB"
    assert result.image.getpixel((5, 5)) == (77, 77, 77)


def test_one_bit_becomes_black_and_white():
    image = Image.new("1", (300, 300), 0)
    image.paste(1, (0, 0, 100, 100))
    result = ingest_bytes(encode(image, "PNG"))
    assert result.image.getpixel((50, 50)) == (255, 255, 255)
    assert result.image.getpixel((200, 200)) == (0, 0, 0)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    samples = np.zeros((300, 300), dtype=np.uint16)
    samples[:, 100:200] = 32768
    samples[:, 200:] = 65535
    image = Image.fromarray(samples)
    assert image.mode == "I;16"
    result = ingest_bytes(encode(image, "PNG"))
    assert [result.image.getpixel((x, 5)) for x in (50, 150, 250)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_sixteen_bit_rgb_is_scaled_not_clipped():
    pixel = (0x1234, 0x8080, 0xFFFF)
    result = ingest_bytes(sixteen_bit_rgb_png(pixel))
    assert_close(result.image.getpixel((5, 5)), [round(v * 255 / 65535) for v in pixel], tolerance=1)


def test_cmyk_jpeg_is_roughly_the_right_colour():
    image = Image.new("CMYK", (300, 300), (0, 255, 255, 0))  # red
    image.paste((255, 0, 255, 0), (0, 0, 100, 100))  # green
    data = encode(image, "JPEG", quality=95)
    assert b"Adobe" in data[:64]  # PIL writes Adobe-style inverted CMYK
    result = ingest_bytes(data)
    assert result.image.mode == "RGB"
    assert_close(result.image.getpixel((200, 200)), RED, tolerance=12)
    assert_close(result.image.getpixel((50, 50)), GREEN, tolerance=12)


def test_embedded_icc_profile_is_applied():
    # Red and green primaries swapped: the stored red means sRGB green.
    swapped = icc_rgb_profile(SRGB_GREEN, SRGB_RED, SRGB_BLUE, name="Swapped primaries")
    result = ingest_bytes(encode(Image.new("RGB", (300, 300), RED), "PNG", icc_profile=swapped))
    assert_close(result.image.getpixel((5, 5)), GREEN, tolerance=8)


def test_converted_image_carries_the_srgb_profile():
    swapped = icc_rgb_profile(SRGB_GREEN, SRGB_RED, SRGB_BLUE, name="Swapped primaries")
    result = ingest_bytes(encode(Image.new("RGB", (300, 300), RED), "JPEG", icc_profile=swapped))
    profile = ImageCms.ImageCmsProfile(io.BytesIO(result.image.info["icc_profile"]))
    assert "sRGB" in profile.profile.profile_description


def test_srgb_profile_leaves_pixels_alone():
    srgb = icc_rgb_profile(SRGB_RED, SRGB_GREEN, SRGB_BLUE, name="sRGB IEC61966-2.1")
    result = ingest_bytes(encode(Image.new("RGB", (300, 300), (10, 200, 30)), "PNG", icc_profile=srgb))
    assert result.image.getpixel((5, 5)) == (10, 200, 30)


@pytest.mark.parametrize("profile", [b"not an icc profile at all", b"\0" * 200])
def test_broken_icc_profile_does_not_fail_ingest(profile):
    result = ingest_bytes(encode(Image.new("RGB", (300, 300), (10, 200, 30)), "PNG", icc_profile=profile))
    assert result.image.getpixel((5, 5)) == (10, 200, 30)
    assert "icc_profile" not in result.image.info


# ---------- refusals ----------


def test_empty_file_is_refused(tmp_path):
    assert "The file is empty" in refusal(b"")
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="The file is empty"):
        ingest_file(path)


def test_text_file_is_refused():
    message = refusal(b"Hello, this is my shopping list.\nJeans\nShirt\n" * 10)
    assert "not a photo" in message and ACCEPTED_NAMES in message


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: encode(corner_photo(), "GIF"), "GIF"),
        (lambda: encode(corner_photo(), "BMP"), "BMP"),
        (lambda: encode(corner_photo(), "TIFF"), "TIFF"),
        (lambda: encode(corner_photo(), "PDF"), "PDF"),
        (lambda: encode(corner_photo(), "AVIF"), "AVIF"),
        (lambda: b"<svg xmlns='http://www.w3.org/2000/svg' width='400' height='400'></svg>", "SVG"),
    ],
)
def test_other_formats_are_refused_by_name(build, named):
    message = refusal(build())
    assert named in message and ACCEPTED_NAMES in message


def test_animated_gif_is_refused_as_gif():
    frames = [Image.new("RGB", (300, 300), colour) for colour in (RED, GREEN)]
    message = refusal(encode(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    assert "GIF" in message and ACCEPTED_NAMES in message


def test_gif_with_jpg_name_is_refused(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(corner_photo(), "GIF"))
    with pytest.raises(InputError, match="GIF"):
        ingest_file(path)


def noisy_photo(fmt: str) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), fmt)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_refused(fmt):
    data = noisy_photo(fmt)
    message = refusal(data[: len(data) // 2])
    assert "incomplete" in message and "upload it again" in message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_file_cut_in_its_header_is_refused_as_damaged(fmt):
    assert "damaged or incomplete" in refusal(noisy_photo(fmt)[:40])


def test_corrupted_middle_of_a_jpeg_is_refused():
    data = bytearray(noisy_photo("JPEG"))
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    assert "damaged" in refusal(bytes(data))


def test_corrupted_middle_of_a_png_is_refused():
    data = bytearray(noisy_photo("PNG"))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    assert "damaged" in refusal(bytes(data))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_random_damage_never_escapes_as_another_exception(fmt):
    original = noisy_photo(fmt)
    rng = np.random.default_rng(7)
    for _ in range(15):
        damaged = bytearray(original)
        for position in rng.integers(0, len(damaged), 8):
            damaged[position] = int(rng.integers(0, 256))
        try:
            result = ingest_bytes(bytes(damaged))
        except InputError:
            continue
        assert result.image.mode == "RGB"


def test_png_header_bomb_is_refused_without_decoding():
    message = refusal(raw_png(20_000, 20_000, 8, 2, b"\0" * 100))
    assert "400.0 megapixels" in message and "50 megapixels" in message


def test_just_over_fifty_megapixels_is_refused_from_the_header():
    message = refusal(raw_png(10_000, 5_001, 8, 2, b"\0" * 100))
    assert "10000 x 5001 pixels (50.0 megapixels)" in message and "limit is 50 megapixels" in message


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pil_bomb_warning_raised_as_error_is_still_a_clear_refusal():
    message = refusal(raw_png(12_000, 10_000, 8, 2, b"\0" * 100))
    assert "120.0 megapixels" in message and "50 megapixels" in message


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pil_bomb_warning_range_is_refused():
    assert "12000 x 10000 pixels" in refusal(raw_png(12_000, 10_000, 8, 2, b"\0" * 100))


@pytest.mark.parametrize(("width", "height", "expected"), [(10_000, 6_000, "60.0 megapixels"),
                                                           (16_384, 16_384, "268.4 megapixels")])
def test_webp_bomb_is_refused(width, height, expected):
    message = refusal(lossless_webp_declaring(width, height))
    assert expected in message and "50 megapixels" in message


def test_real_large_solid_image_is_refused():
    data = encode(Image.new("L", (8_000, 7_000), 200), "PNG", optimize=False)  # 56 MP, compresses to ~60 kB
    assert len(data) < 1_000_000
    assert "8000 x 7000 pixels (56.0 megapixels)" in refusal(data)


def test_upload_over_25_mb_is_refused_before_decoding():
    message = refusal(b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES - 2))
    assert "This file is 25.1 MB; the limit is 25 MB." in message


def test_huge_file_on_disk_is_refused_without_reading_it(tmp_path, monkeypatch):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as file:
        file.write(b"\xff\xd8\xff")
        file.truncate(1024 * 1024 * 1024)  # sparse: costs no disk
    opened = []
    monkeypatch.setattr("builtins.open", lambda *args, **kwargs: opened.append(args))
    with pytest.raises(InputError, match=r"This file is 1024\.0 MB; the limit is 25 MB\."):
        ingest_file(path)
    assert opened == []


def test_file_exactly_at_the_size_limit_is_not_refused_for_size():
    data = encode(Image.new("RGB", (300, 300)), "PNG")
    padded = data + bytes(MAX_UPLOAD_BYTES - len(data))
    assert ingest_bytes(padded).original == padded


@pytest.mark.parametrize(("size", "shown"), [((255, 400), "255 x 400"), ((400, 255), "400 x 255"),
                                             ((1, 10_000), "1 x 10000")])
def test_short_side_under_256_is_refused(size, shown):
    message = refusal(encode(Image.new("RGB", size, GREY), "PNG"))
    assert f"This image is {shown} pixels" in message and "at least 256 pixels" in message


def test_short_side_of_exactly_256_is_accepted():
    assert ingest_bytes(encode(Image.new("RGB", (256, 256), GREY), "PNG")).image.size == (256, 256)


# ---------- speed ----------


def test_twelve_megapixel_portrait_jpeg_is_oriented():
    blocks = np.random.default_rng(3).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    pixels = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)  # 3000 x 4000, photo-like compressibility
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    data = encode(Image.fromarray(pixels), "JPEG", quality=90, exif=exif.tobytes())

    result = ingest_bytes(data)

    assert result.image.size == (3000, 4000)  # timing lives in benchmarks/, not in tests


def _scans(data: bytes) -> list[bytes]:
    starts = [index for index in range(len(data) - 1) if data[index:index + 2] == b"\xff\xda"]
    return [data[start:end] for start, end in zip(starts, starts[1:] + [len(data) - 2])]


def test_a_progressive_jpeg_is_accepted():
    data = encode(Image.new("RGB", (600, 800), (120, 130, 140)), "JPEG", progressive=True)
    assert 1 < len(_scans(data)) <= 20
    assert ingest_bytes(data).image.size == (600, 800)


def test_a_jpeg_of_thousands_of_tiny_scans_is_refused_before_decoding():
    # Each extra scan is a few dozen bytes but makes the decoder pass over the whole image again.
    data = encode(Image.new("RGB", (7000, 7000), (120, 130, 140)), "JPEG", progressive=True)
    tiny_scan = min(_scans(data)[1:], key=len)
    bomb = data[:-2] + tiny_scan * 5000 + b"\xff\xd9"
    assert len(bomb) < 1024 * 1024
    with pytest.raises(InputError, match=r"stored in 50\d\d progressive scans; the limit is 100"):
        ingest_bytes(bomb)
