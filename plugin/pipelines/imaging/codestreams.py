"""The size a compressed frame declares in its own codestream header (JPEG, JPEG-LS, JPEG 2000),
read before decoding: decoders allocate what the codestream says, not what the DICOM header
says, so a 64x64 instance carrying a 65000x65000 JPEG would allocate gigabytes."""

from __future__ import annotations

# JPEG start-of-frame markers (ITU T.81 B.1.1.3; JPEG-LS SOF55 is 0xF7): FFC4, FFC8 and FFCC are
# tables and extensions with other layouts.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
_J2K_SIZ = b"\xff\x4f\xff\x51"  # SOC then SIZ (ITU T.800 A.5.1)
_SCAN = 1024 * 1024  # the headers sit at the start of the first fragment


def declared_size(pixel_data: bytes) -> tuple[int, int] | None:
    """(rows, columns) the first frame's codestream declares, or None when no JPEG or JPEG 2000
    header is found (RLE and others carry no size of their own)."""
    head = pixel_data[:_SCAN]
    j2k = head.find(_J2K_SIZ)
    jpeg = head.find(b"\xff\xd8\xff")
    if j2k >= 0 and (jpeg < 0 or j2k < jpeg):
        return _j2k_size(head, j2k + 4)
    if jpeg >= 0:
        return _jpeg_size(head, jpeg + 2)
    return None


def _jpeg_size(head: bytes, position: int) -> tuple[int, int] | None:
    """Walk the marker segments after SOI to the first SOF: (Y, X) = (rows, columns)."""
    while position + 4 <= len(head):
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(head[position + 2:position + 4], "big")
        if marker in _SOF:
            if position + 9 > len(head):
                return None
            rows = int.from_bytes(head[position + 5:position + 7], "big")
            columns = int.from_bytes(head[position + 7:position + 9], "big")
            return rows, columns
        if marker == 0xDA or length < 2:  # start of scan before any frame header: malformed
            return None
        position += 2 + length
    return None


def _j2k_size(head: bytes, position: int) -> tuple[int, int] | None:
    """SIZ: Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4); the image is (Y-YO) x (X-XO)."""
    if position + 20 > len(head):
        return None
    x, y, x0, y0 = (int.from_bytes(head[position + 4 + 4 * i:position + 8 + 4 * i], "big")
                    for i in range(4))
    return max(y - y0, 0), max(x - x0, 0)
