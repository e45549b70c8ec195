"""Image files built for the ingest tests: an image encoded by Pillow, and files written by hand whose headers
claim what the pixels are not (sizes for bombs, bit depths Pillow cannot write)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_by_hand(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes,
                extra_chunks: bytes = b"") -> bytes:
    """A PNG of the given header around `idat` (already deflated), with `extra_chunks` before it."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + extra_chunks + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def lossless_webp_declaring(width: int, height: int) -> bytes:
    """A lossless (VP8L) WebP whose header claims `width` x `height`; decoding it would allocate that much."""
    data = encode(Image.new("RGB", (8, 8), (1, 2, 3)), "WEBP", lossless=True)
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = struct.unpack("<I", data[21:25])[0]
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    return data[:21] + struct.pack("<I", bits) + data[25:]
