"""Matching a PDF page's words from pypdf to pdfium's characters: the linear aligner
(plugin.pipelines.documents.pdf_text.align_words) against difflib.SequenceMatcher, which the
pipeline used before and which is quadratic on repeated words, measured in the same run.

Inputs: the seeded lab report's two pages as both libraries read them (the normal case), and
pages of one word repeated N times with one word changed in the middle (the hostile case; pdfium
held its lock through the whole match before, blocking every other PDF job). Each repeat runs
both matchers once, interleaved; medians are reported.

Run: .venv/bin/python bench/pdf_words.py [--repeats 3] [--largest 4000]
"""

from __future__ import annotations

import argparse
import difflib
import io
import re
import statistics
import time
from collections.abc import Callable, Sequence

import pypdf
import pypdfium2

from plugin.pipelines.documents.pdf_text import align_words
from plugin.sandbox.synthetic import DEMO_LAB_REPORT, text_pdf

Pair = tuple[list[str], list[str]]


def seeded_pages() -> list[Pair]:
    data = text_pdf(DEMO_LAB_REPORT)
    reader = pypdf.PdfReader(io.BytesIO(data))
    document = pypdfium2.PdfDocument(data)
    pairs = []
    for index, page in enumerate(reader.pages):
        textpage = document[index].get_textpage()
        pairs.append((re.findall(r"\S+", page.extract_text()),
                      re.findall(r"\S+", textpage.get_text_range())))
        textpage.close()
    document.close()
    return pairs


def repeated(words: int) -> Pair:
    theirs = ["glucose"] * words
    theirs[words // 2] = "glucos e"
    return ["glucose"] * words, theirs


def with_difflib(ours: Sequence[str], theirs: Sequence[str]) -> dict[int, int]:
    blocks = difflib.SequenceMatcher(None, ours, theirs, autojunk=False).get_matching_blocks()
    return {b.a + k: b.b + k for b in blocks for k in range(b.size)}


def timed(match: Callable[[Sequence[str], Sequence[str]], dict[int, int]],
          pairs: list[Pair]) -> float:
    started = time.perf_counter()
    for ours, theirs in pairs:
        match(ours, theirs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--largest", type=int, default=4000)
    args = parser.parse_args()
    inputs = {"seeded report (2 pages)": seeded_pages()}
    size = 1000
    while size <= args.largest:
        inputs[f"{size} repeated words"] = [repeated(size)]
        size *= 4
    print(f"{'input':28} {'difflib s':>10} {'linear s':>10} {'ratio':>8} {'same pairs':>10}")
    for name, pairs in inputs.items():
        old, new = [], []
        for _ in range(args.repeats):
            old.append(timed(with_difflib, pairs))
            new.append(timed(align_words, pairs))
        same = all(with_difflib(o, t) == align_words(o, t) for o, t in pairs)
        before, after = statistics.median(old), statistics.median(new)
        print(f"{name:28} {before:10.4f} {after:10.4f} {before / after:8.1f} {str(same):>10}")


if __name__ == "__main__":
    main()
