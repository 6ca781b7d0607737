"""Boxing a PDF page's words: chartlight's text-layer reader (pdfium characters grouped into
words in one pass, PdfFile.page_text) against the way it worked before, kept here as the
baseline: pypdf's words matched to pdfium's characters with difflib.SequenceMatcher, which is
quadratic on repeated words and held pdfium's process-wide lock while it ran.

Inputs: the seeded lab report (the normal case) and pages of one word repeated N times (the
hostile case). Each repeat runs both once, interleaved; medians are reported.

Run: .venv/bin/python bench/pdf_words.py [--repeats 3] [--largest 16000]
"""

from __future__ import annotations

import argparse
import difflib
import io
import re
import statistics
import sys
import time
from pathlib import Path

import pypdf
import pypdfium2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the hostile corpus is in tests/

from plugin.pipelines.documents.pdf_text import PdfFile  # noqa: E402
from plugin.sandbox.synthetic import DEMO_LAB_REPORT, text_pdf  # noqa: E402
from tests.corpus.hostile.pdf import word_bomb  # noqa: E402


def baseline(data: bytes) -> int:
    """pypdf's words, matched to pdfium's with difflib, each boxed from its characters."""
    boxed = 0
    reader = pypdf.PdfReader(io.BytesIO(data))
    document = pypdfium2.PdfDocument(data)
    for index, page in enumerate(reader.pages):
        ours = re.findall(r"\S+", page.extract_text())
        textpage = document[index].get_textpage()
        printed = textpage.get_text_range()
        spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", printed)]
        theirs = [printed[a:b] for a, b in spans]
        blocks = difflib.SequenceMatcher(None, ours, theirs, autojunk=False).get_matching_blocks()
        for block in blocks:
            for k in range(block.size):
                start, end = spans[block.b + k]
                [textpage.get_charbox(i) for i in range(start, end)]
                boxed += 1
        textpage.close()
    document.close()
    return boxed


def ours(data: bytes) -> int:
    with PdfFile(data, source="bench", max_page_pixels=60_000_000) as pdf:
        return sum(len(pdf.page_text(i).words) for i in range(pdf.page_count))


def timed(read: object, data: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    words = read(data)  # type: ignore[operator]
    return time.perf_counter() - started, words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--largest", type=int, default=16000)
    args = parser.parse_args()
    inputs = {"seeded report (2 pages)": text_pdf(DEMO_LAB_REPORT)}
    size = 1000
    while size <= args.largest:
        inputs[f"{size} repeated words"] = word_bomb(size)
        size *= 4
    print(f"{'input':28} {'baseline s':>11} {'ours s':>9} {'ratio':>8} {'words (base/ours)':>18}")
    for name, data in inputs.items():
        old, new = [], []
        for _ in range(args.repeats):
            seconds, old_words = timed(baseline, data)
            old.append(seconds)
            seconds, new_words = timed(ours, data)
            new.append(seconds)
        before, after = statistics.median(old), statistics.median(new)
        print(f"{name:28} {before:11.4f} {after:9.4f} {before / after:8.1f} {old_words:>9}/{new_words}")


if __name__ == "__main__":
    main()
