"""The one page-layout engine (pdf.layout): documents are laid out as data, pages of bands, and
drawn by one function; the page count is the number of pages the layout made."""

from __future__ import annotations

import io
from datetime import date, datetime, timezone

from pypdf import PdfReader

from cns_exchange.documents.read import read_document
from cns_exchange.pdf.feenote import Source, Totals
from cns_exchange.pdf.layout import BOTTOM, TOP, Band, Document, Flow, Text, draw
from cns_exchange.pdf.summary import layout
from conftest import make_matricule
from test_cli_print import build_billing, flat

BODY = TOP - BOTTOM


def _band(label: str, height: float) -> Band:
    return Band(height, (Text(50, 10, label),))


def _labels(page) -> list[str]:
    return [band.marks[0].text for _, band in page]


def test_bands_stack_and_break_where_they_do_not_fit():
    flow = Flow(first=[_band("title", 100)], running=[_band("title (suite)", 30)])
    header = _band("header", 20)
    flow.add(header)
    for n in range(1, 7):
        flow.add(_band(f"row {n}", 150), again=[header])
    flow.add(_band("total", 15), _band("box", 90), again=[header])   # kept together
    pages = list(flow.close())
    # page 1: 100 + 20 + 4 x 150 = 720 of 726.85; page 2: 30 + 20 + 2 x 150, then the total and box (105) fit
    assert [_labels(p) for p in pages] == [
        ["title", "header", "row 1", "row 2", "row 3", "row 4"],
        ["title (suite)", "header", "row 5", "row 6", "total", "box"]]
    tops = [top for top, _ in pages[1]]
    assert tops == [TOP, TOP - 30, TOP - 50, TOP - 200, TOP - 350, TOP - 365]
    assert all(top - band.height >= BOTTOM for page in pages for top, band in page)


def test_bands_kept_together_go_on_together_under_their_titles_again():
    flow = Flow(running=[_band("running", 40)])
    flow.add(_band("filler", BODY - 50))
    flow.add(_band("total", 15), _band("box", 90), again=[_band("header", 20)])
    pages = list(flow.close())
    assert [_labels(p) for p in pages] == [["filler"], ["running", "header", "total", "box"]]


def test_finished_pages_are_given_as_soon_as_they_are_full():
    """A long document is drawn while it is laid out: the summary reads its fee notes one at a
    time, and its first page is out before the last note is read."""
    flow = Flow()
    given = []
    for n in range(100):
        flow.add(_band(str(n), 100))
        given += list(flow.finished())
        if given:
            break
    assert n == 7 and _labels(given[0]) == [str(k) for k in range(7)]   # 7 x 100 fit, the 8th begins page 2
    assert [_labels(p) for p in flow.close()] == [["7"]]


def test_summary_is_laid_out_as_its_notes_are_read(run, tmp_path):
    source_csv = tmp_path / "s.csv"
    rows = ["certificate_number;matricule;session_date;act_code;last_name;first_name"]
    rows += [f"TPC-{n:04d};{make_matricule(date(1960, 1, 1 + n % 28), n)};2026-11-02;ZD11;Thill;Noah" for n in range(1, 101)]
    source_csv.write_text("\n".join(rows) + "\n", "utf-8")
    xml = build_billing(run, tmp_path, source_csv)
    with open(xml, "rb") as f:
        items = list(read_document(f, "billing", "FichierFacturation"))
    read = []

    def notes():
        for item in items[1:]:
            read.append(item)
            yield item.record

    pages = layout(notes(), Source(xml.name, "0" * 64, items[0].record, datetime(2026, 11, 21)), Totals())
    next(pages)
    assert 30 < len(read) < 100          # the first page came before the last fee note was read
    assert len(list(pages)) == 2 and len(read) == 100


def test_draw_numbers_the_pages_it_was_given():
    flow = Flow(running=[_band("running", 40)])
    for n in range(40):
        flow.add(_band(f"row {n}", 50))
    out = io.BytesIO()
    document = Document("t", "a", "s", "k", "Footer :", "f" * 64, datetime(2026, 11, 21, tzinfo=timezone.utc))
    count = draw(out, document, flow.close())
    reader = PdfReader(io.BytesIO(out.getvalue()))
    assert count == len(reader.pages) == 3   # 14 rows, then 13 under the running band, 13
    for k, page in enumerate(reader.pages, 1):
        text = flat(page.extract_text())
        assert f"page {k}/3" in text and "f" * 64 in text and "Footer :" in text
    assert "row 39" in flat(reader.pages[2].extract_text())
