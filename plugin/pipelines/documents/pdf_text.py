"""PDFs: open them defensively, read each page's text layer (pypdf) with where every word was
printed (pdfium), tell which pages need OCR, and render pages within a pixel budget.

pdfium decodes a page's inline images as soon as the page is loaded and its image objects when
the page is drawn, so both are sized from their declarations and charged to the job's memory
budget before pdfium sees the page.
"""

from __future__ import annotations

import io
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pypdf
import pypdfium2
import pypdfium2.raw as pdfium_c
from PIL import Image

from plugin.budget import MemoryBudget
from plugin.errors import InputError
from plugin.results import Box

from .image_files import image_bytes
from .pages import PageText, Word
from .scan_cleanup import page_shape_problem

# pdfium is not thread-safe, not even across documents: every call into it in this process
# goes through this lock (jobs run on several threads).
PDFIUM_LOCK = threading.Lock()
MIN_RENDER_DPI = 100  # below this OCR reads nothing useful: a page that needs less is refused
_TOKEN = re.compile(r"\S+")
_EOF_WINDOW = 8192  # a complete PDF ends with %%EOF; producers append at most a little junk
# Words of the two readings are matched within this many words of where they disagree: text layers
# differ by a split word or a ligature, not by pages of text.
ALIGN_WINDOW = 32
BOX_BATCH = 500  # words whose character boxes are read from pdfium in one hold of its lock
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
        """The text layer of page `index` (0-based), each word boxed in PDF points."""
        try:
            text = self._reader.pages[index].extract_text() or ""
        except Exception:  # a broken content stream: the page is treated as having no text
            text = ""
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        self._check_page(index)
        with PDFIUM_LOCK:
            page = self._pdfium[index]
            width, height = page.get_size()
        try:
            words = _boxed_words(text, page, height) if text.strip() else ()
        finally:
            with PDFIUM_LOCK:
                page.close()
        return PageText(number=index + 1, text=text, origin="text-layer", words=words,
                        width=round(width, 2), height=round(height, 2), note="text layer")

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
    """Enough real characters to read: not empty, not a few stray marks, not unmapped glyphs."""
    visible = [c for c in page.text if not c.isspace()]
    letters = sum(c.isalnum() for c in visible)
    broken = page.text.count("\ufffd") + page.text.count("(cid:")
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


def _boxed_words(text: str, page: pypdfium2.PdfPage, height: float) -> tuple[Word, ...]:
    """pypdf's words matched to pdfium's characters, which know where they were printed. Only
    the pdfium calls hold its lock; the matching runs outside it, and the character boxes are
    read a batch at a time, so a page of 100,000 words does not keep other jobs from pdfium."""
    with PDFIUM_LOCK:
        textpage = page.get_textpage()
        printed = textpage.get_text_range()
    try:
        ours = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
        theirs = [(m.start(), m.end()) for m in _TOKEN.finditer(printed)]
        matched = list(align_words([word for _, _, word in ours],
                                   [printed[start:end] for start, end in theirs]).items())
        boxes: dict[int, Box] = {}
        for first in range(0, len(matched), BOX_BATCH):
            with PDFIUM_LOCK:
                charboxes = [(mine, [textpage.get_charbox(i) for i in range(*theirs[found])])
                             for mine, found in matched[first:first + BOX_BATCH]]
            boxes.update((mine, _union(chars, height)) for mine, chars in charboxes)
    finally:
        with PDFIUM_LOCK:
            textpage.close()
    return tuple(Word(start, end, boxes.get(i)) for i, (start, end, _) in enumerate(ours))


def align_words(ours: Sequence[str], theirs: Sequence[str]) -> dict[int, int]:
    """Which word of `theirs` each word of `ours` is (index -> index), in order, in one pass.

    Two readings of one text layer agree almost everywhere; where they disagree the nearest
    place within ALIGN_WINDOW words where they agree again on two words in a row is taken
    (skipping the fewest words), else one word of each is passed over. Time grows with the
    number of words times the window, never with their square (a page of one word repeated
    thousands of times is as quick as any other).
    """
    pairs: dict[int, int] = {}
    i = j = 0
    while i < len(ours) and j < len(theirs):
        if ours[i] == theirs[j]:
            pairs[i] = j
            i, j = i + 1, j + 1
        else:
            i, j = _resync(ours, theirs, i, j)
    return pairs


def _resync(ours: Sequence[str], theirs: Sequence[str], i: int, j: int) -> tuple[int, int]:
    first: dict[str, int] = {}
    for b in range(j, min(j + ALIGN_WINDOW, len(theirs))):
        first.setdefault(theirs[b], b)
    best: tuple[int, int] | None = None
    for a in range(i, min(i + ALIGN_WINDOW, len(ours))):
        found = first.get(ours[a])
        if found is None or (best is not None and a + found >= best[0] + best[1]):
            continue
        if a + 1 == len(ours) or found + 1 == len(theirs) or ours[a + 1] == theirs[found + 1]:
            best = (a, found)
    return best if best is not None else (i + 1, j + 1)


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
