"""The table geometry on hand-written word boxes: rows by their vertical centres whatever order
the words come in, columns by the header's x-ranges in any order, two-line headings, two tables
side by side, leaders, wrapped names, and unreadable rows reported rather than guessed."""

from __future__ import annotations

import random

from plugin.pipelines.documents.lab_rows import LabRow
from plugin.pipelines.documents.layout_extractor import parse_row, without_debris
from plugin.pipelines.documents.pages import PageText
from plugin.pipelines.documents.printed_numbers import POINT_MDY, Conventions
from plugin.pipelines.documents.table_reader import read_tables
from plugin.pipelines.documents.word_boxes import PageWord, group_lines, lay_out
from plugin.results import Box

CHAR_W, HEIGHT = 5.0, 8.0


def word(x: float, y: float, text: str, *, skew: float = 0.0) -> PageWord:
    """A word printed at (x, y) (top left), `skew` points lower per 100 points to the right."""
    top = y + skew * x / 100
    return PageWord(text, Box(x, top, x + CHAR_W * len(text), top + HEIGHT))


def cells(x: float, y: float, text: str) -> list[PageWord]:
    """A cell of several words, one space apart."""
    out, at = [], x
    for part in text.split():
        out.append(word(at, y, part))
        at += CHAR_W * (len(part) + 1)
    return out


def page_of(words: list[PageWord], *, shuffle: int | None = None, origin: str = "text-layer") -> PageText:
    if shuffle is not None:
        words = list(words)
        random.Random(shuffle).shuffle(words)
    return lay_out(1, words, origin=origin, width=612, height=792, note="test")  # type: ignore[arg-type]


def table(columns: dict[str, float], header: dict[str, str], rows: list[dict[str, str]],
          *, top: float = 100, pitch: float = 14) -> list[PageWord]:
    out: list[PageWord] = []
    for key, label in header.items():
        out += cells(columns[key], top, label)
    for i, row in enumerate(rows):
        for key, text in row.items():
            if text:
                out += cells(columns[key], top + pitch * (i + 1), text)
    return out


def read(page: PageText, conventions: Conventions = POINT_MDY) -> list[LabRow]:
    return list(read_tables(page, conventions).rows)


def brief(rows: list[LabRow]) -> list[tuple[str, str, str, str, str]]:
    return [(r.name, r.result, r.unit, r.reference_range, r.flag) for r in rows]


def test_words_in_any_order_form_the_rows_a_reader_sees() -> None:
    words = [*cells(50, 100, "Glucose"), *cells(200, 101, "128"), *cells(260, 99.5, "mg/dL"),
             *cells(50, 114, "Sodium"), *cells(200, 114.5, "140"), *cells(260, 113, "mmol/L")]
    for seed in range(5):
        page = page_of(words, shuffle=seed)
        assert page.text == "Glucose 128 mg/dL\nSodium 140 mmol/L"
        assert [page.text[w.start:w.end] for w in page.words][:3] == ["Glucose", "128", "mg/dL"]


def test_a_skewed_page_keeps_its_rows_apart() -> None:
    words = [word(x, y, t, skew=2.0) for y in (100, 114, 128)
             for x, t in ((50, "Name"), (200, "1.0"), (400, "U/L"))]
    assert [len(line) for line in group_lines(words)] == [3, 3, 3]


def test_flag_before_result_and_range_before_result_stay_out_of_the_name() -> None:
    columns = {"name": 50, "flag": 170, "result": 220, "unit": 290, "range": 370}
    words = table(columns, {"name": "Test", "flag": "Flag", "result": "Result", "unit": "Units",
                            "range": "Reference range"},
                  [{"name": "WBC", "flag": "H", "result": "11.8", "unit": "x10^9/L",
                    "range": "4.0-11.0"},
                   {"name": "Sodium", "flag": "", "result": "138", "unit": "mmol/L",
                    "range": "135 - 145"}])
    assert brief(read(page_of(words, shuffle=1))) == [
        ("WBC", "11.8", "x10^9/L", "4.0-11.0", "H"), ("Sodium", "138", "mmol/L", "135 - 145", "")]
    columns = {"name": 50, "range": 170, "result": 270, "unit": 330}
    words = table(columns, {"name": "Analyte", "range": "Normal range", "result": "Value",
                            "unit": "Unit"},
                  [{"name": "HDL cholesterol", "range": "> 40", "result": "44", "unit": "mg/dL"},
                   {"name": "Chloride", "range": "(98-107)", "result": "101", "unit": "mmol/L"}])
    assert brief(read(page_of(words))) == [("HDL cholesterol", "44", "mg/dL", "> 40", ""),
                                           ("Chloride", "101", "mmol/L", "98-107", "")]


def test_result_and_flag_in_one_column_and_values_as_printed() -> None:
    columns = {"name": 50, "result": 180, "unit": 280}
    words = table(columns, {"name": "Test", "result": "Result and Flag", "unit": "Units"},
                  [{"name": "Potassium", "result": "5.9H", "unit": "mmol/L"},
                   {"name": "ALT", "result": "*48", "unit": "U/L"},
                   {"name": "Platelets", "result": "262,000", "unit": "/uL"},
                   {"name": "CRP", "result": "<0.5", "unit": "mg/L"},
                   {"name": "WBC", "result": "2.1 x 10^3", "unit": "/uL"}])
    assert brief(read(page_of(words))) == [
        ("Potassium", "5.9", "mmol/L", "", "H"), ("ALT", "48", "U/L", "", "*"),
        ("Platelets", "262000", "/uL", "", ""), ("CRP", "<0.5", "mg/L", "", ""),
        ("WBC", "2.1E+3", "/uL", "", "")]


def test_decimal_commas_are_read_by_the_document_convention() -> None:
    columns = {"name": 50, "result": 180, "unit": 250, "range": 320}
    words = table(columns, {"name": "Parameter", "result": "Ergebnis", "unit": "Einheit",
                            "range": "Referenzbereich"},
                  [{"name": "Kreatinin", "result": "0,94", "unit": "mg/dl", "range": "0,50-1,10"}])
    page = page_of(words)
    assert brief(read(page, Conventions(",", "DMY"))) == [
        ("Kreatinin", "0.94", "mg/dl", "0,50-1,10", "")]
    # Read with decimal points the same cell is no number: reported, never 94.
    reading = read_tables(page, POINT_MDY)
    assert reading.rows == () and reading.unreadable == ("Kreatinin 0,94 mg/dl 0,50-1,10",)


def test_a_heading_on_two_lines_and_two_tables_side_by_side() -> None:
    words = [*cells(300, 88, "Reference")]
    words += table({"name": 50, "result": 180, "range": 300},
                   {"name": "Test", "result": "Result", "range": "Interval"},
                   [{"name": "Glucose", "result": "128", "range": "70-99"}])
    assert brief(read(page_of(words))) == [("Glucose", "128", "", "70-99", "")]
    left = table({"name": 50, "result": 150, "unit": 210},
                 {"name": "Test", "result": "Result", "unit": "Units"},
                 [{"name": "WBC", "result": "11.8", "unit": "x10^9/L"},
                  {"name": "RBC", "result": "4.12", "unit": "x10^12/L"}])
    right = table({"name": 320, "result": 420, "unit": 480},
                  {"name": "Test", "result": "Result", "unit": "Units"},
                  [{"name": "Sodium", "result": "138", "unit": "mmol/L"}])
    assert sorted(brief(read(page_of(left + right, shuffle=3)))) == [
        ("RBC", "4.12", "x10^12/L", "", ""), ("Sodium", "138", "mmol/L", "", ""),
        ("WBC", "11.8", "x10^9/L", "", "")]


def test_leaders_wrapped_names_and_panel_titles() -> None:
    columns = {"name": 50, "result": 220, "unit": 280}
    words = table(columns, {"name": "Test", "result": "Result", "unit": "Units"},
                  [{"name": "Liver panel"},
                   {"name": "Total bilirubin ..........", "result": "0.6", "unit": "mg/dL"},
                   {"name": "Alkaline", "result": "92", "unit": "U/L"}])
    words += cells(50, 100 + 14 * 3 + 7, "phosphatase")  # the name wraps, tighter than a row
    rows = read(page_of(words))
    assert brief(rows) == [("Total bilirubin", "0.6", "mg/dL", "", ""),
                           ("Alkaline phosphatase", "92", "U/L", "", "")]
    assert {r.panel for r in rows} == {"Liver panel"}


def test_each_row_knows_where_its_result_was_printed() -> None:
    words = table({"name": 50, "result": 200, "unit": 260}, {"name": "Test", "result": "Result",
                                                             "unit": "Units"},
                  [{"name": "Glucose", "result": "128", "unit": "mg/dL"}])
    page = page_of(words)
    (row,) = read(page)
    assert row.at == Box(200, 114, 215, 122)
    assert row.span is not None and page.text[row.span[0]:row.span[1]] == "Glucose 128 mg/dL"


def test_lines_that_are_not_rows_are_left_alone_or_reported() -> None:
    words = table({"name": 50, "result": 200, "unit": 260}, {"name": "Test", "result": "Result",
                                                             "unit": "Units"},
                  [{"name": "Comment", "result": "see", "unit": "below"},
                   {"name": "Reported by: Dr Who", "result": "11/20/2026"},
                   {"name": "Ferritin", "result": "n/a", "unit": "ng/mL"}])
    reading = read_tables(page_of(words), POINT_MDY)
    assert reading.rows == ()
    assert reading.unreadable == ("Ferritin n/a ng/mL",)


def test_leaders_ocr_read_as_letters_are_dropped_but_a_weak_name_word_is_not() -> None:
    def ocr_word(x: float, text: str, confidence: float) -> PageWord:
        return PageWord(text, Box(x, 100, x + 5 * len(text), 108), None, confidence)

    words = [ocr_word(50, "Glucose", 0.95), ocr_word(100, "nee", 0.2), ocr_word(130, "eee", 0.1),
             ocr_word(160, "ene", 0.4), ocr_word(190, "e", 0.05), ocr_word(210, "128", 0.9),
             ocr_word(240, "mg/dL", 0.9)]
    words += [ocr_word(50, "Neutrophils,", 0.93), ocr_word(120, "absolute", 0.2),
              ocr_word(210, "8.9", 0.9)]
    words = [w if i < 7 else PageWord(w.text, Box(w.box.x0, 120, w.box.x1, 128), None,
                                      w.confidence) for i, w in enumerate(words)]
    page = lay_out(1, words, origin="ocr", width=612, height=792, note="test")
    first, second = page.lines()
    assert without_debris(page, first) == "Glucose 128 mg/dL"
    assert without_debris(page, second) == "Neutrophils, absolute 8.9"


def test_dotted_leaders_read_confidently_as_letters_are_dropped() -> None:
    texts = ["HDL", "Cholesterol", "nee", "eee", "ene", "tenner", "erate", "eee", "38", "L",
             "mg/dL", ">", "40"]
    words = [PageWord(t, Box(50 + 40 * i, 100, 80 + 40 * i, 108), None, 0.8)
             for i, t in enumerate(texts)]
    words += [PageWord(t, Box(50 + 60 * i, 120, 100 + 60 * i, 128), None, 0.8)
              for i, t in enumerate(["Urea", "nitrogen", "cnc", "ace", "18", "mg/dL"])]
    page = lay_out(1, words, origin="ocr", width=900, height=792, note="test")
    first, second = page.lines()
    assert without_debris(page, first) == "HDL Cholesterol 38 L mg/dL > 40"
    # Four x-height words are not yet a leader: a name may have them.
    assert without_debris(page, second) == "Urea nitrogen cnc ace 18 mg/dL"


def test_leaders_read_as_letters_inside_a_table_row_are_not_part_of_the_name() -> None:
    # Under a header, the leaders sit in the name column: dropped there as on a plain line.
    columns = {"name": 50, "result": 330, "unit": 380, "range": 440}
    texts = [("HDL", 0.95), ("Cholesterol", 0.93), ("nee", 0.8), ("eee", 0.8), ("ene", 0.8),
             ("tenner", 0.8), ("erate", 0.8)]
    words = [PageWord(label, Box(columns[key], 100, columns[key] + 5 * len(label), 108), None,
                      0.95)
             for key, label in (("name", "Test"), ("result", "Result"), ("unit", "Units"),
                                ("range", "Range"))]
    at = 50.0
    for text, confidence in texts:
        words.append(PageWord(text, Box(at, 114, at + 5 * len(text), 122), None, confidence))
        at += 5 * len(text) + 8
    words += [PageWord(t, Box(x, 114, x + 5 * len(t), 122), None, 0.9, t if t[0].isdigit()
                       else None) for x, t in ((330, "38"), (345, "L"), (380, "mg/dL"),
                                               (440, ">"), (450, "40"))]
    page = lay_out(1, words, origin="ocr", width=612, height=792, note="test")
    assert brief(read(page)) == [("HDL Cholesterol", "38", "mg/dL", "> 40", "L")]


def test_a_unit_is_not_joined_to_the_comparator_of_the_range_after_it() -> None:
    # OCR's unit mending reads "mg/dl<" as mg/dL with a speck: the "150" was then left over
    # and the row reported unreadable.
    cells = parse_row("Triglycerides 165 H mg/dl < 150", ocr=True)
    assert not isinstance(cells, str) and cells is not None
    assert (cells.result, cells.unit, cells.reference_range, cells.flag) == \
        ("165", "mg/dl", "< 150", "H")


def test_a_capital_i_read_as_a_bar_in_a_table_name_is_given_back() -> None:
    # "Troponin |": the bar is dropped with the specks, the catalogue knows "Troponin I".
    columns = {"name": 50, "result": 330, "unit": 380}
    words = [PageWord(label, Box(columns[key], 100, columns[key] + 5 * len(label), 108), None,
                      0.95) for key, label in (("name", "Test"), ("result", "Result"),
                                                ("unit", "Units"))]
    words += [PageWord(t, Box(x, 114, x + 5 * len(t), 122), None, 0.9)
              for x, t in ((50, "Troponin"), (94, "|"), (330, "<0.04"), (380, "ng/mL"))]
    page = lay_out(1, words, origin="ocr", width=612, height=792, note="test")
    assert brief(read(page)) == [("Troponin I", "<0.04", "ng/mL", "", "")]


def test_a_ruled_table_s_border_is_not_read_as_a_capital_i() -> None:
    # The bar at the name cell's left is the table's rule: "Troponin" stays Troponin (troponin I
    # and T are different tests), and so does a bar far after the name (a column rule).
    columns = {"name": 50, "result": 330, "unit": 380}
    header = [PageWord(label, Box(columns[key], 100, columns[key] + 5 * len(label), 108), None,
                       0.95) for key, label in (("name", "Test"), ("result", "Result"),
                                                 ("unit", "Units"))]
    for bar_at in (40, 150):
        words = header + [PageWord(t, Box(x, 114, x + 5 * len(t), 122), None, 0.9)
                          for x, t in ((bar_at, "|"), (50, "Troponin"), (330, "<0.04"),
                                       (380, "ng/mL"))]
        page = lay_out(1, words, origin="ocr", width=612, height=792, note="test")
        assert brief(read(page)) == [("Troponin", "<0.04", "ng/mL", "", "")], bar_at
