"""PDFs: open them defensively, read each page's text layer with where every word was printed
(pdfium), tell which pages need OCR, and render pages within a pixel budget."""

from __future__ import annotations

import io
import math
import threading
import unicodedata
from dataclasses import dataclass

import pypdf
import pypdfium2
import pypdfium2.raw as pdfium_c
from PIL import Image

from plugin.errors import InputError
from plugin.results import Box

from .pages import PageText
from .word_boxes import PageWord, lay_out

# pdfium is not thread-safe, not even across documents: every call into it in this process
# goes through this lock (jobs run on several threads).
PDFIUM_LOCK = threading.Lock()
MIN_RENDER_DPI = 100  # below this OCR reads nothing useful: a page that needs less is refused
_EOF_WINDOW = 8192  # a complete PDF ends with %%EOF; producers append at most a little junk


@dataclass(frozen=True)
class PageImageInfo:
    """The largest image drawn on a page: its pixel size and how much of the page it covers."""

    px_width: int
    px_height: int
    dpi: float
    page_fraction: float


class PdfFile:
    """One PDF, opened with both libraries: pypdf for the text layer, pdfium for geometry and
    rendering. Refuses encrypted, truncated, corrupt and empty files with InputError."""

    def __init__(self, data: bytes, *, source: str, max_page_pixels: int) -> None:
        self.source = source
        self.max_page_pixels = max_page_pixels
        end_marker = data.rfind(b"%%EOF")
        if end_marker < 0 or end_marker < len(data) - _EOF_WINDOW:
            raise InputError(source, "the PDF is truncated (it has no end-of-file marker)")
        self._reader = _open_reader(data, source)
        try:
            page_count = len(self._reader.pages)
        except Exception as exc:  # pypdf raises many types for broken page trees
            raise InputError(source, f"the PDF is corrupt ({_describe(exc)})") from None
        if page_count == 0:
            raise InputError(source, "the PDF has no pages")
        with PDFIUM_LOCK:
            try:
                self._pdfium = pypdfium2.PdfDocument(data)
            except pypdfium2.PdfiumError as exc:
                raise InputError(source, f"the PDF is corrupt ({exc})") from None
            self.page_count = min(page_count, len(self._pdfium))

    def close(self) -> None:
        with PDFIUM_LOCK:
            self._pdfium.close()

    def __enter__(self) -> PdfFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def page_text(self, index: int) -> PageText:
        """The text layer of page `index` (0-based): pdfium's characters grouped into words by
        where they were printed, laid out in lines (PDF points, origin top left). Characters
        whose font has no Unicode map come out as U+FFFD, so the page reads as garbage."""
        with PDFIUM_LOCK:
            page = self._pdfium[index]
            width, height = page.get_size()
            try:
                words = text_layer_words(page, height)
            finally:
                page.close()
        return lay_out(index + 1, words, origin="text-layer", width=width, height=height,
                       note="text layer")

    def largest_image(self, index: int) -> PageImageInfo | None:
        """The biggest image on the page, checked against the pixel budget before anything
        decodes it (a tiny PDF can hold a decompression bomb)."""
        with PDFIUM_LOCK:
            page = self._pdfium[index]
            width, height = page.get_size()
            best: PageImageInfo | None = None
            for image in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3):
                px_w, px_h = image.get_px_size()
                if px_w * px_h > self.max_page_pixels:
                    page.close()
                    raise InputError(self.source, f"page {index + 1} holds a {px_w}x{px_h} image, "
                                                  f"over the {self.max_page_pixels}-pixel limit")
                left, bottom, right, top = image.get_bounds()
                shown_w = max(right - left, 1e-3)
                info = PageImageInfo(px_w, px_h, dpi=px_w / (shown_w / 72),
                                     page_fraction=min(1.0, shown_w * (top - bottom)
                                                       / (width * height)))
                if best is None or px_w * px_h > best.px_width * best.px_height:
                    best = info
            page.close()
        return best

    def render(self, index: int, dpi: float, *, grayscale: bool = True) -> tuple[Image.Image, float]:
        """The page as an image at `dpi`, or at the highest dpi the pixel budget allows;
        returns the image and the dpi used."""
        with PDFIUM_LOCK:
            page = self._pdfium[index]
            width, height = page.get_size()
            budget_dpi = 72 * math.sqrt(self.max_page_pixels / max(width * height, 1.0))
            dpi = min(dpi, budget_dpi)
            if dpi < MIN_RENDER_DPI:
                page.close()
                raise InputError(self.source, f"page {index + 1} is {width / 72:.0f}x"
                                              f"{height / 72:.0f} inches, too large to render "
                                              f"within the {self.max_page_pixels}-pixel limit")
            bitmap = page.render(scale=dpi / 72, grayscale=grayscale)
            image = bitmap.to_pil().convert("L" if grayscale else "RGB")
            bitmap.close()
            page.close()
        return image, dpi


def has_usable_text(page: PageText) -> bool:
    """Enough real characters to read: not empty, not a few stray marks, not glyphs without a
    Unicode meaning (a font with no or a private ToUnicode map gives U+FFFD, private-use or
    control characters)."""
    # Leaders ("Glucose ........ 128") are marks, but not stray ones.
    visible = [c for c in page.text if not c.isspace() and c not in ".·…_"]
    letters = sum(c.isalnum() for c in visible)
    broken = sum(c == "\ufffd" or unicodedata.category(c) in ("Co", "Cc", "Cs", "Cn")
                 for c in visible) + page.text.count("(cid:")
    return letters >= 20 and letters >= 0.5 * len(visible) and broken <= 0.05 * len(visible)


def _open_reader(data: bytes, source: str) -> pypdf.PdfReader:
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
    except Exception as exc:
        raise InputError(source, f"the PDF is corrupt or truncated ({_describe(exc)})") from None
    if reader.is_encrypted:
        # An empty user password (owner-only protection) opens; anything else cannot be read.
        try:
            opened = reader.decrypt("") != pypdf.PasswordType.NOT_DECRYPTED
        except pypdf.errors.DependencyError as exc:
            raise InputError(source, f"the PDF is encrypted and cannot be opened here ({exc})") \
                from None
        if not opened:
            raise InputError(source, "the PDF is encrypted (password protected)")
    return reader


def text_layer_words(page: pypdfium2.PdfPage, height: float) -> list[PageWord]:
    """Every word of the page's text layer with its box. A word ends at white space, at a gap
    wider than a third of the font size, or where the next character is printed elsewhere (a
    new line or cell), whatever order the producer drew them in."""
    textpage = page.get_textpage()
    try:
        raw = textpage.raw
        words: list[PageWord] = []
        chars: list[str] = []
        boxes: list[tuple[float, float, float, float]] = []

        def flush() -> None:
            if chars:
                words.append(PageWord("".join(chars), _union(boxes, height)))
                chars.clear()
                boxes.clear()

        for i in range(textpage.count_chars()):
            code = pdfium_c.FPDFText_GetUnicode(raw, i)
            char = chr(code) if 0 < code < 0x110000 else "\ufffd"
            if pdfium_c.FPDFText_HasUnicodeMapError(raw, i):
                char = "\ufffd"
            if char.isspace() or char == "\x00" or pdfium_c.FPDFText_IsGenerated(raw, i):
                flush()
                continue
            box = textpage.get_charbox(i)
            if boxes and not _continues(boxes[-1], box, pdfium_c.FPDFText_GetFontSize(raw, i)):
                flush()
            chars.append(char)
            boxes.append(box)
        flush()
    finally:
        textpage.close()
    return words


def _continues(last: tuple[float, float, float, float], box: tuple[float, float, float, float],
               size: float) -> bool:
    """Whether a character printed at `box` continues the word that ended at `last`."""
    size = max(size, last[3] - last[1], 1.0)
    same_line = abs((last[1] + last[3]) / 2 - (box[1] + box[3]) / 2) <= size / 2
    return same_line and -size / 4 <= box[0] - last[2] <= size / 3


def _union(charboxes: list[tuple[float, float, float, float]], height: float) -> Box:
    """pdfium boxes (left, bottom, right, top; origin bottom left) as one top-left-origin Box."""
    left = min(b[0] for b in charboxes)
    right = max(b[2] for b in charboxes)
    top = max(b[3] for b in charboxes)
    bottom = min(b[1] for b in charboxes)
    return Box(round(left, 1), round(height - top, 1), round(right, 1), round(height - bottom, 1))


def _describe(exc: Exception) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
