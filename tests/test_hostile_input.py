"""Odd and hostile input, end to end: every file and parameter gets a clear refusal or a correct result, never a
crash, a hang or a half-stored garment. Each case runs through the library (`Studio`), the public API (the
launched server, driven by gradio_client and by raw HTTP where a hostile caller would bypass the client) and the
UI's upload handler. How each format is decoded is tested in test_ingest.py; here it is what the studio stores.
"""

from __future__ import annotations

import functools
import json
import os
import re
import struct
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import httpx
import numpy as np
import gradio as gr
import pytest
from gradio_client import Client, handle_file
from hypothesis import HealthCheck, event, given, settings as hypothesis_settings, strategies as st
from PIL import Image, ImageCms

from app import UPLOAD_AS_FILE, Access, StudioAPI, create_demo, launch_options
from conftest import files_under, garment_photo
from image_files import encode, lossless_webp_declaring, png_by_hand, png_chunk
from pipeline.errors import InputError, NotFoundError, StudioError
from pipeline.ingest import MAX_PIXELS, MAX_UPLOAD_BYTES, MIN_SHORT_SIDE, ingest_bytes
from pipeline.settings import Settings
from pipeline.studio import Studio

RED, BLUE = (255, 0, 0), (0, 0, 255)
STORED_ORIGINAL = re.compile(r"originals/[0-9a-f]{2}/[0-9a-f]{32}\.(jpg|png|webp|heic)")
ORIENTATION_TAG, DESCRIPTION_TAG = 0x0112, 0x010E
FUZZ = dict(deadline=None, database=None, print_blob=True)


# ---------- file builders ----------


def deflate_repeated(block: bytes, times: int) -> bytes:
    compressor = zlib.compressobj(9)
    return b"".join(compressor.compress(block) for _ in range(times)) + compressor.flush()


def photo(size: tuple[int, int] = (400, 300), colour=(200, 40, 50)) -> Image.Image:
    """A solid colour with a blue block top-left, so a rotation or a wrong frame shows."""
    image = Image.new("RGB", size, colour)
    image.paste(BLUE, (0, 0, size[0] // 4, size[1] // 4))
    return image


def noisy_jpeg() -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG")


def with_exif(size: tuple[int, int], exif_bytes: bytes) -> bytes:
    return encode(photo(size), "JPEG", quality=90, exif=exif_bytes)


def exif_with(orientation: int, description_length: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    exif[DESCRIPTION_TAG] = "x" * description_length
    return exif.tobytes()


def biggest_exif() -> bytes:
    """EXIF filling a JPEG APP1 segment to its maximum (65,533 payload bytes with the "Exif" header)."""
    data = exif_with(6, 60_000)
    return exif_with(6, 60_000 + (65_533 - 6 - len(data)))


def huge_icc_jpeg() -> bytes:
    """A 1 MB ICC profile (a real sRGB profile padded out, its size field saying 1 MB) over 16 APP2 chunks."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile += bytes(1024 * 1024 - len(profile))
    profile[0:4] = struct.pack(">I", len(profile))
    return encode(photo(), "JPEG", quality=90, icc_profile=bytes(profile))


def malformed_icc_chunks_jpeg() -> bytes:
    """Garbage ICC over several APP2 chunks whose count says 9 where there are 4."""
    data = bytearray(encode(photo(), "JPEG", quality=90, icc_profile=np.random.default_rng(2).bytes(200_000)))
    first = data.find(b"ICC_PROFILE\0")
    assert data[first + 13] == 4
    data[first + 13] = 9
    return bytes(data)


def short_icc_chunk_jpeg() -> bytes:
    """An APP2 "ICC_PROFILE" segment too short to hold the chunk numbers."""
    data = encode(photo(), "JPEG")
    segment = b"ICC_PROFILE\0"
    return data[:2] + b"\xff\xe2" + struct.pack(">H", len(segment) + 2) + segment + data[2:]


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(photo((300, 300)), "JPEG"))
    frame = data.find(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_vp8_declaring(width: int, height: int) -> bytes:
    """A lossy WebP whose VP8 frame header claims width x height (14 bits each: at most 16383)."""
    data = bytearray(encode(Image.new("RGB", (16, 16)), "WEBP", quality=50))
    start = data.find(b"\x9d\x01\x2a")
    data[start + 3 : start + 7] = struct.pack("<HH", width, height)
    return bytes(data)


def webp_vp8x_lossless_declaring(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP around a lossless bitstream, both claiming width x height."""
    bitstream = lossless_webp_declaring(width, height)[12:]
    header = bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + header + bitstream
    return b"RIFF" + struct.pack("<I", len(body)) + body


def animated_webp(canvas: tuple[int, int] | None = None) -> bytes:
    frames = [Image.new("RGB", (300, 300), colour) for colour in (RED, BLUE)]
    data = bytearray(encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True))
    if canvas:
        assert data[12:16] == b"VP8X"
        data[24:27] = (canvas[0] - 1).to_bytes(3, "little")
        data[27:30] = (canvas[1] - 1).to_bytes(3, "little")
    return bytes(data)


def heic_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(photo((300, 300)), "HEIF"))
    box = data.find(b"ispe")
    data[box + 8 : box + 16] = struct.pack(">II", width, height)
    return bytes(data)


def sixteen_bit_rgb_png() -> bytes:
    row = b"\x00" + struct.pack(">HHH", 0xFFFF, 0x0000, 0x8080) * 300
    return png_by_hand(300, 280, 16, 2, zlib.compress(row * 280))


def one_bit_bomb_png() -> bytes:
    """20000 x 20000 1-bit pixels: 50 MB of rows deflated to ~50 kB."""
    return png_by_hand(20_000, 20_000, 1, 0, deflate_repeated(b"\x00" + bytes(2_500), 20_000))


def zlib_bomb_png() -> bytes:
    """2000 x 2000 RGB whose IDAT inflates to 256 MB, 21 times what the pixels need."""
    return png_by_hand(2_000, 2_000, 8, 2, deflate_repeated(bytes(1024 * 1024), 256))


def text_chunk_bomb_png() -> bytes:
    """A zTXt chunk inflating to 50 MB in front of a small image."""
    bomb = png_chunk(b"zTXt", b"Comment\0\0" + deflate_repeated(bytes(1024 * 1024), 50))
    row = b"\x00" + bytes(300 * 3)
    return png_by_hand(300, 300, 8, 2, zlib.compress(row * 300), extra_chunks=bomb)


def palette_png(transparent: bool) -> bytes:
    image = photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    return encode(image, "PNG", **({"transparency": 0} if transparent else {}))


def rgba_png() -> bytes:
    image = Image.new("RGBA", (300, 300), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (0, 0, 100, 100))
    return encode(image, "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (300, 300), (0, 255, 255, 0)), "JPEG", quality=95)


def corrupt_middle(data: bytes, filler: bytes) -> bytes:
    damaged = bytearray(data)
    middle = len(damaged) // 2
    damaged[middle : middle + 64] = filler * (64 // len(filler))
    return bytes(damaged)


# name -> (build, expected sentence fragment)
REFUSED = {
    "empty": (lambda: b"", "The file is empty (0 bytes)"),
    "text": (lambda: b"Jeans 12\nShirt 8\n" * 40, "not a photo Resell Studio can read"),
    "random-bytes": (lambda: b"\x13\x37" + np.random.default_rng(3).bytes(4096), "not a photo Resell Studio can read"),
    "truncated-jpeg": (lambda: noisy_jpeg()[: len(noisy_jpeg()) // 2], "incomplete"),
    "jpeg-cut-in-its-header": (lambda: noisy_jpeg()[:40], "damaged or incomplete"),
    "corrupt-jpeg": (lambda: corrupt_middle(noisy_jpeg(), b"\xff"), "damaged"),
    "over-25-mb": (lambda: b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES - 2), "This file is 25.1 MB; the limit is 25 MB."),
    "over-50-megapixels-in-the-header": (lambda: png_by_hand(10_000, 5_001, 8, 2, zlib.compress(b"\0" * 100)),
                                         "10000 x 5001 pixels (50.0 megapixels)"),
    "short-side-255": (lambda: encode(Image.new("RGB", (255, 400)), "PNG"), "255 x 400 pixels"),
    "1-x-10000": (lambda: encode(Image.new("RGB", (1, 10_000)), "PNG"), "1 x 10000 pixels"),
    "10000-x-1": (lambda: encode(Image.new("RGB", (10_000, 1)), "PNG"), "10000 x 1 pixels"),
    "animated-gif": (lambda: encode(Image.new("RGB", (300, 300), RED), "GIF", save_all=True,
                                    append_images=[Image.new("RGB", (300, 300), BLUE)]), "This file is a GIF"),
    "png-1-bit-20000-x-20000": (one_bit_bomb_png, "400.0 megapixels"),
    "png-text-chunk-bomb": (text_chunk_bomb_png, "damaged"),
    "webp-16383-x-16383": (lambda: webp_vp8_declaring(16_383, 16_383), "268.4 megapixels"),
    "webp-extended-lossless-16384-x-16384": (lambda: webp_vp8x_lossless_declaring(16_384, 16_384),
                                             "268.4 megapixels"),
    "animated-webp-9000-x-6000-canvas": (lambda: animated_webp((9_000, 6_000)), "9000 x 6000 pixels (54.0 megapixels)"),
    "jpeg-65535-x-65535": (lambda: jpeg_declaring(65_535, 65_535), "4294.8 megapixels"),
    "heic-16000-x-16000": (lambda: heic_declaring(16_000, 16_000), "256.0 megapixels"),
    "jpeg-with-a-short-icc-chunk": (short_icc_chunk_jpeg, "damaged"),
}
BOMBS = ["over-50-megapixels-in-the-header", "png-1-bit-20000-x-20000", "png-text-chunk-bomb", "webp-16383-x-16383",
         "webp-extended-lossless-16384-x-16384", "animated-webp-9000-x-6000-canvas", "jpeg-65535-x-65535",
         "heic-16000-x-16000"]

# name -> (build, stored extension, stored width x height)
ACCEPTED = {
    "cmyk-jpeg": (cmyk_jpeg, ".jpg", (300, 300)),
    "16-bit-rgb-png": (sixteen_bit_rgb_png, ".png", (300, 280)),
    "16-bit-grey-png": (lambda: encode(Image.fromarray(np.full((300, 300), 40_000, np.uint16)), "PNG"), ".png",
                        (300, 300)),
    "palette-png": (lambda: palette_png(transparent=False), ".png", (400, 300)),
    "palette-png-with-transparency": (lambda: palette_png(transparent=True), ".png", (400, 300)),
    "rgba-png": (rgba_png, ".png", (300, 300)),
    "exif-rotated-jpeg": (lambda: with_exif((400, 300), exif_with(6, 0)), ".jpg", (300, 400)),
    "jpeg-with-60-kb-of-exif": (lambda: with_exif((400, 300), exif_with(6, 60_000)), ".jpg", (300, 400)),
    "jpeg-with-the-largest-app1-exif": (lambda: with_exif((400, 300), biggest_exif()), ".jpg", (300, 400)),
    "jpeg-with-a-1-mb-icc-profile": (huge_icc_jpeg, ".jpg", (400, 300)),
    "jpeg-with-malformed-icc-chunks": (malformed_icc_chunks_jpeg, ".jpg", (400, 300)),
    "animated-webp": (animated_webp, ".webp", (300, 300)),
    "heic": (lambda: encode(photo(), "HEIF"), ".heic", (400, 300)),
    "png-zlib-bomb-within-the-pixel-limit": (zlib_bomb_png, ".png", (2_000, 2_000)),
}


@functools.cache
def built(name: str) -> bytes:
    build = REFUSED[name][0] if name in REFUSED else ACCEPTED[name][0]
    return build()


def write_case(folder: Path, name: str) -> Path:
    """The case's bytes in a file named .jpg whatever its content: the name never decides the format."""
    path = folder / f"{name}.jpg"
    path.write_bytes(built(name))
    return path


# ---------- what is stored ----------


def state(studio: Studio) -> tuple[dict[str, int], list[str]]:
    db = studio.database.db
    rows = {table: db[table].count for table in ("garments", "generations", "output_images")}
    return rows, stored_files(studio)


def stored_files(studio: Studio) -> list[str]:
    root = studio.settings.files_dir
    return [path.relative_to(root).as_posix() for path in files_under(root)]


def assert_nothing_half_stored(studio: Studio) -> None:
    """Every file in the store belongs to a row, and no temporary file is left."""
    files = stored_files(studio)
    assert not [name for name in files if name.endswith(".partial")]
    assert set(files) <= studio.database.referenced_files()


def assert_refusal(message: str, expected: str) -> None:
    assert expected in message, message
    assert "Traceback" not in message and "Something went wrong" not in message


def assert_stored_as_uploaded(studio: Studio, garment: dict, data: bytes, extension: str,
                              size: tuple[int, int]) -> None:
    assert STORED_ORIGINAL.fullmatch(garment["original_image_url"]), garment["original_image_url"]
    assert garment["original_image_url"].endswith(extension)
    assert studio.files.read(garment["original_image_url"]) == data
    assert (garment["width"], garment["height"]) == size
    assert_nothing_half_stored(studio)


def peak_memory_growth_mb(action) -> float | None:
    """How far this process's peak resident memory rose while `action` ran; None where it cannot be measured."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
    except OSError:
        action()
        return None

    def kilobytes(field: str) -> int:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
        return int(line.split()[1])

    before = kilobytes("VmRSS:")
    action()
    return (kilobytes("VmHWM:") - before) / 1024


# ---------- through the library ----------


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_file_is_refused_by_the_studio_and_stores_nothing(studio, tmp_path, name):
    path = write_case(tmp_path, name)
    before = state(studio)
    with pytest.raises(InputError) as refused:
        studio.upload_garment(path)
    assert_refusal(str(refused.value), REFUSED[name][1])
    assert state(studio) == before == ({"garments": 0, "generations": 0, "output_images": 0}, [])


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_odd_file_is_stored_exactly_as_uploaded(studio, tmp_path, name):
    path = write_case(tmp_path, name)
    _, extension, size = ACCEPTED[name]
    garment = studio.upload_garment(path, segment=False)
    assert_stored_as_uploaded(studio, garment, built(name), extension, size)
    assert garment["original_filename"] == f"{name}.jpg"
    image = studio.garment_image(garment["id"])
    assert image.mode == "RGB" and image.size == size


def test_png_named_jpg_keeps_the_png_extension(studio, tmp_path):
    path = tmp_path / "holiday.jpg"
    path.write_bytes(encode(photo(), "PNG"))
    garment = studio.upload_garment(path, segment=False)
    assert garment["original_image_url"].endswith(".png") and garment["original_filename"] == "holiday.jpg"
    assert (studio.settings.files_dir / garment["original_image_url"]).read_bytes() == path.read_bytes()


def test_animated_webp_keeps_its_first_frame(studio, tmp_path):
    garment = studio.upload_garment(write_case(tmp_path, "animated-webp"), segment=False)
    assert studio.garment_image(garment["id"]).getpixel((200, 200)) == RED


def test_exif_rotation_survives_a_huge_exif_block(studio, tmp_path):
    garment = studio.upload_garment(write_case(tmp_path, "jpeg-with-the-largest-app1-exif"), segment=False)
    image = studio.garment_image(garment["id"])
    # orientation 6 turns the stored picture 90° clockwise: its top-left blue block ends top-right
    assert image.size == (300, 400)
    assert all(abs(a - b) <= 20 for a, b in zip(image.getpixel((290, 10)), BLUE))
    assert all(abs(a - b) <= 20 for a, b in zip(image.getpixel((10, 10)), (200, 40, 50)))


@pytest.mark.parametrize("name", BOMBS)
def test_bomb_is_refused_fast_with_bounded_memory(studio, tmp_path, name):
    path = write_case(tmp_path, name)
    with pytest.raises(InputError):  # warm up: the segmenter is chosen (and its imports done) before ingest
        studio.upload_garment(write_case(tmp_path, "empty"))
    refused = []

    def upload():
        started = time.perf_counter()
        try:
            studio.upload_garment(path)
        except InputError as error:
            refused.append((str(error), time.perf_counter() - started))

    growth = peak_memory_growth_mb(upload)
    (message, seconds), = refused
    assert "megapixels" in message or "damaged" in message
    assert seconds < 3, f"{name} took {seconds:.1f} s to refuse"
    if growth is not None:
        assert growth < 100, f"{name} raised peak memory by {growth:.0f} MB"
    assert state(studio)[1] == []


def test_zlib_bomb_within_the_pixel_limit_costs_what_its_pixels_cost(studio, tmp_path):
    path = write_case(tmp_path, "png-zlib-bomb-within-the-pixel-limit")  # inflates to 256 MB; 12 MB of pixels
    growth = peak_memory_growth_mb(lambda: studio.upload_garment(path, segment=False))
    if growth is not None:
        assert growth < 150, f"peak memory rose by {growth:.0f} MB"


HOSTILE_NAMES = {
    "../../etc/passwd.jpg": "passwd.jpg",
    "..\\..\\windows\\win.ini.jpg": "win.ini.jpg",
    "a\\b.jpg": "b.jpg",
    "/abs/x.jpg": "x.jpg",
    "C:\\Users\\me\\shirt.jpg": "shirt.jpg",
    "Ünïcødé 衬衫 👕.jpg": "Ünïcødé 衬衫 👕.jpg",
    "tab\there\nnew\rline\x00nul\x1b[31mred.jpg": "tabherenewlinenul[31mred.jpg",
    "\u202egpj.exe": "gpj.exe",  # right-to-left override
    "zero\u200bwidth.jpg": "zerowidth.jpg",
    "lone\ud800surrogate.jpg": "lonesurrogate.jpg",
    "x" * 300 + ".jpg": "x" * 120,
    "   ": "photo",
    "folder/": "photo",
    "\x07\x08": "photo",
}


def assert_clean_display_name(name: str) -> None:
    assert name and len(name) <= 120 and name == name.strip()
    assert "/" not in name and "\\" not in name and all(ch.isprintable() for ch in name)


def test_hostile_file_names_are_cleaned_and_files_stored_under_ids(studio, tmp_path, photo_path):
    before = files_under(tmp_path)
    for given_name, expected in HOSTILE_NAMES.items():
        garment = studio.upload_garment(photo_path, filename=given_name, segment=False)
        assert garment["original_filename"] == expected, given_name
        assert_clean_display_name(garment["original_filename"])
        assert STORED_ORIGINAL.fullmatch(garment["original_image_url"])
    data_dir = studio.settings.data_dir
    written = [path for path in files_under(tmp_path) if path not in before]
    assert written and all(path.is_relative_to(data_dir) for path in written)
    assert len(stored_files(studio)) == len(HOSTILE_NAMES)
    assert not [path for path in files_under(tmp_path.parent) if "passwd" in path.name or "win.ini" in path.name]


# ---------- fuzzing the bytes ----------


@functools.cache
def seed_files() -> tuple[bytes, ...]:
    """Small valid files, each accepted as it is; the fuzzer damages them."""
    image = Image.new("RGB", (272, 256), (230, 220, 200))
    image.paste((31, 42, 68), (60, 40, 200, 220))
    image.paste((200, 30, 40), (100, 80, 140, 120))
    return (encode(image, "JPEG", quality=60), encode(image, "JPEG", quality=60, progressive=True),
            encode(image, "PNG"), encode(image.convert("P"), "PNG"), encode(image.convert("RGBA"), "PNG"),
            encode(image, "WEBP", quality=50), encode(image, "WEBP", lossless=True))


MAGIC = [b"\xff\xd8\xff", b"\xff\xd8\xff\xe1", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x01\x00\x00WEBPVP8 ",
         b"RIFF\x00\x01\x00\x00WEBPVP8X", b"\x00\x00\x00\x18ftypheic", b"GIF89a", b"BM", b"II*\x00"]


@st.composite
def damaged_files(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(seed_files())))
    for _ in range(draw(st.integers(1, 3))):
        # a third of the damage lands in the headers, after the signature; a third in the pixel data
        end = len(data)
        position = draw(st.one_of(st.integers(0, end), st.integers(min(12, end), min(200, end)),
                                  st.integers(min(200, end), end)))
        operation = draw(st.sampled_from(["flip", "flip", "set", "set", "insert", "delete", "truncate"]))
        if operation == "flip" and position < len(data):
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set" and position < len(data):
            data[position] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        elif operation == "truncate":
            del data[position:]
    return bytes(data)


hostile_bytes = st.one_of(
    damaged_files(), damaged_files(), damaged_files(),
    st.binary(max_size=2048),
    st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGIC), st.binary(max_size=2048)),
)


def assert_rgb_of_sane_size_or_clear_refusal(data: bytes) -> None:
    started = time.perf_counter()
    try:
        result = ingest_bytes(data)
    except InputError as error:
        message = str(error)
        assert message.strip() and message.endswith(".") and "\n" not in message
        event(f"refused: {' '.join(message.split()[:5])}")
        return
    finally:
        assert time.perf_counter() - started < 20, "ingest took too long"
    width, height = result.image.size
    assert result.image.mode == "RGB"
    assert min(width, height) >= MIN_SHORT_SIDE and width * height <= MAX_PIXELS
    assert result.original == data and result.format in ("jpeg", "png", "webp", "heif")
    event(f"accepted: {result.format}")


@hypothesis_settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                     **FUZZ)
@given(data=hostile_bytes)
def test_fuzzed_bytes_give_an_rgb_image_or_a_clear_refusal(data):
    assert_rgb_of_sane_size_or_clear_refusal(data)


def test_every_seed_file_is_accepted():
    for data in seed_files():
        assert ingest_bytes(data).image.size == (272, 256)


@pytest.fixture(scope="module")
def shared_studio(tmp_path_factory):
    studio = Studio.open(Settings.from_env(tmp_path_factory.mktemp("shared") / "data"))
    yield studio
    studio.close()


@hypothesis_settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                     **FUZZ)
@given(data=hostile_bytes)
def test_fuzzed_uploads_store_everything_or_nothing(shared_studio, data):
    studio = shared_studio
    before = state(studio)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.jpg"
        path.write_bytes(data)
        try:
            garment = studio.upload_garment(path, segment=False)
        except InputError as error:
            assert str(error).strip()
            assert state(studio) == before
            event("refused")
            return
    event("accepted")
    rows, files = state(studio)
    assert rows["garments"] == before[0]["garments"] + 1
    assert set(files) - set(before[1]) == {garment["original_image_url"]}
    assert studio.files.read(garment["original_image_url"]) == data
    assert_nothing_half_stored(studio)


# ---------- fuzzing the parameters (the public API's methods, in process) ----------


@pytest.fixture(scope="module")
def workshop(shared_studio, tmp_path_factory):
    """A segmented garment with one finished ghost generation, and the API over them."""
    studio = shared_studio
    image, _ = garment_photo((300, 400))
    path = tmp_path_factory.mktemp("workshop") / "tee.jpg"
    image.save(path, quality=92)
    garment = studio.upload_garment(path)
    assert garment["status"] == "segmented"
    job = studio.generate(garment["id"], aspect_ratios=["1:1"], wait=True)
    assert job["status"] == "completed", job["error_message"]
    return {"studio": studio, "api": StudioAPI(Access(studio)), "garment": garment["id"], "generation": job["id"],
            "output": job["outputs"][0]["id"]}


nasty_text = st.text(st.characters(categories=["Cc", "Cs", "Cf", "Zs", "Lo", "So", "Po", "Nd", "Ll"]), max_size=30)
junk = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), nasty_text,
    st.sampled_from(["", " ", "../../studio.db", "' OR 1=1 --", "%s%n", "\x00", "\ud800", "a\udfffb", "x" * 10_000]),
    st.lists(st.one_of(st.text(max_size=6), st.integers(), st.none()), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def refused_cleanly(studio: Studio, call, *protected_rows) -> object:
    """Runs `call`; a refusal must be a StudioError with a message and must change nothing at all."""
    before = state(studio), [row() for row in protected_rows]
    try:
        return call()
    except StudioError as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"
        assert (state(studio), [row() for row in protected_rows]) == before
        assert_nothing_half_stored(studio)
        return error


def settle(studio: Studio, result) -> None:
    """Lets a job the fuzzer managed to start finish, so the next example starts from a still state."""
    if isinstance(result, dict) and result.get("status") in ("pending", "processing"):
        studio.wait_for_generation(result["id"], timeout=120)


def arguments(data, valid: dict) -> dict:
    """Valid values for every parameter but up to two, which get junk: deep enough to reach every check."""
    hostile = data.draw(st.sets(st.sampled_from(sorted(valid)), max_size=2), label="hostile parameters")
    return {name: data.draw(junk if name in hostile else strategy, label=name) for name, strategy in valid.items()}


def outcome(result) -> None:
    event(f"refused: {type(result).__name__}" if isinstance(result, StudioError) else "accepted")


@hypothesis_settings(max_examples=60, **FUZZ)
@given(data=st.data())
def test_update_garment_fuzz(workshop, data):
    studio, api = workshop["studio"], workshop["api"]
    given_arguments = arguments(data, {
        "garment_id": st.just(workshop["garment"]), "category": st.sampled_from(["top", " Dress ", "OUTERWEAR", ""]),
        "color_name": st.sampled_from(["navy", "  dusty \t  rose ", ""]) | nasty_text,
        "color_hex": st.sampled_from(["#1f2a44", "1F2A44", ""])})
    row = lambda: studio.database.get_garment(workshop["garment"])  # noqa: E731
    result = refused_cleanly(studio, lambda: api.update_garment(**given_arguments), row)
    outcome(result)
    if isinstance(result, dict):
        assert result["id"] == workshop["garment"] and result["category"] in ("top", "bottom", "dress", "outerwear")
        colour = result["detected_color"]
        assert colour and colour == " ".join(colour.split()) and colour.isprintable() and len(colour) <= 40
        assert re.fullmatch(r"#[0-9a-f]{6}", result["detected_color_hex"])


@hypothesis_settings(max_examples=50, **FUZZ)
@given(data=st.data())
def test_generate_fuzz(workshop, data):
    studio, api = workshop["studio"], workshop["api"]
    given_arguments = arguments(data, {
        "garment_id": st.just(workshop["garment"]), "model_id": st.sampled_from(["ghost_01", "ghost_01", "mod_03"]),
        "aspect_ratios": st.sampled_from([["1:1"], ["4:5"], "3:4", None]),
        "marketplaces": st.sampled_from([[], ["Depop"], None]), "background": st.sampled_from(["white", "Light Gray"]),
        "file_format": st.sampled_from(["jpeg", "PNG", "jpg"]), "wait": st.booleans(),
        "seed": st.sampled_from([-1, 7]), "steps": st.sampled_from([0, 2]), "batch_size": st.sampled_from([1, 2]),
        "width": st.sampled_from([0, 512]), "guidance_scale": st.sampled_from([-1.0, 5.0])})
    if given_arguments["aspect_ratios"] is None and given_arguments["marketplaces"] is None:
        given_arguments["aspect_ratios"] = ["1:1"]  # the three default shapes are slow to render
    result = refused_cleanly(studio, lambda: api.generate(**given_arguments))
    outcome(result)
    settle(studio, result)
    if isinstance(result, dict):
        job = studio.get_generation(result["id"])
        assert job["target_model_id"] == "ghost_01"
        assert job["status"] == "completed", job["error_message"]
    assert_nothing_half_stored(studio)


click = st.tuples(st.integers(0, 299), st.integers(0, 399), st.sampled_from([0, 1])).map(list)
odd_click = st.lists(st.one_of(st.integers(-5, 900), st.floats(allow_nan=True, allow_infinity=True),
                               st.integers(-(2**1100), 2**1100), junk), max_size=4)


@hypothesis_settings(max_examples=30, **FUZZ)
@given(data=st.data())
def test_refine_fuzz(workshop, data):
    studio, api = workshop["studio"], workshop["api"]
    given_arguments = arguments(data, {
        "garment_id": st.just(workshop["garment"]), "backend": st.just("classic"),
        "points": st.lists(st.one_of(click, click, odd_click), min_size=1, max_size=3)})
    row = lambda: studio.database.get_garment(workshop["garment"])  # noqa: E731
    result = refused_cleanly(studio, lambda: api.refine_garment(**given_arguments), row)
    outcome(result)
    if isinstance(result, dict):
        assert result["status"] == "segmented" and result["mask_image_url"]
        assert studio.files.exists(result["mask_image_url"])


@hypothesis_settings(max_examples=60, **FUZZ)
@given(data=st.data())
def test_list_fuzz(workshop, data):
    studio, api = workshop["studio"], workshop["api"]
    given_arguments = arguments(data, {
        "garment_id": st.sampled_from([workshop["garment"], ""]), "limit": st.sampled_from([1, 50, 500, 501, 0]),
        "offset": st.sampled_from([0, 3, 2**63, 10**30, -1])})
    for call in (lambda: api.list_generations(**given_arguments),
                 lambda: api.list_garments(given_arguments["limit"], given_arguments["offset"])):
        result = refused_cleanly(studio, call)
        outcome(result)
        assert isinstance(result, (list, InputError, NotFoundError))


@hypothesis_settings(max_examples=40, **FUZZ)
@given(data=st.data())
def test_id_fuzz(workshop, data):
    studio, api = workshop["studio"], workshop["api"]
    given = arguments(data, {"output_id": st.just(workshop["output"]), "generation_id": st.just(workshop["generation"]),
                             "favourite": st.booleans(), "seed": st.sampled_from([-1, 3])})
    output_id, generation_id = given["output_id"], given["generation_id"]
    output_row = lambda: studio.database.get_output(workshop["output"])  # noqa: E731
    for call in (lambda: api.set_favorite(output_id, given["favourite"]), lambda: api.generation(generation_id),
                 lambda: api.cancel_generation(generation_id), lambda: api.segment_garment(generation_id, output_id),
                 lambda: api.export_garment(output_id), lambda: api.delete_garment(generation_id),
                 lambda: api.set_preferred_model(output_id),
                 lambda: api.rerun_generation(generation_id, seed=given["seed"])):
        result = refused_cleanly(studio, call, output_row)
        outcome(result)
        settle(studio, result)
    result = refused_cleanly(studio, lambda: api.download(output_id))
    outcome(result)
    if not isinstance(result, StudioError):
        assert Path(result.path).is_file() and Path(result.path).is_relative_to(studio.settings.files_dir)


def test_the_fuzzed_studio_is_consistent(workshop):
    studio = workshop["studio"]
    assert studio.database.integrity_check() == "ok"
    assert_nothing_half_stored(studio)


# ---------- through the public API (the launched server) ----------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    studio = Studio.open(Settings.from_env(folder / "data"))
    demo = create_demo(studio)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=None,
                            **launch_options(studio))
    try:
        client = Client(url, verbose=False, download_files=str(folder / "downloads"))
        yield {"studio": studio, "client": client, "url": url, "folder": folder}
    finally:
        demo.close()
        studio.close()


def app_error(call) -> str:
    with pytest.raises(Exception) as raised:
        call()
    assert type(raised.value).__name__ == "AppError", raised.value
    return str(raised.value)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_file_through_the_api(served, tmp_path, name):
    studio, client = served["studio"], served["client"]
    path = write_case(tmp_path, name)
    before = state(studio)
    if name == "over-25-mb":  # refused at the upload itself (max_file_size): gradio_client does not even send it
        with pytest.raises(ValueError, match="exceeds the maximum file size of 26214400 bytes"):
            client.predict(handle_file(str(path)), False, api_name="/upload_garment")
    else:
        message = app_error(lambda: client.predict(handle_file(str(path)), False, api_name="/upload_garment"))
        assert_refusal(message, REFUSED[name][1])
    assert state(studio) == before
    assert_nothing_half_stored(studio)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_odd_file_through_the_api(served, tmp_path, name):
    studio, client = served["studio"], served["client"]
    _, extension, size = ACCEPTED[name]
    garment = client.predict(handle_file(str(write_case(tmp_path, name))), False, api_name="/upload_garment")
    assert garment["original_filename"] == f"{name}.jpg"
    assert_stored_as_uploaded(studio, garment, built(name), extension, size)


def call_raw(url: str, endpoint: str, data: list | bytes) -> tuple[str, object]:
    """What a caller without gradio_client sends: ("complete", result) or ("error", message)."""
    body = data if isinstance(data, bytes) else json.dumps({"data": data}).encode()
    started = httpx.post(f"{url}gradio_api/call/{endpoint}", content=body,
                         headers={"content-type": "application/json"}, timeout=60)
    started.raise_for_status()
    stream = httpx.get(f"{url}gradio_api/call/{endpoint}/{started.json()['event_id']}", timeout=60).text
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", stream, re.MULTILINE)
    event, data_line = [pair for pair in events if pair[0] in ("complete", "error")][-1]
    payload = json.loads(data_line)
    return event, payload[0] if event == "complete" else (payload or {}).get("error")


def upload_raw(url: str, content: bytes, name: str = "photo.jpg") -> str:
    response = httpx.post(f"{url}gradio_api/upload", files=[("files", (name, content))], timeout=60)
    response.raise_for_status()
    return response.json()[0]


def test_hostile_original_names_through_the_api(served, photo_path):
    studio, url = served["studio"], served["url"]
    server_path = upload_raw(url, photo_path.read_bytes())
    for given_name, expected in HOSTILE_NAMES.items():
        if "\ud800" in given_name:
            continue  # not valid UTF-8, so not sendable as JSON text
        file_data = {"path": server_path, "orig_name": given_name, "meta": {"_type": "gradio.FileData"}}
        event, garment = call_raw(url, "upload_garment", [file_data, False, ""])
        assert event == "complete", garment
        assert garment["original_filename"] == expected, given_name
        assert STORED_ORIGINAL.fullmatch(garment["original_image_url"])
    assert_nothing_half_stored(studio)
    assert not [path for path in files_under(served["folder"]) if "passwd" in path.name]


@pytest.mark.parametrize("file_name", ["Ünïcødé 衬衫 👕.jpg", "a\\b.jpg", "bell\x07 and\ttab.jpg",
                                       "x" * 240 + ".jpg"])
def test_odd_file_names_on_disk_through_the_client(served, tmp_path, photo_path, file_name):
    path = tmp_path / file_name
    path.write_bytes(photo_path.read_bytes())
    garment = served["client"].predict(handle_file(str(path)), False, api_name="/upload_garment")
    assert_clean_display_name(garment["original_filename"])
    assert STORED_ORIGINAL.fullmatch(garment["original_image_url"])


def test_a_path_on_the_server_is_not_an_upload(served, tmp_path, photo_path):
    """A bare path, or a file dict without Gradio's marker, skips Gradio's upload check: it must not let a caller
    import any file the server can read."""
    studio, client, url = served["studio"], served["client"], served["url"]
    secret = tmp_path / "not-uploaded.jpg"
    secret.write_bytes(photo_path.read_bytes())
    before = state(studio)
    assert_refusal(app_error(lambda: client.predict(str(secret), False, api_name="/upload_garment")), UPLOAD_AS_FILE)
    for photo_value in (str(secret), {"path": str(secret)}, {"path": str(secret), "orig_name": "x.jpg"},
                        {"url": "http://127.0.0.1/x.jpg"}, None, 42, [str(secret)], "/etc/passwd",
                        {"path": str(studio.settings.database_path)}, {"path": os.path.dirname(upload_raw(url, b"x"))}):
        event, message = call_raw(url, "upload_garment", [photo_value, False, ""])
        assert event == "error" and message == UPLOAD_AS_FILE, (photo_value, message)
    # Gradio's own check refuses a marked file dict that names a file nobody uploaded
    marked = {"path": str(secret), "meta": {"_type": "gradio.FileData"}}
    assert call_raw(url, "upload_garment", [marked, False, ""])[0] == "error"
    assert state(studio) == before


def test_hostile_parameters_reach_the_caller_as_plain_messages(served, photo_path):
    studio, client, url = served["studio"], served["client"], served["url"]
    garment = client.predict(handle_file(str(photo_path)), api_name="/upload_garment")
    job = client.predict(garment["id"], "ghost_01", ["1:1"], [], "white", "jpeg", True, api_name="/generate")
    assert job["status"] == "completed"
    before = state(studio), studio.database.get_garment(garment["id"])

    expectations = [
        ((garment["id"], "", 123, "", "/update_garment"), "A colour name is text such as navy, not 123."),
        ((garment["id"], "jacket", "", "", "/update_garment"), "Unknown category 'jacket'"),
        ((garment["id"], "", "", "#12345g", "/update_garment"), "is not a hex colour like #1f2a44"),
        ((garment["id"], "", "", "", "/update_garment"), "Nothing to change"),
        ((garment["id"], "ghost_01", 5, "/generate"), "Give the aspect ratios as a list of names such as ['4:5']"),
        ((garment["id"], "ghost_01", [["1:1"]], "/generate"), "Give the aspect ratios as a list"),
        ((garment["id"], "ghost_01", ["16:9"], "/generate"), "Unknown aspect ratio '16:9'"),
        ((garment["id"], "ghost_01", [], {"ebay": 1}, "/generate"), "Give the marketplaces as a list"),
        ((garment["id"], "ghost_01", [], [], "white", 5, "/generate"), "Unknown file format '5'"),
        ((garment["id"], "ghost_01", [], [], "neon", "/generate"), "Unknown background 'neon'"),
        ((garment["id"], "ghost_99", "/generate"), "No virtual model 'ghost_99'"),
        ((garment["id"], 5, "/refine_garment"), "Points are a list of [x, y, label] clicks, not 5."),
        ((garment["id"], [[10**400, 1, 1]], "/refine_garment"), "A point is [x, y, label]"),
        ((garment["id"], [[9000, 1, 1]], "/refine_garment"), "outside the 600x800 photo"),
        (("abc", 0, "/list_garments"), "limit and offset must be whole numbers."),
        ((0, 0, "/list_garments"), "limit must be between 1 and 500"),
        (({"a": 1}, True, "/set_favorite"), "No output image with id {'a': 1}."),
        ((job["outputs"][0]["image_url"], "/download"), "No output image with id"),
        ((None, "/cancel_generation"), "No generation with id None."),
        ((job["id"], "/cancel_generation"), "already ended"),
        (("x", False, "", "", "1", "/rerun_generation"), "seed, steps and the scales must be numbers"),
    ]
    for (*arguments, api_name), expected in expectations:
        assert_refusal(app_error(lambda: client.predict(*arguments, api_name=api_name)), expected)
    assert client.predict(10, 10**30, api_name="/list_garments") == []  # past the end: a clean, empty page

    # what gradio_client would not send, a hostile caller can
    assert call_raw(url, "generation", b'{"data": ["\\ud800"]}') == ("error", "No generation with id '\\ud800'.")
    assert call_raw(url, "list_garments", b'{"data": [Infinity, 0]}') == (
        "error", "limit and offset must be whole numbers.")
    generate_with_infinite_seed = [garment["id"], "ghost_01", [], [], "white", "jpeg", False, "", "", 1, float("inf"),
                                   0, -1.0, 0.7, 0.8, 0, 0, ""]  # json.dumps writes Infinity
    event, message = call_raw(url, "generate", generate_with_infinite_seed)
    assert event == "error" and message.startswith("A diffusion parameter is not a number"), message

    assert (state(studio), studio.database.get_garment(garment["id"])) == before
    assert_nothing_half_stored(studio)
    assert [g["id"] for g in client.predict(500, 0, api_name="/list_garments")][0] == garment["id"]  # still serving


# ---------- through the UI's upload handler ----------


def ui_handler(studio: Studio, name: str):
    demo = create_demo(studio)
    return next(block.fn for block in demo.fns.values() if getattr(block.fn, "__name__", "") == name)


def test_ui_upload_of_only_refused_files_stores_nothing(studio, tmp_path):
    on_add = ui_handler(studio, "on_add")
    paths = [str(write_case(tmp_path, name)) for name in sorted(REFUSED)]
    # nothing is raised (an error would put "Error" badges on the page): each file's refusal is said once, naming
    # it, and the page says no photo could be used
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        closet, ids, chosen, note, *_ = on_add(paths, ["ebay"], None)
    messages = [str(w.message) for w in shown if ".jpg: " in str(w.message)]
    assert len(messages) == len(REFUSED)
    for name, (_, expected) in REFUSED.items():
        [message] = [m for m in messages if m.startswith(f"{name}.jpg: ")]
        assert expected in message, name
    assert note == "No photo could be used; see the messages."
    assert [closet, ids, chosen] == [gr.skip()] * 3  # the closet, and the garment open in it, stay as they were
    assert state(studio) == ({"garments": 0, "generations": 0, "output_images": 0}, [])
    for nothing in ([], None):
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            on_add(nothing, ["ebay"], None)
        assert [str(w.message) for w in shown] == ["Choose one or more photos first."]


def test_ui_upload_keeps_the_good_photos_of_a_mixed_batch(studio, tmp_path, photo_path):
    on_add = ui_handler(studio, "on_add")
    odd = tmp_path / "Ünïcødé 衬衫 👕 a\\b.jpg"
    odd.write_bytes(built("exif-rotated-jpeg"))
    refused = [str(write_case(tmp_path, name)) for name in ("text", "truncated-jpeg", "webp-16383-x-16383")]
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        closet, ids, chosen, note, *_ = on_add([refused[0], str(photo_path), refused[1], str(odd), refused[2]],
                                               ["ebay"], None)
    warned = [str(w.message) for w in shown if ".jpg: " in str(w.message)]
    assert len(warned) == 3 and "268.4 megapixels" in warned[2]
    garments = studio.list_garments()
    assert len(garments) == 2 and note.startswith("Added 2 garments.")
    assert chosen == next(g["id"] for g in garments if g["original_filename"] == "navy tee.jpg")  # the first good one
    assert {g["original_filename"] for g in garments} == {"navy tee.jpg", "b.jpg"}
    assert {(g["width"], g["height"]) for g in garments} == {(600, 800), (300, 400)}
    assert set(ids) == {g["id"] for g in garments}
    assert_nothing_half_stored(studio)
