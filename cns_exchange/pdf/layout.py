"""One way to lay out a page: every printed document is laid out as data, then drawn by one function.

A *layout* is a sequence of pages; a page is a list of bands, each placed at the height of its
top; a band is a height and the marks drawn in it (text, a rule, a box, a reportlab graphic),
positioned from the band's top-left corner. The documents (fee note, summary, status report)
make bands; :class:`Flow` stacks them on A4 pages, top to bottom, and decides every page
break: bands that must stay together, and what a continued page begins with (the document's
running title, a table's title "(suite)" and its column titles). :func:`draw` draws the pages
into a PDF with the running footer.

Page numbers ("page N/M") come from the layout: M is the number of pages the flow made, never a
count predicted beside it. Pages are drawn as the flow finishes them (a summary of 50,000 fee
notes holds one page of bands at a time); the footer's "page N/M" is a form XObject per page,
written once the last page is known.

reportlab measures and draws; it is imported inside the functions that need it (``cnsx --help``
and the XML-only commands never load it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, NamedTuple, Sequence

from cns_exchange import __version__
from cns_exchange.domain.model import money
from cns_exchange.i18n import french_date, french_number, tr  # (french_date: the documents' days, as the terminal's)

PRODUCER = f"cnsx {__version__}"

# Page geometry (points; A4 portrait).
W, H = 595.2756, 841.8898
MARGIN = 42.52                      # 15 mm
LEFT, RIGHT = MARGIN, W - MARGIN    # 510 points between the margins
TOP, BOTTOM = H - MARGIN, MARGIN + 30   # room for the two footer lines
ROW = 14.0                          # a table row's height
GREY = (0.93, 0.93, 0.93)           # column titles, boxes
SHADE = (0.975, 0.975, 0.975)       # every other table row
DARK = (0.35, 0.35, 0.35)           # small print
BLACK = (0.0, 0.0, 0.0)

# --- fonts and text ----------------------------------------------------------------------------

#: TrueType fonts with the French accents (and far more), first found wins. Debian's
#: fonts-dejavu-core; else Bitstream Vera, which reportlab ships (Latin-1 and Latin
#: Extended-A, enough for French, German and Polish names).
FONT_CANDIDATES: list[tuple[Path, Path]] = [
    (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"), Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")),
]
FONT, BOLD, MONO = "cnsx-sans", "cnsx-sans-bold", "Courier"  # Courier: the hash is ASCII, a base-14 font suffices
_fonts_loaded: Path | None = None


def font_files() -> tuple[Path, Path]:
    """Return the (regular, bold) TrueType files the printed documents embed."""
    for regular, bold in FONT_CANDIDATES:
        if regular.is_file() and bold.is_file():
            return regular, bold
    import reportlab

    folder = Path(reportlab.__file__).parent / "fonts"
    return folder / "Vera.ttf", folder / "VeraBd.ttf"


def register_fonts() -> Path:
    """Register the fonts with reportlab (once); return the regular font's file. Measuring
    text (fit, wrap) and drawing call it first."""
    global _fonts_loaded
    if _fonts_loaded is None:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        regular, bold = font_files()
        pdfmetrics.registerFont(TTFont(FONT, str(regular)))
        pdfmetrics.registerFont(TTFont(BOLD, str(bold)))
        _fonts_loaded = regular
    return _fonts_loaded


def fit(text: str, width: float, size: float, bold: bool = False) -> str:
    """Return ``text``, cut with '…' if it is wider than ``width`` points."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    if _fonts_loaded is None:
        register_fonts()
    font = BOLD if bold else FONT
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def wrap(text: str, width: float, size: float, bold: bool = False, breaking: bool = True) -> list[str]:
    """Return the lines of ``text`` broken to ``width`` points (at least one line): between
    words, and a word wider than ``width`` (a file name, a reference) broken after a '-', '_',
    '/' or '.' where it can be, else where it must: broken, never cut. ``breaking=False``:
    between words only (a column title)."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    if _fonts_loaded is None:
        register_fonts()
    font = BOLD if bold else FONT
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            for k, piece in enumerate(_pieces(word, width, font, size) if breaking else [word]):
                joined = line + piece if k else f"{line} {piece}" if line else piece
                if line and stringWidth(joined, font, size) > width:
                    lines.append(line)
                    line = piece
                else:
                    line = joined
        lines.append(line)
    return lines


def _pieces(word: str, width: float, font: str, size: float) -> list[str]:
    """``word`` in pieces each at most ``width`` points wide (one piece when it fits), each
    ending after a '-', '_', '/' or '.' where one is in the second half of what fits."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    pieces = []
    while stringWidth(word, font, size) > width:
        end = 1   # at least one character a piece, however narrow the column
        while end < len(word) and stringWidth(word[:end + 1], font, size) <= width:
            end += 1
        after = max(word.rfind(mark, 0, end) for mark in "-_/.") + 1
        if after > end // 2:
            end = after
        pieces.append(word[:end])
        word = word[end:]
    return pieces + [word] if word else pieces


def euros(cents: int) -> str:
    """Return an amount in cents as printed on the documents: '1 234,56', '-0,50' (French
    style, as the terminal shows an amount in French: i18n.french_number)."""
    return french_number(money(cents))


def french(text: str) -> str:
    """A message of cnsx (an i18n.Msg, or a word of the catalogue) in French, its values too:
    the printed documents are French whatever the user's language."""
    return tr(text, "fr")


def french_moment(moment: datetime) -> str:
    """'20/11/2026 à 09:00 (UTC+01:00)'."""
    text = f"{french_date(moment)} à {moment:%H:%M}"
    offset = moment.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds() // 60)
        text += f" (UTC{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d})"
    return text


# --- the data of a layout ----------------------------------------------------------------------

class Text(NamedTuple):
    """A line of text whose baseline is ``dy`` below the band's top."""

    x: float
    dy: float
    text: str
    size: float = 9
    bold: bool = False
    align: str = "left"     # or 'right': ``x`` is then where the text ends
    grey: bool = False


class Rule(NamedTuple):
    """A horizontal line ``dy`` below the band's top."""

    x1: float
    x2: float
    dy: float = 0.0
    width: float = 0.8
    colour: tuple = BLACK


class Box(NamedTuple):
    """A rectangle whose top is ``dy`` below the band's top: filled, outlined, or both."""

    x: float
    dy: float
    width: float
    height: float
    fill: tuple | None = None
    stroke: tuple | None = None
    radius: float = 0.0
    line: float = 0.6


class Graphic(NamedTuple):
    """A reportlab ``Drawing`` whose bottom-left corner is at ``x``, ``dy`` below the band's top."""

    x: float
    dy: float
    drawing: Any


Mark = Text | Rule | Box | Graphic


class Band(NamedTuple):
    """Something a page is made of, top to bottom: its height and what is drawn in it."""

    height: float
    marks: tuple[Mark, ...] = ()


Page = list[tuple[float, Band]]   # each band with the y of its top


def shifted(marks: Iterable, dy: float) -> tuple:
    """Return ``marks`` moved down by ``dy`` points (to stack the marks of two bands in one)."""
    return tuple(m._replace(dy=m.dy + dy) for m in marks)


@dataclass
class Column:
    """A table column: its title, width in points and alignment; for the status report, the
    key of the row it shows and how (text, wrap, date, day (of a date-time), month, amount,
    state, yesno; under: wrapped on lines of its own under the row's other cells, ``width``
    points up to the right margin)."""

    title: str
    width: float
    align: str = "left"
    key: str = ""
    kind: str = "text"


_TITLE, _TITLE_LEADING = 7.5, 9.0   # the column titles' size and line spacing


def header_band(columns: Sequence[Column], under: Sequence[Column] = ()) -> Band:
    """The column titles in a grey band, each wrapped between words (a word is never broken)
    when it is wider than its column less a point a side, so that two titles never run
    together; then the titles of ``under``, the columns shown on lines of their own under a
    row's cells (:func:`row_band`), each on a line of its own where its text begins."""
    titles = [wrap(col.title, col.width - 2, _TITLE, bold=True, breaking=False) for col in columns]
    depth = max([1] + [len(t) for t in titles])
    marks: list = []
    x = LEFT
    for col, lines in zip(columns, titles):
        for k, line in enumerate(lines):
            marks.append(Text(x + col.width - 3 if col.align == "right" else x + 3, ROW - 2 + k * _TITLE_LEADING, line,
                              size=_TITLE, bold=True, align=col.align))
        x += col.width
    for col in under:
        marks.append(Text(RIGHT - col.width + 3, ROW - 2 + depth * _TITLE_LEADING, col.title, size=_TITLE, bold=True))
        depth += 1
    height = ROW + 2 + (depth - 1) * _TITLE_LEADING
    return Band(height, (Box(LEFT, 0, RIGHT - LEFT, height, fill=GREY), *marks))


def row_band(columns: Sequence[Column], cells: Sequence[str], lines: Sequence[Sequence[str]] | None = None,
             bold: bool = False, shade: bool = False, size: float = 8, height: float = ROW,
             under: Sequence[tuple[Column, Sequence[str]]] = ()) -> Band:
    """One table row. ``lines`` gives, per cell, the lines of a cell that wraps (others are one
    line, cut with '…' to their column). A left-aligned text runs on over the empty cells that
    follow it ("Total"). ``under``: columns shown on lines of their own under the cells (a long
    text, such as a history's detail), each with its lines, in grey, ending at the right margin."""
    marks: list = [Box(LEFT, 0, RIGHT - LEFT, height, fill=SHADE)] if shade else []
    x = LEFT
    for i, (col, cell) in enumerate(zip(columns, cells)):
        cell_lines = lines[i] if lines is not None and lines[i] else [cell]
        room = col.width
        for j in range(i + 1, len(columns)):
            if cells[j] or (lines is not None and lines[j]):
                break
            room += columns[j].width
        for k, line in enumerate(cell_lines):
            dy = 10 + k * (size + 2)
            if col.align == "right":
                marks.append(Text(x + col.width - 3, dy, line, size=size, bold=bold, align="right"))
            else:
                marks.append(Text(x + 3, dy, fit(line, room - 6, size, bold), size=size, bold=bold))
        x += col.width
    depth = max([1] + [len(cell_lines) for cell_lines in lines or ()])
    for col, col_lines in under:
        for line in col_lines:
            marks.append(Text(RIGHT - col.width + 3, 10 + depth * (size + 2), fit(line, col.width - 6, size), size=size,
                              grey=True))
            depth += 1
    return Band(height, tuple(marks))


def total_band(columns: Sequence[Column], cells: Sequence[str], size: float = 8, gap: float = 0.0) -> Band:
    """A table's total line: a rule, then the row in bold ``gap`` points under it."""
    row = row_band(columns, cells, bold=True, size=size)
    return Band(row.height + gap, (Rule(LEFT, RIGHT),) + shifted(row.marks, gap))


def heading_band(text: str, height: float, size: float = 11, dy: float | None = None) -> Band:
    """A title in bold whose baseline is ``dy`` below the top (default: 8 points above the band's end)."""
    return Band(height, (Text(LEFT, height - 8 if dy is None else dy, text, size=size, bold=True),))


# --- pages: the one place that breaks them -----------------------------------------------------

class Flow:
    """Stacks bands on A4 pages, top to bottom, between TOP and BOTTOM.

    The first page begins with ``first``; every page after it with ``running`` (the
    document's title "(suite)"). Pages are taken out as they are finished
    (:meth:`finished`), then the last one (:meth:`close`), so that a long document is drawn
    while it is laid out.
    """

    def __init__(self, first: Iterable[Band] = (), running: Iterable[Band] = ()) -> None:
        self._running = tuple(running)
        self._done: list[Page] = []
        self._page: Page = []
        self._y = TOP
        for band in first:
            self._place(band)

    @property
    def room(self) -> float:
        """Points left on the current page."""
        return self._y - BOTTOM

    def add(self, *bands: Band, again: Sequence[Band] = ()) -> None:
        """Place ``bands`` together on the current page or, when they do not fit there, at
        the top of a new page, after the running bands and ``again`` (a table's title
        "(suite)" and column titles, so that a row or a total is never without them)."""
        if sum(b.height for b in bands) > self.room:
            self.new_page(again)
        for band in bands:
            self._place(band)

    def new_page(self, again: Sequence[Band] = ()) -> None:
        """End the current page; begin the next with the running bands and ``again``."""
        self._done.append(self._page)
        self._page, self._y = [], TOP
        for band in (*self._running, *again):
            self._place(band)

    def _place(self, band: Band) -> None:
        self._page.append((self._y, band))
        self._y -= band.height

    def finished(self) -> Iterator[Page]:
        """The pages finished since the last call."""
        done, self._done = self._done, []
        yield from done

    def close(self) -> Iterator[Page]:
        """The pages not yet taken, the last one included."""
        yield from self.finished()
        page, self._page = self._page, []
        yield page


# --- drawing: the one function that draws --------------------------------------------------------

@dataclass
class Document:
    """What a PDF says about itself: its metadata, and what its footer names on every page.

    ``footer`` says what ``sha256`` (printed beside it on every page) is the hash of.
    """

    title: str
    author: str
    subject: str
    keywords: str
    footer: str
    sha256: str
    printed: datetime   # its creation date


def draw(out: IO[bytes], document: Document, pages: Iterable[Page]) -> int:
    """Draw the pages of a layout as an A4 PDF into ``out``, each with the footer; return the
    number of pages drawn (what every "page N/M" says M is).

    The output is reproducible: no random document ID, no time but ``document.printed``.
    """
    from reportlab.pdfgen import canvas

    register_fonts()
    # invariant: no random document ID and no time-based comments, so that the same
    # data printed with the same date gives the same bytes.
    c = canvas.Canvas(out, pagesize=(W, H), invariant=1, pageCompression=1)
    printed = document.printed
    offset = printed.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    stamp = printed.strftime("D:%Y%m%d%H%M%S") + (
        f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}'{abs(minutes) % 60:02d}'" if offset is not None else "")
    c.setDateFormatter(lambda *_: stamp)
    c.setTitle(document.title)
    c.setAuthor(document.author)
    c.setSubject(document.subject)
    c.setKeywords(document.keywords)
    c.setCreator(PRODUCER)
    c.setProducer(PRODUCER)
    pen = _Pen(c)
    count = 0
    for page in pages:
        count += 1
        for top, band in page:
            for mark in band.marks:
                pen.mark(top, mark)
        pen.footer(document, count)
        c.showPage()
        pen.reset()   # a new page begins in the default state
    for number in range(1, count + 1):   # the "page N/M" each page refers to, now that M is known
        c.beginForm(f"page{number}")
        pen.reset()
        pen.text(Text(RIGHT, 0, f"page {number}/{count}", size=7, grey=True, align="right"), _FOOTER_Y - 10)
        c.endForm()
    c.save()
    return count


_FOOTER_Y = MARGIN + 12


class _Pen:
    """Draws marks on a canvas, setting a font or a colour only when it changes (a table of
    500 rows would otherwise repeat them for every cell)."""

    def __init__(self, c) -> None:
        self.c = c
        self.reset()

    def reset(self) -> None:
        self.font: tuple | None = None
        self.fill: tuple | None = None

    def fill_colour(self, rgb: tuple) -> None:
        if rgb != self.fill:
            self.c.setFillColorRGB(*rgb)
            self.fill = rgb

    def text(self, mark: Text, baseline: float) -> None:
        font = (BOLD if mark.bold else FONT, mark.size)
        if font != self.font:
            self.c.setFont(*font)
            self.font = font
        self.fill_colour(DARK if mark.grey else BLACK)
        if mark.align == "right":
            self.c.drawRightString(mark.x, baseline, mark.text)
        else:
            self.c.drawString(mark.x, baseline, mark.text)

    def mark(self, top: float, mark: Mark) -> None:
        c = self.c
        if isinstance(mark, Text):
            self.text(mark, top - mark.dy)
        elif isinstance(mark, Rule):
            c.setLineWidth(mark.width)
            c.setStrokeColorRGB(*mark.colour)
            c.line(mark.x1, top - mark.dy, mark.x2, top - mark.dy)
        elif isinstance(mark, Box):
            if mark.fill is not None:
                self.fill_colour(mark.fill)
            if mark.stroke is not None:
                c.setStrokeColorRGB(*mark.stroke)
                c.setLineWidth(mark.line)
            y = top - mark.dy - mark.height
            stroke, fill = int(mark.stroke is not None), int(mark.fill is not None)
            if mark.radius:
                c.roundRect(mark.x, y, mark.width, mark.height, mark.radius, stroke=stroke, fill=fill)
            else:
                c.rect(mark.x, y, mark.width, mark.height, stroke=stroke, fill=fill)
        elif isinstance(mark, Graphic):
            from reportlab.graphics import renderPDF

            renderPDF.draw(mark.drawing, c, mark.x, top - mark.dy)
            self.reset()
        else:  # pragma: no cover - a new kind of mark must be given its drawing here
            raise TypeError(f"cannot draw {mark!r}")

    def footer(self, document: Document, number: int) -> None:
        """The footer of page ``number``: what the SHA-256 is of, the SHA-256, who printed it
        when, and "page N/M" (a form, written once M is known)."""
        c = self.c
        y = _FOOTER_Y
        c.setStrokeColorRGB(*DARK)
        c.setLineWidth(0.4)
        c.line(LEFT, y + 10, RIGHT, y + 10)
        self.text(Text(LEFT, 0, document.footer, size=7, grey=True), y)
        c.setFont(MONO, 6.8)
        self.font = (MONO, 6.8)
        c.drawRightString(RIGHT, y, document.sha256)   # (still grey)
        self.text(Text(LEFT, 0, f"Imprimé par {PRODUCER} le {document.printed:%d/%m/%Y à %H:%M}", size=7, grey=True),
                  y - 10)
        c.doForm(f"page{number}")
