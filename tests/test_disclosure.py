"""AI disclosure: the IPTC digital source type is written into JPEG and PNG metadata and read back."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.disclosure import (
    IPTC_EXT_NS, RDF_NS, SOFTWARE, TRAINED_ALGORITHMIC_MEDIA, XMP_APP1_HEADER, encode_with_disclosure,
    read_digital_source_type, xmp_packet,
)
from pipeline.errors import InputError


@pytest.fixture(scope="module")
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 96)[None, :, None] * np.ones((64, 96, 3))
    return Image.fromarray((gradient + rng.normal(0, 20, (64, 96, 3))).clip(0, 255).astype(np.uint8))


def _plain(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.getvalue()


def _app1_segments(data: bytes) -> list[bytes]:
    """Payloads of the APP1 segments before the image data, walked marker by marker."""
    assert data[:2] == b"\xff\xd8"
    segments, position = [], 2
    while data[position] == 0xFF and data[position + 1] != 0xDA:
        marker = data[position + 1]
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if marker == 0xE1:
            segments.append(data[position + 4:position + 2 + length])
        position += 2 + length
    return segments


def test_jpeg_carries_the_xmp_in_an_app1_segment(image):
    data = encode_with_disclosure(image, "jpeg", quality=90)
    xmp = [s[len(XMP_APP1_HEADER):] for s in _app1_segments(data) if s.startswith(XMP_APP1_HEADER)]
    assert len(xmp) == 1
    description = ElementTree.fromstring(xmp[0]).find(f".//{{{RDF_NS}}}Description")
    source = description.find(f"{{{IPTC_EXT_NS}}}DigitalSourceType")
    assert source.get(f"{{{RDF_NS}}}resource") == TRAINED_ALGORITHMIC_MEDIA
    assert read_digital_source_type(data) == TRAINED_ALGORITHMIC_MEDIA


def test_jpeg_file_reopened_with_pil(image, tmp_path: Path):
    path = tmp_path / "generated.jpg"
    path.write_bytes(encode_with_disclosure(image, "jpeg"))
    with Image.open(path) as reopened:
        assert reopened.format == "JPEG"
        assert b"trainedAlgorithmicMedia" in reopened.info["xmp"]
        assert b"AI-generated" in reopened.info["comment"]
        assert reopened.getexif()[0x0131] == SOFTWARE
    assert read_digital_source_type(path.read_bytes()) == TRAINED_ALGORITHMIC_MEDIA


def test_png_carries_the_xmp_chunk_and_plain_text(image, tmp_path: Path):
    data = encode_with_disclosure(image, "png")
    assert b"iTXtXML:com.adobe.xmp\x00\x00\x00" in data   # uncompressed iTXt, as the XMP spec asks
    path = tmp_path / "generated.png"
    path.write_bytes(data)
    with Image.open(path) as reopened:
        assert reopened.format == "PNG"
        assert b"trainedAlgorithmicMedia" in reopened.info["xmp"]
        assert reopened.info["DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
        assert reopened.info["Software"] == SOFTWARE
        assert "AI-generated" in reopened.info["Description"]
    assert read_digital_source_type(data) == TRAINED_ALGORITHMIC_MEDIA


def test_pixels_are_the_same_as_a_plain_encode(image):
    marked = Image.open(io.BytesIO(encode_with_disclosure(image, "jpeg", quality=85)))
    plain = Image.open(io.BytesIO(_plain(image, format="JPEG", quality=85, subsampling=0)))
    np.testing.assert_array_equal(np.asarray(marked), np.asarray(plain))
    png = Image.open(io.BytesIO(encode_with_disclosure(image, "png")))
    np.testing.assert_array_equal(np.asarray(png), np.asarray(image))


def test_transparent_image_is_flattened_for_jpeg_and_kept_for_png():
    rgba = Image.new("RGBA", (32, 32), (200, 0, 0, 0))
    jpeg = Image.open(io.BytesIO(encode_with_disclosure(rgba, "jpg")))
    assert jpeg.mode == "RGB" and min(jpeg.getpixel((16, 16))) >= 250   # white, not the hidden red
    png = Image.open(io.BytesIO(encode_with_disclosure(rgba, "PNG")))
    assert png.mode == "RGBA" and png.getpixel((16, 16))[3] == 0


def test_images_without_disclosure_read_none(image):
    assert read_digital_source_type(_plain(image, format="JPEG")) is None
    assert read_digital_source_type(_plain(image, format="PNG")) is None
    other = xmp_packet().replace(b"<Iptc4xmpExt:DigitalSourceType", b"<Iptc4xmpExt:Other")
    assert read_digital_source_type(_plain(image, format="JPEG", xmp=other)) is None


def test_text_form_of_the_source_type_is_read_too(image):
    text_form = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF_NS}"><rdf:Description '
                 f'xmlns:Iptc4xmpExt="{IPTC_EXT_NS}"><Iptc4xmpExt:DigitalSourceType>{TRAINED_ALGORITHMIC_MEDIA}'
                 f'</Iptc4xmpExt:DigitalSourceType></rdf:Description></rdf:RDF></x:xmpmeta>').encode()
    assert read_digital_source_type(_plain(image, format="JPEG", xmp=text_form)) == TRAINED_ALGORITHMIC_MEDIA


def test_bad_arguments_are_input_errors(image):
    with pytest.raises(InputError):
        encode_with_disclosure(image, "gif")
    with pytest.raises(InputError):
        encode_with_disclosure(image, "jpeg", quality=0)
    with pytest.raises(InputError):
        read_digital_source_type(b"not an image")
