"""PDFs: open them defensively, read each page's text layer with where every word was printed
(pdfium), tell which pages need OCR, and render pages within a pixel budget.

pdfium decodes a page's inline images as soon as the page is loaded and its image objects when
the page is drawn, so both are sized from their declarations and charged to the job's memory
budget before pdfium sees the page.
"""

from __future__ import annotations

import io
import math
import re
import threading
import unicodedata
from dataclasses import dataclass

import pypdf
import pypdfium2
import pypdfium2.raw as pdfium_c
from PIL import Image

from plugin.budget import MemoryBudget
from plugin.errors import InputError
from plugin.results import Box

from .image_files import image_bytes
from .pages import PageText
from .scan_cleanup import page_shape_problem
from .word_boxes import PageWord, lay_out

# pdfium is not thread-safe, not even across documents: every call into it in this process
# goes through this lock (jobs run on several threads).
PDFIUM_LOCK = threading.Lock()
MIN_RENDER_DPI = 100  # below this OCR reads nothing useful: a page that needs less is refused
_EOF_WINDOW = 8192  # a complete PDF ends with %%EOF; producers append at most a little junk
CHAR_BATCH = 2000  # characters of a text layer read from pdfium in one hold of its lock
MAX_FORMS = 1000  # form XObjects looked into per page for inline images
# An inline image's header: "BI", its short-form dictionary, "ID" (PDF 32000-1, 8.9.7). A
# dictionary never holds another "BI", so a content stream of "BI BI BI ..." is scanned once.
_INLINE_IMAGE = re.compile(rb"(?<![^\s\]>)])BI\s((?:(?!BI\s)[\s\S]){0,1024}?)\sID\s")
_INLINE_TOKEN = re.compile(rb"/[^\s/\[\]<>()]+|\[[^\]]*\]|[^\s/\[\]<>()]+")
_INLINE_KEY = {b"W": b"Width", b"H": b"Height", b"BPC": b"BitsPerComponent", b"CS": b"ColorSpace",
               b"IM": b"ImageMask"}
_COLOUR_COMPONENTS = {b"G": 1, b"DeviceGray": 1, b"CalGray": 1, b"I": 1, b"Indexed": 1,
                      b"CMYK": 4, b"DeviceCMYK": 4}  # anything else: 3 (RGB, Lab, ICC)


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

    def __init__(self, data: bytes, *, source: str, max_page_pixels: int,
                 budget: MemoryBudget | None = None) -> None:
        self.source = source
        self.max_page_pixels = max_page_pixels
        self.budget = budget if budget is not None else MemoryBudget(source)
        self._checked_pages: set[int] = set()
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
        self._check_page(index)
        with PDFIUM_LOCK:
            page = self._pdfium[index]
            width, height = page.get_size()
        try:
            words = text_layer_words(page, height)
        finally:
            with PDFIUM_LOCK:
                page.close()
        return lay_out(index + 1, words, origin="text-layer", width=width, height=height,
                       note="text layer")

    def largest_image(self, index: int) -> PageImageInfo | None:
        """The biggest image on the page, checked against the pixel budget before anything
        decodes it (a tiny PDF can hold a decompression bomb)."""
        self._check_page(index)
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

    def render(self, index: int, dpi: float, *, grayscale: bool = True,
               max_pixels: int | None = None) -> tuple[Image.Image, float]:
        """The page as an image at `dpi`, or at the highest dpi the pixel limit (and
        `max_pixels`) allows; returns the image and the dpi used. The image stays charged to
        the budget: the caller releases `image_bytes(image)` when it drops it."""
        self._check_page(index)
        limit = min(self.max_page_pixels, max_pixels or self.max_page_pixels)
        with PDFIUM_LOCK:
            page = self._pdfium[index]
            try:
                width, height = page.get_size()
                budget_dpi = 72 * math.sqrt(limit / max(width * height, 1.0))
                dpi = min(dpi, budget_dpi)
                if dpi < MIN_RENDER_DPI and limit == self.max_page_pixels:
                    raise InputError(self.source, f"page {index + 1} is {width / 72:.0f}x"
                                                  f"{height / 72:.0f} inches, too large to render "
                                                  f"within the {self.max_page_pixels}-pixel limit")
                px_w, px_h = math.ceil(width * dpi / 72), math.ceil(height * dpi / 72)
                problem = page_shape_problem(px_w, px_h)
                if problem is not None:
                    raise InputError(self.source, f"page {index + 1} is refused: {problem}")
                kept = px_w * px_h * (1 if grayscale else 3)
                # pdfium draws into a 4-byte-per-pixel bitmap and decodes every image it draws.
                drawing = px_w * px_h * 4 + self._decoded_image_bytes(page, index)
                self.budget.charge(kept, f"page {index + 1} rendered at {dpi:.0f} dpi")
                try:
                    with self.budget.held(drawing, f"drawing page {index + 1}"):
                        bitmap = page.render(scale=dpi / 72, grayscale=grayscale)
                        image = bitmap.to_pil().convert("L" if grayscale else "RGB")
                        bitmap.close()
                except BaseException:
                    self.budget.release(kept)
                    raise
            finally:
                page.close()
        # The estimate rounds up; what is released later is the image's own size.
        self.budget.release(kept - image_bytes(image))
        return image, dpi

    def _decoded_image_bytes(self, page: pypdfium2.PdfPage, index: int) -> int:
        """What pdfium will allocate to decode the page's images (caller holds the lock)."""
        total = 0
        for image in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3):
            px_w, px_h = image.get_px_size()
            if px_w * px_h > self.max_page_pixels:
                raise InputError(self.source, f"page {index + 1} holds a {px_w}x{px_h} image, "
                                              f"over the {self.max_page_pixels}-pixel limit")
            total += px_w * px_h * 4
        return total

    def _check_page(self, index: int) -> None:
        """Refuse the page before pdfium loads it when its inline images are too large: pdfium
        inflates them while parsing the page and the forms it draws (a 1 MB file can hold
        gigabytes of them)."""
        if index in self._checked_pages:
            return
        try:
            streams = _content_streams(self._reader.pages[index])
        except Exception as exc:  # pypdf refuses a content stream that inflates past its limit
            raise InputError(self.source, f"page {index + 1}'s content cannot be read "
                                          f"({_describe(exc)})") from None
        # pdfium holds the inflated content and what it parses from it.
        size = sum(len(data) for data in streams)
        self.budget.check(2 * size, f"page {index + 1}'s content ({size} bytes)")
        total = 0
        for width, height, components in (found for data in streams
                                          for found in inline_images(data)):
            if width * height > self.max_page_pixels:
                raise InputError(self.source, f"page {index + 1} holds a {width}x{height} inline "
                                              f"image, over the {self.max_page_pixels}-pixel limit")
            total += width * height * components
        self.budget.check(total, f"page {index + 1}'s inline images")
        self._checked_pages.add(index)


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


def _content_streams(page: pypdf.PageObject) -> list[bytes]:
    """The page's content and that of every form it draws (forms within forms too), inflated
    by pypdf, which stops at its own limit per stream."""
    content = page.get_contents()
    streams = [content.get_data() if content is not None else b""]
    seen: set[int] = set()
    pending = [page.get("/Resources")]
    while pending and len(seen) < MAX_FORMS:
        resources = _resolved(pending.pop())
        xobjects = _resolved(resources.get("/XObject")) if resources is not None else None
        for reference in (xobjects.values() if xobjects is not None else ()):
            form = reference.get_object()
            # pypdf keeps one object per indirect reference, so a form drawing itself is seen.
            if not isinstance(form, pypdf.generic.StreamObject) or id(form) in seen \
                    or form.get("/Subtype") != "/Form":
                continue
            seen.add(id(form))
            streams.append(form.get_data())
            pending.append(form.get("/Resources"))
    return streams


def _resolved(value: object) -> pypdf.generic.DictionaryObject | None:
    found = value.get_object() if isinstance(value, pypdf.generic.PdfObject) else None
    return found if isinstance(found, pypdf.generic.DictionaryObject) else None


def inline_images(content: bytes) -> list[tuple[int, int, int]]:
    """(width, height, colour components) of each inline image a page's content declares."""
    found = []
    for match in _INLINE_IMAGE.finditer(content):
        tokens = _INLINE_TOKEN.findall(match.group(1))
        values = {_INLINE_KEY.get(key[1:], key[1:]): value
                  for key, value in zip(tokens[::2], tokens[1::2], strict=False)
                  if key.startswith(b"/")}
        try:
            width, height = int(values.get(b"Width", b"0")), int(values.get(b"Height", b"0"))
        except ValueError:
            continue
        # A name (/RGB) or an array whose first name says ([/Indexed /RGB 255 <...>]).
        space = ((values.get(b"ColorSpace") or b"/G").strip(b"[ ").split() or [b"/G"])[0]
        components = 1 if values.get(b"ImageMask") == b"true" \
            else _COLOUR_COMPONENTS.get(space.lstrip(b"/"), 3)
        found.append((max(width, 0), max(height, 0), components))
    return found


def text_layer_words(page: pypdfium2.PdfPage, height: float) -> list[PageWord]:
    """Every word of the page's text layer with its box. A word ends at white space, at a gap
    wider than a third of the font size, or where the next character is printed elsewhere (a
    new line or cell), whatever order the producer drew them in."""
    with PDFIUM_LOCK:
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

        with PDFIUM_LOCK:
            count = textpage.count_chars()
        lock_held = False
        for i in range(count):
            # Other jobs get pdfium between batches of characters: a page of 100,000 words does
            # not keep every other PDF waiting.
            if i % CHAR_BATCH == 0:
                if lock_held:
                    PDFIUM_LOCK.release()
                PDFIUM_LOCK.acquire()
                lock_held = True
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
        if lock_held:
            PDFIUM_LOCK.release()
            lock_held = False
        flush()
    finally:
        if lock_held:
            PDFIUM_LOCK.release()
        with PDFIUM_LOCK:
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
