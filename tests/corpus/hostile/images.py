"""Hostile and broken image attachments for the documents pipeline, made here with Pillow or byte
by byte: headers claiming huge sizes, real deflate bombs under the pixel limit, strips of one
pixel, many-frame and damaged TIFFs, and unusual but valid pages (CMYK, 16-bit, palette, fax)."""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache

from PIL import Image

from plugin.sandbox import synthetic
from tests.corpus.hostile import HostileInput

DOCUMENT = "documents"


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


@cache
def lab_page() -> Image.Image:
    """The top of the demo lab report at 100 dpi: a real page with text, small enough to OCR
    quickly."""
    page = synthetic.page_images(synthetic.DEMO_LAB_REPORT, dpi=100)[0]
    return page.crop((0, 0, page.width, page.height // 3)).convert("L")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` grey pixels, with 16 bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + png_chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to declare another size."""
    data = bytearray(encode(Image.new("L", (16, 16), 255), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff_claiming(width: int | None, height: int) -> bytes:
    """A little-endian TIFF with one strip of 16 bytes and a header declaring the size (no
    ImageWidth tag at all when `width` is None)."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height),
               (279, 4, 1, 16)]
    entries = [entry for entry in entries if entry[3] is not None]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, count, value or 0) for tag, kind, count, value in entries)
    return b"II*\x00" + struct.pack("<I", 24) + b"\0" * 16 + ifd + b"\0\0\0\0"


def frames_tiff(frame: Image.Image, count: int, compression: str = "tiff_deflate") -> bytes:
    return encode(frame, "TIFF", save_all=True, append_images=[frame] * (count - 1),
                  compression=compression)


def damaged_strip_tiff() -> bytes:
    """A deflated TIFF whose compressed strip is overwritten with junk."""
    data = frames_tiff(lab_page(), 1)
    start = data.index(b"\x78\x9c")  # the zlib header of the strip
    return data[:start + 2] + b"\xff" * 40 + data[start + 42:]


def sixteen_bit_png() -> bytes:
    page = lab_page().point(lambda v: v * 257, mode="I")  # 0..65535
    return encode(page.convert("I;16"), "PNG")


def corrupt_crc_png() -> bytes:
    data = bytearray(encode(lab_page(), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    return bytes(data)


CASES: tuple[HostileInput, ...] = (
    HostileInput("png-header-8000x8000", DOCUMENT, "image/png", lambda: png_claiming(8000, 8000),
                 reason="over the 60000000-pixel limit"),
    HostileInput("png-header-40000x40000", DOCUMENT, "image/png",
                 lambda: png_claiming(40_000, 40_000), reason="too large to open safely"),
    HostileInput("png-deflate-bomb-7000-grey", DOCUMENT, "image/png",
                 lambda: encode(Image.new("L", (7000, 7000), 255), "PNG"),
                 reason="memory budget"),
    HostileInput("png-deflate-bomb-7000-rgb", DOCUMENT, "image/png",
                 lambda: encode(Image.new("RGB", (7000, 7000), (255, 255, 255)), "PNG"),
                 reason="memory budget"),
    HostileInput("png-100000x1", DOCUMENT, "image/png",
                 lambda: encode(Image.new("L", (100_000, 1), 0), "PNG"),
                 reason="not the shape of a page"),
    HostileInput("png-1x100000", DOCUMENT, "image/png",
                 lambda: encode(Image.new("L", (1, 100_000), 255), "PNG"),
                 reason="not the shape of a page"),
    HostileInput("jpeg-1x65500", DOCUMENT, "image/jpeg",
                 lambda: encode(Image.new("L", (1, 65_500), 128), "JPEG"),
                 reason="not the shape of a page"),
    HostileInput("jpeg-header-65500x65500", DOCUMENT, "image/jpeg",
                 lambda: jpeg_claiming(65_500, 65_500), reason="too large to open safely"),
    HostileInput("jpeg-header-7000x7000", DOCUMENT, "image/jpeg",
                 lambda: jpeg_claiming(7000, 7000), reason="memory budget"),
    HostileInput("tiff-header-50000x50000", DOCUMENT, "image/tiff",
                 lambda: tiff_claiming(50_000, 50_000), reason="too large to open safely"),
    HostileInput("tiff-60-frames-of-9mpx", DOCUMENT, "image/tiff",
                 lambda: frames_tiff(Image.new("L", (3000, 3000), 255), 60),
                 reason="memory budget"),
    HostileInput("tiff-truncated", DOCUMENT, "image/tiff",
                 lambda: frames_tiff(lab_page(), 3)[:-200], reason="corrupt tiff"),
    HostileInput("tiff-damaged-strip", DOCUMENT, "image/tiff", damaged_strip_tiff,
                 reason="corrupt tiff"),
    HostileInput("tiff-no-width", DOCUMENT, "image/tiff", lambda: tiff_claiming(None, 100),
                 reason="corrupt tiff"),
    HostileInput("png-truncated", DOCUMENT, "image/png",
                 lambda: encode(lab_page(), "PNG")[:2000], reason="corrupt png"),
    HostileInput("png-bad-checksum", DOCUMENT, "image/png", corrupt_crc_png,
                 reason="corrupt png"),
    HostileInput("gif-declared-png", DOCUMENT, "image/png", lambda: encode(lab_page(), "GIF"),
                 reason="gif image"),
    HostileInput("bmp-declared-jpeg", DOCUMENT, "image/jpeg", lambda: encode(lab_page(), "BMP"),
                 reason="bmp image"),
    HostileInput("jpeg-cmyk", DOCUMENT, "image/jpeg",
                 lambda: encode(lab_page().convert("CMYK"), "JPEG", quality=95),
                 expect="succeeds"),
    HostileInput("png-16-bit", DOCUMENT, "image/png", sixteen_bit_png, expect="succeeds"),
    HostileInput("png-palette", DOCUMENT, "image/png",
                 lambda: encode(lab_page().convert("P"), "PNG"), expect="succeeds"),
    HostileInput("tiff-fax-g4", DOCUMENT, "image/tiff",
                 lambda: encode(lab_page().convert("1"), "TIFF", compression="group4"),
                 expect="succeeds"),
    HostileInput("png-blank-page", DOCUMENT, "image/png",
                 lambda: encode(Image.new("L", (850, 1100), 255), "PNG"), expect="succeeds"),
    HostileInput("png-blank-strip-20-to-1", DOCUMENT, "image/png",
                 lambda: encode(Image.new("L", (4000, 200), 0), "PNG"), expect="succeeds"),
)
