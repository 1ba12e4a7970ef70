"""PDF: the printable documents of a billing file and the practice's status report.

reportlab draws them; it is imported inside the functions that need it, so that
``cnsx --help`` and the XML-only commands never load it.

Printing: :func:`write_fee_note`, :func:`write_summary` and :func:`write_status` (the
practice's status report, from the database) draw on reportlab's canvas, page by page, with fixed row heights, so that the page count is known before drawing (for "page
N/M") and a 500-fee-note summary takes a fraction of a second (a single platypus ``Table`` of
that size takes far longer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, Iterable, NamedTuple

from cns_exchange import __version__
from cns_exchange.domain.model import FeeNote, Header

PRODUCER = f"cnsx {__version__}"

# --- printable documents ---------------------------------------------------------------------

#: TrueType fonts with the French accents (and far more), first found wins. Debian's
#: fonts-dejavu-core; else Bitstream Vera, which reportlab ships (Latin-1 and Latin
#: Extended-A, enough for French, German and Polish names).
FONT_CANDIDATES: list[tuple[Path, Path]] = [
    (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"), Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")),
]
_FONT, _BOLD, _MONO = "cnsx-sans", "cnsx-sans-bold", "Courier"  # Courier: the hash is ASCII, a base-14 font suffices
_fonts_loaded: Path | None = None


def font_files() -> tuple[Path, Path]:
    """Return the (regular, bold) TrueType files the printed documents embed."""
    for regular, bold in FONT_CANDIDATES:
        if regular.is_file() and bold.is_file():
            return regular, bold
    import reportlab

    folder = Path(reportlab.__file__).parent / "fonts"
    return folder / "Vera.ttf", folder / "VeraBd.ttf"


def _register_fonts() -> Path:
    global _fonts_loaded
    if _fonts_loaded is None:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        regular, bold = font_files()
        pdfmetrics.registerFont(TTFont(_FONT, str(regular)))
        pdfmetrics.registerFont(TTFont(_BOLD, str(bold)))
        _fonts_loaded = regular
    return _fonts_loaded


@dataclass
class Source:
    """What every printed page says about the billing file it comes from."""

    name: str                  # the file name shown (the billing file's, or its conventional name)
    sha256: str
    header: Header
    printed: datetime          # the PDF's creation date
    act_labels: dict[str, str] = field(default_factory=dict)
    mask_matricule: bool = False
    practice: Any = None       # config.Practice (name, address, phone, iban, dieticians) or None


@dataclass
class Totals:
    """Sums drawn on a summary: fee notes, sessions and amounts in cents."""

    notes: int = 0
    sessions: int = 0
    gross: int = 0
    patient: int = 0
    cns: int = 0

    def add(self, note: FeeNote) -> None:
        self.notes += 1
        for s in note.sessions:
            self.sessions += 1
            self.gross += s.gross
            self.patient += s.patient_share
            self.cns += s.cns_share


def euros(cents: int) -> str:
    """Return an amount as printed on the documents: '1 234,56' (French style)."""
    whole, rest = divmod(cents, 100)
    return f"{whole:,}".replace(",", "\u00a0") + f",{rest:02d}"  # a no-break space between thousands


def french_date(day: date) -> str:
    return f"{day:%d/%m/%Y}"


def _when(moment: datetime) -> str:
    """'20/11/2026 à 09:00 (UTC+01:00)'."""
    text = f"{moment:%d/%m/%Y à %H:%M}"
    offset = moment.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds() // 60)
        text += f" (UTC{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d})"
    return text


def show_matricule(matricule: str, masked: bool) -> str:
    """Return the matricule in full, or masked but for its last 4 digits."""
    return "•" * (len(matricule) - 4) + matricule[-4:] if masked else matricule


# Page geometry (points; A4 portrait).
_W, _H = 595.2756, 841.8898
_MARGIN = 42.52          # 15 mm
_LEFT, _RIGHT = _MARGIN, _W - _MARGIN
_TOP, _BOTTOM = _H - _MARGIN, _MARGIN + 30   # room for the two footer lines
_ROW = 14.0              # table row height
_GREY = (0.93, 0.93, 0.93)
_DARK = (0.35, 0.35, 0.35)


@dataclass
class _Column:
    title: str
    width: float
    align: str = "left"   # 'left' or 'right'
    key: str = ""         # the status report: the row's key this column shows,
    kind: str = "text"    # and how: text, wrap, date, day (of a date-time), month, amount, state, yesno


class _Sheet:
    """One PDF being drawn: metadata, fonts, the running footer with its 'page N/M'.

    ``footer`` names what the SHA-256 printed on every page is the hash of.
    """

    def __init__(self, out: IO[bytes], printed: datetime, pages: int, *, title: str, author: str, subject: str,
                 keywords: str, footer: str, sha256: str) -> None:
        from reportlab.pdfgen import canvas

        _register_fonts()
        # invariant: no random document ID and no time-based comments, so that the same
        # data printed with the same date gives the same bytes.
        self.c = canvas.Canvas(out, pagesize=(_W, _H), invariant=1, pageCompression=1)
        offset = printed.utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        stamp = printed.strftime("D:%Y%m%d%H%M%S") + (
            f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}'{abs(minutes) % 60:02d}'" if offset is not None else "")
        self.c.setDateFormatter(lambda *_: stamp)
        self.c.setTitle(title)
        self.c.setAuthor(author)
        self.c.setSubject(subject)
        self.c.setKeywords(keywords)
        self.c.setCreator(PRODUCER)
        self.c.setProducer(PRODUCER)
        self.printed = printed
        self.footer_label = footer
        self.sha256 = sha256
        self.pages = pages
        self.page = 1

    @classmethod
    def of_billing(cls, out: IO[bytes], source: Source, title: str, subject: str, pages: int) -> "_Sheet":
        """A printed document of a billing file: its name and SHA-256 in the metadata and footer."""
        return cls(out, source.printed, pages, title=title, author=f"Prestataire {source.header.provider}",
                   subject=subject, keywords=f"CNS, tiers payant, {source.name}, sha256:{source.sha256}",
                   footer=f"Fichier {source.name} · SHA-256 :", sha256=source.sha256)

    def text(self, x: float, y: float, text: str, size: float = 9, bold: bool = False, align: str = "left",
             grey: bool = False) -> None:
        c = self.c
        c.setFont(_BOLD if bold else _FONT, size)
        if grey:
            c.setFillColorRGB(*_DARK)
        if align == "right":
            c.drawRightString(x, y, text)
        else:
            c.drawString(x, y, text)
        if grey:
            c.setFillColorRGB(0, 0, 0)

    def footer(self) -> None:
        c = self.c
        y = _MARGIN + 12
        c.setStrokeColorRGB(*_DARK)
        c.setLineWidth(0.4)
        c.line(_LEFT, y + 10, _RIGHT, y + 10)
        self.text(_LEFT, y, self.footer_label, size=7, grey=True)
        c.setFont(_MONO, 6.8)
        c.setFillColorRGB(*_DARK)
        c.drawRightString(_RIGHT, y, self.sha256)
        c.setFillColorRGB(0, 0, 0)
        self.text(_LEFT, y - 10, f"Imprimé par {PRODUCER} le {self.printed:%d/%m/%Y à %H:%M}", size=7, grey=True)
        self.text(_RIGHT, y - 10, f"page {self.page}/{self.pages}", size=7, grey=True, align="right")

    def next_page(self) -> None:
        self.footer()
        self.c.showPage()
        self.page += 1

    def finish(self) -> None:
        self.footer()
        self.c.showPage()
        self.c.save()

    def table_header(self, y: float, columns: list[_Column]) -> float:
        """Draw the column titles in a grey band whose top is ``y``; return the y below it."""
        c = self.c
        c.setFillColorRGB(*_GREY)
        c.rect(_LEFT, y - _ROW - 2, _RIGHT - _LEFT, _ROW + 2, stroke=0, fill=1)
        c.setFillColorRGB(0, 0, 0)
        x = _LEFT
        for col in columns:
            self.text(x + col.width - 3 if col.align == "right" else x + 3, y - _ROW + 2, col.title, size=7.5, bold=True,
                      align=col.align)
            x += col.width
        return y - _ROW - 2

    def row(self, y: float, columns: list[_Column], cells: list[str], bold: bool = False, shade: bool = False,
            size: float = 8, height: float = _ROW, lines: list[list[str]] | None = None) -> float:
        """Draw one table row whose top is ``y``; return the y below it.

        ``lines`` gives, per cell, the lines of a cell that wraps (others are one line).
        """
        c = self.c
        if shade:
            c.setFillColorRGB(0.975, 0.975, 0.975)
            c.rect(_LEFT, y - height, _RIGHT - _LEFT, height, stroke=0, fill=1)
            c.setFillColorRGB(0, 0, 0)
        x = _LEFT
        for i, (col, cell) in enumerate(zip(columns, cells)):
            cell_lines = lines[i] if lines is not None and lines[i] else [cell]
            # A left-aligned text may run on over the empty cells that follow it ("Total").
            room = col.width
            for j in range(i + 1, len(columns)):
                if cells[j] or (lines is not None and lines[j]):
                    break
                room += columns[j].width
            for k, line in enumerate(cell_lines):
                baseline = y - 10 - k * (size + 2)
                if col.align == "right":
                    self.text(x + col.width - 3, baseline, line, size=size, bold=bold, align="right")
                else:
                    self.text(x + 3, baseline, fit(line, room - 6, size, bold), size=size, bold=bold)
            x += col.width
        return y - height


def fit(text: str, width: float, size: float, bold: bool = False) -> str:
    """Return ``text``, cut with '…' if it is wider than ``width`` points."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    font = _BOLD if bold else _FONT
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _wrap(text: str, width: float, size: float) -> list[str]:
    from reportlab.lib.utils import simpleSplit

    return simpleSplit(text, _FONT, size, width) or [""]


def _pages(heights: Iterable[float], first: float, other: float, tail: float) -> int:
    """Return the number of pages a table of rows of ``heights`` takes, with ``first`` points
    for rows on the first page, ``other`` on the next ones, and ``tail`` points after the last
    row (totals) on the same page. The drawing functions break pages by the same rule."""
    pages, room = 1, first
    for h in heights:
        if h > room:
            pages, room = pages + 1, other
        room -= h
    if tail > room:
        pages += 1
    return pages


# --- the patient's fee note --------------------------------------------------------------------

_NOTE_COLUMNS = [
    _Column("N°", 22), _Column("Date", 56), _Column("Acte", 34), _Column("Libellé", 165),
    _Column("Exécutant", 50), _Column("Brut €", 58, "right"), _Column("Part patient €", 64, "right"),
    _Column("Part CNS €", 61, "right"),
]   # 510 points: the width between the margins
_NOTE_FIRST = 160.0      # points above the table on the first page (title and identity blocks)
_NOTE_NEXT = 40.0        # on the following pages (a short title)
_NOTE_TAIL = 112.0       # totals row and the "what you pay" box


def _note_rows(note: FeeNote, labels: dict[str, str]) -> list[tuple[list[str], list[list[str]], float]]:
    label_width = _NOTE_COLUMNS[3].width - 6
    rows = []
    for s in note.sessions:
        label = _wrap(labels.get(s.act_code, ""), label_width, 8)
        cells = [str(s.line_no), french_date(s.session_date), s.act_code, label[0], s.executing_provider,
                 euros(s.gross), euros(s.patient_share), euros(s.cns_share)]
        lines = [[], [], [], label, [], [], [], []]
        rows.append((cells, lines, max(_ROW, 4 + len(label) * 10.0)))
    return rows


def write_fee_note(out: IO[bytes], note: FeeNote, source: Source) -> None:
    """Draw the fee note of one patient (mémoire d'honoraires) as an A4 PDF into ``out``.

    It shows the practice's provider code, the patient (name and matricule, masked if
    ``source.mask_matricule``), the certificate, one line per session (date, act code and
    label, executing provider, gross amount, patient share, CNS share), the totals and what
    the patient pays; every page names the billing file and its SHA-256.
    """
    _register_fonts()  # the layout measures text before the first page is drawn
    rows = _note_rows(note, source.act_labels)
    body = _TOP - _BOTTOM
    pages = _pages((h for *_, h in rows), body - _NOTE_FIRST - _ROW - 2, body - _NOTE_NEXT - _ROW - 2, _NOTE_TAIL)
    sheet = _Sheet.of_billing(out, source, f"Mémoire d'honoraires n° {note.number} — {source.name}",
                   f"Mémoire d'honoraires n° {note.number} du fichier de facturation {source.name}, SHA-256 {source.sha256}",
                   pages)
    header = source.header
    y = _TOP - 16
    sheet.text(_LEFT, y, "Mémoire d'honoraires", size=18, bold=True)
    sheet.text(_RIGHT, y, f"n° {note.number}", size=12, bold=True, align="right")
    y -= 16
    practice = source.practice
    executing = sorted({s.executing_provider for s in note.sessions})
    named = [f"{practice.dieticians[code]} ({code})" for code in executing if practice and code in practice.dieticians]
    sheet.text(_LEFT, y, fit("Diététicien(ne) : " + ", ".join(named) if named else
                             "Diététique · tiers payant : la CNS règle sa part directement au prestataire", _RIGHT - _LEFT, 9),
               size=9, grey=True)
    y -= 22
    box_height = 74
    half = (_RIGHT - _LEFT - 12) / 2
    c = sheet.c
    c.setStrokeColorRGB(*_DARK)
    c.setLineWidth(0.6)
    c.roundRect(_LEFT, y - box_height, half, box_height, 4)
    c.roundRect(_LEFT + half + 12, y - box_height, half, box_height, 4)
    x2 = _LEFT + half + 12
    sheet.text(_LEFT + 8, y - 14, "PRESTATAIRE", size=7.5, bold=True, grey=True)
    if practice:  # the practice's identity (config [practice]) in place of the bare code
        sheet.text(_LEFT + 8, y - 27, fit(practice.name, half - 16, 10, True), size=10, bold=True)
        sheet.text(_LEFT + 8, y - 39, fit(", ".join(practice.address), half - 16, 8), size=8)
        contact = " · ".join(x for x in (f"Tél. {practice.phone}" if practice.phone else "",
                                          f"IBAN {practice.iban}" if practice.iban else "") if x)
        sheet.text(_LEFT + 8, y - 50, fit(contact, half - 16, 8), size=8)
        sheet.text(_LEFT + 8, y - 62, fit(f"Code CNS {header.provider} · fichier du "
                                          f"{french_date(header.created.date())} n° {header.sequence}", half - 16, 8),
                   size=8, grey=True)
    else:
        sheet.text(_LEFT + 8, y - 30, f"Code prestataire CNS : {header.provider}", size=10)
        sheet.text(_LEFT + 8, y - 46, f"Fichier de facturation du {french_date(header.created.date())}", size=9)
        sheet.text(_LEFT + 8, y - 60, f"n° de séquence {header.sequence}", size=9, grey=True)
    sheet.text(x2 + 8, y - 14, "PATIENT", size=7.5, bold=True, grey=True)
    sheet.text(x2 + 8, y - 30, fit(f"{note.last_name} {note.first_name}".strip() or "—", half - 16, 11, True), size=11, bold=True)
    sheet.text(x2 + 8, y - 46, f"Matricule : {show_matricule(note.matricule, source.mask_matricule)}", size=10)
    sheet.text(x2 + 8, y - 60, f"Titre de prise en charge : {note.certificate_number}", size=9)
    y -= box_height + 22
    sheet.text(_LEFT, y, "Séances", size=11, bold=True)
    y = sheet.table_header(_TOP - _NOTE_FIRST, _NOTE_COLUMNS)
    for i, (cells, lines, height) in enumerate(rows):
        if y - height < _BOTTOM:
            sheet.next_page()
            sheet.text(_LEFT, _TOP - 16, f"Mémoire d'honoraires n° {note.number} (suite)", size=11, bold=True)
            y = sheet.table_header(_TOP - _NOTE_NEXT, _NOTE_COLUMNS)
        y = sheet.row(y, _NOTE_COLUMNS, cells, shade=i % 2 == 1, height=height, lines=lines)
    totals = Totals()
    totals.add(note)
    if y - _NOTE_TAIL < _BOTTOM:
        sheet.next_page()
        sheet.text(_LEFT, _TOP - 16, f"Mémoire d'honoraires n° {note.number} (suite)", size=11, bold=True)
        y = sheet.table_header(_TOP - _NOTE_NEXT, _NOTE_COLUMNS)  # the totals row under its column titles
    c.setLineWidth(0.8)
    c.setStrokeColorRGB(0, 0, 0)
    c.line(_LEFT, y, _RIGHT, y)
    y = sheet.row(y, _NOTE_COLUMNS, [f"Total ({totals.sessions} séance{'s' if totals.sessions != 1 else ''})", "", "", "", "",
                                     euros(totals.gross), euros(totals.patient), euros(totals.cns)], bold=True)
    y -= 18
    box = 64
    c.setFillColorRGB(*_GREY)
    c.roundRect(_LEFT, y - box, _RIGHT - _LEFT, box, 4, stroke=0, fill=1)
    c.setFillColorRGB(0, 0, 0)
    sheet.text(_LEFT + 10, y - 16, "Montant total des prestations", size=9.5)
    sheet.text(_RIGHT - 10, y - 16, f"{euros(totals.gross)} €", size=9.5, align="right")
    sheet.text(_LEFT + 10, y - 32, "Réglé directement par la CNS au prestataire (part statutaire)", size=9.5)
    sheet.text(_RIGHT - 10, y - 32, f"{euros(totals.cns)} €", size=9.5, align="right")
    sheet.text(_LEFT + 10, y - 50, "Reste à votre charge (participation personnelle)", size=11, bold=True)
    sheet.text(_RIGHT - 10, y - 50, f"{euros(totals.patient)} €", size=11, bold=True, align="right")
    sheet.finish()


# --- the summary statement of a billing file -------------------------------------------------

_SUMMARY_COLUMNS = [
    _Column("N°", 22), _Column("Titre", 72), _Column("Patient", 100), _Column("Matricule", 66),
    _Column("Séances", 34, "right"), _Column("Du", 38), _Column("Au", 38),
    _Column("Brut €", 46, "right"), _Column("Patient €", 44, "right"), _Column("CNS €", 50, "right"),
]   # 510 points: the width between the margins
_SUMMARY_ROW = 13.0
_SUMMARY_FIRST = 160.0   # points above the table on the first page
_SUMMARY_NEXT = 40.0
_SUMMARY_TAIL = 108.0    # totals row and totals box


def write_summary(out: IO[bytes], notes: Iterable[FeeNote], source: Source, count: int) -> Totals:
    """Draw the summary statement (relevé récapitulatif) of a billing file into ``out``.

    One row per fee note (number, certificate, patient, matricule masked unless asked
    otherwise, sessions, first and last date, gross, patient and CNS shares), the header
    data, and the totals. ``notes`` is consumed as it comes (the file is read streaming);
    ``count`` is the number of fee notes the header announces (for 'page N/M'). Returns the
    totals drawn, for the caller to check against the header.
    """
    body = _TOP - _BOTTOM
    first = body - _SUMMARY_FIRST - _ROW - 2
    other = body - _SUMMARY_NEXT - _ROW - 2
    pages = _pages((_SUMMARY_ROW for _ in range(count)), first, other, _SUMMARY_TAIL)
    header = source.header
    sheet = _Sheet.of_billing(out, source, f"Relevé récapitulatif — {source.name}",
                   f"Relevé récapitulatif du fichier de facturation {source.name}, SHA-256 {source.sha256}", pages)
    c = sheet.c
    y = _TOP - 16
    sheet.text(_LEFT, y, "Relevé récapitulatif", size=18, bold=True)
    y -= 16
    sheet.text(_LEFT, y, "Fichier de facturation · tiers payant · diététique", size=9, grey=True)
    y -= 20
    extra = header.extra
    facts = [
        ("Fichier", source.name),
        ("Code prestataire", header.provider),
        ("Créé le", _when(header.created)),
        ("N° de séquence", str(header.sequence)),
        ("Version du schéma", header.version),
        ("Mémoires d'honoraires", extra.get("NombreMemoires", "")),
        ("Séances", extra.get("NombreSeances", "")),
    ]
    practice = source.practice
    if practice:  # the practice's identity (config [practice]) first
        facts[:0] = [("Cabinet", " · ".join([practice.name, *practice.address])),
                     ("Téléphone · IBAN", " · ".join(x for x in (practice.phone, practice.iban) if x) or "—")]
    for label, value in facts:
        sheet.text(_LEFT, y, label, size=9, grey=True)
        sheet.text(_LEFT + 120, y, fit(value, _RIGHT - _LEFT - 120, 9), size=9)
        y -= 13 if len(facts) <= 8 else 11
    y = _TOP - _SUMMARY_FIRST
    y = sheet.table_header(y, _SUMMARY_COLUMNS)
    totals = Totals()
    index = 0
    for note in notes:
        if y - _SUMMARY_ROW < _BOTTOM:
            sheet.next_page()
            sheet.text(_LEFT, _TOP - 16, f"Relevé récapitulatif (suite) — {source.name}", size=11, bold=True)
            y = sheet.table_header(_TOP - _SUMMARY_NEXT, _SUMMARY_COLUMNS)
        before = (totals.gross, totals.patient, totals.cns)
        totals.add(note)
        days = [s.session_date for s in note.sessions]
        cells = [str(note.number), note.certificate_number, f"{note.last_name} {note.first_name}".strip(),
                 show_matricule(note.matricule, source.mask_matricule), str(len(note.sessions)),
                 f"{min(days):%d/%m/%y}" if days else "", f"{max(days):%d/%m/%y}" if days else "",
                 euros(totals.gross - before[0]), euros(totals.patient - before[1]), euros(totals.cns - before[2])]
        y = sheet.row(y, _SUMMARY_COLUMNS, cells, shade=index % 2 == 1, size=7, height=_SUMMARY_ROW)
        index += 1
    if y - _SUMMARY_TAIL < _BOTTOM:
        sheet.next_page()
        sheet.text(_LEFT, _TOP - 16, f"Relevé récapitulatif (suite) — {source.name}", size=11, bold=True)
        y = sheet.table_header(_TOP - _SUMMARY_NEXT, _SUMMARY_COLUMNS)  # the totals row under its column titles
    c.setLineWidth(0.8)
    c.setStrokeColorRGB(0, 0, 0)
    c.line(_LEFT, y, _RIGHT, y)
    y = sheet.row(y, _SUMMARY_COLUMNS, ["Total", "", f"{totals.notes} mémoire{'s' if totals.notes != 1 else ''}", "",
                                        str(totals.sessions), "", "", euros(totals.gross), euros(totals.patient),
                                        euros(totals.cns)], bold=True, size=7)
    y -= 14
    box = 66
    c.setFillColorRGB(*_GREY)
    c.roundRect(_LEFT, y - box, _RIGHT - _LEFT, box, 4, stroke=0, fill=1)
    c.setFillColorRGB(0, 0, 0)
    for k, (label, amount, big) in enumerate((("Total montant brut", totals.gross, False),
                                              ("Total participation personnelle (patients)", totals.patient, False),
                                              ("Total part statutaire (à régler par la CNS)", totals.cns, True))):
        sheet.text(_LEFT + 10, y - 16 - 17 * k, label, size=10.5 if big else 9.5, bold=big)
        sheet.text(_RIGHT - 10, y - 16 - 17 * k, f"{euros(amount)} €", size=10.5 if big else 9.5, bold=big, align="right")
    sheet.finish()
    return totals


# --- the status report of the practice database ----------------------------------------------

@dataclass
class StatusHeading:
    """What the status report says about itself: whose, when, which selection, which data."""

    providers: list[str]        # the provider codes found in the database
    today: date                 # the day the status is computed for (ages, expiry)
    printed: datetime           # the PDF's creation date
    data_sha256: str            # SHA-256 of the canonical JSON of the sections shown (status.data_sha256)
    certificate: str | None = None
    patient: str | None = None  # the matricule as shown (masked or not)


#: Each section of status.status(): its key, its title, its columns (510 points, the width
#: between the margins) and, for the months, the columns summed on a total line.
_STATUS_SECTIONS: list[tuple[str, str, list[_Column]]] = [
    ("due", "À faire bientôt : titres qui expirent ou s'épuisent, demandes sans réponse", [
        _Column("Quoi", 46, key="what", kind="state"), _Column("Référence", 80, key="reference"),
        _Column("Matricule", 76, key="matricule"), _Column("Patient", 100, key="patient", kind="wrap"),
        _Column("Date", 53, key="date", kind="date"), _Column("Jours", 40, "right", key="days"),
        _Column("Restantes", 45, "right", key="sessions_remaining"), _Column("Motif", 70, key="reason", kind="state")]),
    ("requests_awaiting_answer", "Demandes en attente de réponse", [
        _Column("Demande", 60, key="request_ref"), _Column("Matricule", 76, key="matricule"),
        _Column("Patient", 94, key="patient", kind="wrap"), _Column("Prescription", 56, key="prescription_date", kind="date"),
        _Column("Traitement", 60, key="treatment"), _Column("Pathologies", 58, key="pathologies", kind="wrap"),
        _Column("Envoyée le", 56, key="sent_at", kind="day"), _Column("Âge (jours)", 50, "right", key="age_days")]),
    ("refused_requests", "Demandes refusées", [
        _Column("Demande", 70, key="request_ref"), _Column("Matricule", 80, key="matricule"),
        _Column("Patient", 110, key="patient", kind="wrap"), _Column("Motifs du refus", 250, key="reasons", kind="wrap")]),
    ("certificates", "Titres de prise en charge", [
        _Column("Titre", 84, key="certificate"), _Column("Matricule", 76, key="matricule"),
        _Column("Patient", 96, key="patient", kind="wrap"),
        _Column("Valable du", 53, key="valid_from", kind="date"), _Column("au", 53, key="valid_to", kind="date"),
        _Column("Aut.", 34, "right", key="sessions_authorised"),
        _Column("Fact.", 34, "right", key="sessions_billed"),
        _Column("Rest.", 34, "right", key="sessions_remaining"), _Column("État", 46, key="state", kind="state")]),
    ("billed_awaiting_payment", "Séances facturées en attente de paiement", [
        _Column("Titre", 84, key="certificate"), _Column("Matricule", 76, key="matricule"),
        _Column("Patient", 88, key="patient", kind="wrap"),
        _Column("Séance", 53, key="session_date", kind="date"), _Column("Acte", 34, key="act"),
        _Column("Part CNS €", 56, "right", key="cns_share", kind="amount"),
        _Column("Fichier de facturation", 119, key="billing_file")]),
    ("disputed", "Lignes contestées par la CNS", [
        _Column("Titre", 78, key="certificate"), _Column("Matricule", 74, key="matricule"),
        _Column("Patient", 78, key="patient", kind="wrap"),
        _Column("Séance", 53, key="session_date", kind="date"), _Column("Acte", 30, key="act"),
        _Column("Motif", 30, key="reason_code"), _Column("Libellé du motif", 79, key="reason_label", kind="wrap"),
        _Column("Facturé €", 44, "right", key="billed", kind="amount"),
        _Column("Accepté €", 44, "right", key="accepted", kind="amount")]),
    ("per_month", "Montants par mois", [
        _Column("Mois", 60, key="month", kind="month"), _Column("Séances", 50, "right", key="sessions"),
        _Column("Brut €", 80, "right", key="gross", kind="amount"),
        _Column("Part patient €", 80, "right", key="patient_share", kind="amount"),
        _Column("Part CNS €", 80, "right", key="billed", kind="amount"),
        _Column("Payé €", 80, "right", key="paid", kind="amount"),
        _Column("Contesté €", 80, "right", key="disputed", kind="amount")]),
    ("final_reports_due", "Rapports diététiques finaux à envoyer au prescripteur", [
        _Column("Titre", 78, key="certificate"), _Column("Matricule", 73, key="matricule"),
        _Column("Patient", 57, key="patient", kind="wrap"),
        _Column("Prescr.", 47, key="prescriber"), _Column("Valable au", 53, key="valid_to", kind="date"),
        _Column("Aut.", 22, "right", key="sessions_authorised"), _Column("Fact.", 22, "right", key="sessions_billed"),
        _Column("Dern. s.", 53, key="last_session", kind="date"), _Column("Traitement", 52, key="ended", kind="state"),
        _Column("Dû depuis", 53, key="due_since", kind="date")]),
    # Only with --patient: the patient's history, in date order.
    ("history", "Historique du patient (montants en €)", [
        _Column("Date", 53, key="date", kind="date"), _Column("Quoi", 46, key="event", kind="state"),
        _Column("Titre", 78, key="certificate"), _Column("Référence", 62, key="reference", kind="wrap"),
        _Column("Acte", 30, key="act"), _Column("Brut", 36, "right", key="gross", kind="amount"),
        _Column("Patient", 36, "right", key="patient_share", kind="amount"),
        _Column("CNS", 36, "right", key="cns_share", kind="amount"),
        _Column("Payé", 36, "right", key="paid", kind="amount"),
        _Column("Contesté", 38, "right", key="disputed", kind="amount"),
        _Column("Détail", 59, key="detail", kind="wrap")]),
    # Only with --year: not drawn at all when status() did not give it.
    ("it_flat_rate", "Forfait informatique (art. 38 de la convention)", [
        _Column("Année", 34, key="year"), _Column("Prestataire(s)", 76, key="providers", kind="wrap"),
        _Column("Du", 54, key="period_from", kind="date"), _Column("Au", 54, key="period_to", kind="date"),
        _Column("Ordonnances", 60, "right", key="prescriptions"),
        _Column("En attente", 50, "right", key="awaiting_payment"), _Column("Seuil", 36, "right", key="threshold"),
        _Column("Droit", 34, key="qualifies", kind="yesno"), _Column("Montant €", 58, "right", key="amount", kind="amount"),
        _Column("Année close", 54, key="year_ended", kind="yesno")]),
]
_STATUS_TOTALS = {"per_month": ("sessions", "gross", "patient_share", "billed", "paid", "disputed")}
_STATUS_STATES = {"valid": "valide", "expired": "expiré", "finished": "terminé", "interrupted": "interrompu",
                  "request": "demande", "certificate": "titre", "refused": "refus", "session": "séance",
                  "fee note": "mémoire", "payment": "paiement", "dispute": "contesté", "final report sent": "rapport final",
                  "expiring": "expire bientôt", "sessions": "≤ 1 séance", "unanswered": "sans réponse"}
_STATUS_MASCULINE = {"per_month", "final_reports_due", "history"}   # "… : aucun"
_STATUS_FIRST = 100.0     # points above the first section on the first page (title and facts)
_STATUS_NEXT = 30.0       # on the following pages (a short title)
_STATUS_HEADING = 26.0    # a section's title (with ": aucune" when it is empty)


def status_columns() -> dict[str, list[str]]:
    """Return, per section of the status report, the keys of the rows its columns show."""
    return {name: [col.key for col in columns] for name, _, columns in _STATUS_SECTIONS}


def cents(amount: str) -> int:
    """Return the cents of an amount written as status() writes it ('1234.56', '-0.50'), exactly."""
    sign = -1 if amount.startswith("-") else 1
    whole, _, fraction = amount.lstrip("+-").partition(".")
    return sign * (int(whole or "0") * 100 + int((fraction + "00")[:2]))


def _status_cell(value, column: _Column) -> str:
    if value is None:
        return ""
    text = str(value)
    if column.kind == "amount":
        amount = cents(text)
        return ("-" if amount < 0 else "") + euros(abs(amount))
    if column.kind in ("date", "day") and len(text) >= 10 and text[4] == "-" and text[7] == "-":
        return f"{text[8:10]}/{text[5:7]}/{text[:4]}"
    if column.kind == "month" and len(text) == 7 and text[4] == "-":
        return f"{text[5:7]}/{text[:4]}"
    if column.kind == "state":
        return _STATUS_STATES.get(text, text)
    if column.kind == "yesno":
        return "oui" if value else "non"
    return text


class _Op(NamedTuple):
    """One thing drawn on a page of the status report, top to bottom."""

    what: str                   # heading, header, row, total
    height: float
    text: str = ""
    columns: list | None = None
    cells: list | None = None
    lines: list | None = None
    shade: bool = False


def _status_layout(sections: dict[str, list[dict]]) -> list[list[_Op]]:
    """Lay the sections out on pages: a section's title never ends a page, a table going on
    to the next page has its title "(suite)" and column titles again, and the total line is
    drawn under column titles. Pure arithmetic: the page count is known before drawing."""
    body = _TOP - _BOTTOM
    pages: list[list[_Op]] = [[]]
    room = body - _STATUS_FIRST

    def new_page() -> None:
        nonlocal room
        pages.append([])
        room = body - _STATUS_NEXT

    def put(op: _Op) -> None:
        nonlocal room
        pages[-1].append(op)
        room -= op.height

    header_height = _ROW + 2
    for name, title, columns in _STATUS_SECTIONS:
        if name not in sections:
            continue
        rows = sections[name]
        if not rows:
            if _STATUS_HEADING > room:
                new_page()
            put(_Op("heading", _STATUS_HEADING, f"{title} : aucun" if name in _STATUS_MASCULINE else f"{title} : aucune"))
            continue
        drawn = []
        for row in rows:
            cells = [_status_cell(row.get(col.key), col) for col in columns]
            lines = [_wrap(cell, col.width - 6, 8) if col.kind == "wrap" else [] for col, cell in zip(columns, cells)]
            height = max([_ROW] + [4 + len(x) * 10.0 for x in lines if x])
            drawn.append(_Op("row", height, columns=columns, cells=cells, lines=lines))
        heading = f"{title} ({len(rows)})"
        if _STATUS_HEADING + header_height + drawn[0].height > room:
            new_page()
        put(_Op("heading", _STATUS_HEADING, heading))
        put(_Op("header", header_height, columns=columns))
        for i, op in enumerate(drawn):
            if op.height > room:
                new_page()
                put(_Op("heading", _STATUS_HEADING, f"{title} (suite)"))
                put(_Op("header", header_height, columns=columns))
            put(op._replace(shade=i % 2 == 1))
        summed = _STATUS_TOTALS.get(name)
        if summed:
            cells = ["Total"]
            for col in columns[1:]:
                if col.key not in summed:
                    cells.append("")
                elif col.kind == "amount":
                    cells.append(_status_cell(_sum_amounts(r[col.key] for r in rows), col))
                else:
                    cells.append(str(sum(int(r[col.key]) for r in rows)))
            if _ROW + 2 > room:
                new_page()
                put(_Op("heading", _STATUS_HEADING, f"{title} (suite)"))
                put(_Op("header", header_height, columns=columns))
            put(_Op("total", _ROW + 2, columns=columns, cells=cells))
        if name == "per_month":   # and as a chart: billed, paid, disputed by month
            if _CHART_HEIGHT > room:
                new_page()
            put(_Op("chart", _CHART_HEIGHT, cells=rows[-_CHART_MONTHS:]))
    return pages


_CHART_HEIGHT = 190.0     # points the month chart takes, with its legend
_CHART_MONTHS = 24        # the latest months drawn (the table lists them all)


def _month_chart(rows: list[dict]):
    """Return a reportlab Drawing of the CNS's share billed, paid and disputed by month (euros)."""
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.charts.legends import Legend
    from reportlab.graphics.shapes import Drawing
    from reportlab.lib import colors

    width = _RIGHT - _LEFT
    drawing = Drawing(width, _CHART_HEIGHT - 10)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 46, 34, width - 56, _CHART_HEIGHT - 64
    chart.data = [[cents(r[key]) / 100 for r in rows] for key in ("billed", "paid", "disputed")]
    chart.categoryAxis.categoryNames = [_status_cell(r["month"], _Column("", 0, kind="month")) for r in rows]
    chart.categoryAxis.labels.fontName = chart.valueAxis.labels.fontName = _FONT
    chart.categoryAxis.labels.fontSize = chart.valueAxis.labels.fontSize = 6.5
    if len(rows) > 8:   # slanted, each ending under its month
        chart.categoryAxis.labels.angle, chart.categoryAxis.labels.boxAnchor = 30, "ne"
    chart.categoryAxis.labels.dy = -4
    chart.valueAxis.valueMin = 0
    chart.valueAxis.valueMax = max([1.0] + [v for series in chart.data for v in series]) * 1.1   # room under the legend
    chart.valueAxis.labelTextFormat = lambda v: euros(round(v * 100)).replace(",00", "")
    palette = (colors.HexColor("#4a6fa5"), colors.HexColor("#6aa84f"), colors.HexColor("#cc4125"))
    for i, colour in enumerate(palette):
        chart.bars[i].fillColor = colour
        chart.bars[i].strokeColor = None
    chart.groupSpacing, chart.barSpacing = 6, 0.5
    drawing.add(chart)
    legend = Legend()
    legend.x, legend.y = 46, _CHART_HEIGHT - 18
    legend.fontName, legend.fontSize = _FONT, 7.5
    legend.alignment, legend.columnMaximum, legend.dx, legend.dy = "right", 1, 8, 8
    legend.deltax = 110
    legend.colorNamePairs = list(zip(palette, ("Facturé (part CNS) €", "Payé €", "Contesté €")))
    drawing.add(legend)
    return drawing


def _sum_amounts(amounts: Iterable[str]) -> str:
    """Sum amounts written '1234.56', exactly (in cents), and write the sum the same way."""
    total = sum(cents(a) for a in amounts)
    return f"{'-' if total < 0 else ''}{abs(total) // 100}.{abs(total) % 100:02d}"


def write_status(out: IO[bytes], sections: dict[str, list[dict]], heading: StatusHeading) -> int:
    """Draw the status report of the practice database as an A4 PDF into ``out``; return its page count.

    One table per section of :func:`cns_exchange.store.status.status` (as given: matricules already
    masked or not), long tables split over pages with their column titles repeated, amounts to
    the cent as in the JSON output (written the French way), and a total line under the months.
    The title names the provider code(s), the day and the selection (one certificate or
    patient); the metadata and every page's footer carry ``heading.data_sha256``. No patient
    data goes into the metadata.
    """
    _register_fonts()  # the layout measures text
    pages = _status_layout(sections)
    providers = ", ".join(heading.providers) or "—"
    day = french_date(heading.today)
    if heading.certificate:
        selection, scope = f"titre de prise en charge {heading.certificate}", " (un titre de prise en charge)"
    elif heading.patient:
        selection, scope = f"patient de matricule {heading.patient}", " (un patient)"
    else:
        selection, scope = "tout le cabinet (titres valables, ou expirés depuis 30 jours au plus)", ""
    title = f"État du cabinet {providers} au {day}"
    sheet = _Sheet(out, heading.printed, len(pages), title=title + scope, author=f"Prestataire {providers}",
                   subject=f"{title}{scope}, données de la base du cabinet, data SHA-256 {heading.data_sha256}",
                   keywords=f"CNS, tiers payant, état, data-sha256:{heading.data_sha256}",
                   footer="Données affichées (JSON canonique) · data SHA-256 :", sha256=heading.data_sha256)
    c = sheet.c
    y = _TOP - 16
    sheet.text(_LEFT, y, "État du cabinet", size=18, bold=True)
    sheet.text(_RIGHT, y, f"au {day}", size=12, bold=True, align="right")
    y -= 16
    sheet.text(_LEFT, y, "Demandes, titres de prise en charge, facturation et paiements CNS · diététique", size=9, grey=True)
    y -= 22
    facts = [("Code prestataire", providers), ("Sélection", selection),
             ("Établi le", f"{day}, d'après la base de données du cabinet")]
    for label, value in facts:
        sheet.text(_LEFT, y, label, size=9, grey=True)
        sheet.text(_LEFT + 100, y, fit(value, _RIGHT - _LEFT - 100, 9), size=9,
                   bold=label == "Sélection" and bool(scope))
        y -= 13
    for number, ops in enumerate(pages):
        if number:
            sheet.next_page()
            sheet.text(_LEFT, _TOP - 16, f"{title} (suite)", size=11, bold=True)
            y = _TOP - _STATUS_NEXT
        else:
            y = _TOP - _STATUS_FIRST
        for op in ops:
            if op.what == "heading":
                sheet.text(_LEFT, y - 18, op.text, size=11, bold=True)
            elif op.what == "header":
                sheet.table_header(y, op.columns)
            elif op.what == "row":
                sheet.row(y, op.columns, op.cells, shade=op.shade, height=op.height, lines=op.lines)
            elif op.what == "chart":
                from reportlab.graphics import renderPDF

                renderPDF.draw(_month_chart(op.cells), c, _LEFT, y - op.height + 4)
            elif op.what == "total":
                c.setLineWidth(0.8)
                c.setStrokeColorRGB(0, 0, 0)
                c.line(_LEFT, y, _RIGHT, y)
                sheet.row(y - 2, op.columns, op.cells, bold=True)
            y -= op.height
    sheet.finish()
    return len(pages)
