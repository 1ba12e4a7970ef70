"""The patient's fee note (mémoire d'honoraires), laid out as bands (pdf.layout) and drawn.

Also what every printed document of a billing file says about the file (:class:`Source`) and
the sums it draws (:class:`Totals`), shared with the summary statement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from cns_exchange.domain.identifiers import show_matricule
from cns_exchange.domain.model import FeeNote, Header
from cns_exchange.pdf.layout import (DARK, GREY, LEFT, RIGHT, ROW, Band, Box, Column, Document, Flow, Text, draw, euros,
                                     fit, french_date, header_band, heading_band, row_band, total_band, wrap)


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

    def document(self, title: str, subject: str) -> Document:
        """A printed document of this billing file: its name and SHA-256 in the metadata and footer."""
        return Document(title=title, author=f"Prestataire {self.header.provider}", subject=subject,
                        keywords=f"CNS, tiers payant, {self.name}, sha256:{self.sha256}",
                        footer=f"Fichier {self.name} · SHA-256 :", sha256=self.sha256, printed=self.printed)

    def dietician(self, provider: str) -> str:
        """The name the practice gives the provider code ``provider`` (config [practice]), or ''."""
        return self.practice.dieticians.get(provider, "") if self.practice else ""


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


COLUMNS = [
    Column("N°", 22), Column("Date", 56), Column("Acte", 34), Column("Libellé", 165),
    Column("Exécutant", 50), Column("Brut €", 58, "right"), Column("Part patient €", 64, "right"),
    Column("Part CNS €", 61, "right"),
]   # 510 points: the width between the margins
_FIRST = 160.0   # points above the table on the first page (title and identity blocks)
_NEXT = 40.0     # on the following pages (a short title)
_BOX = 64.0      # the "what you pay" box
_UNDER = 16.0    # room kept under it


def write_fee_note(out: IO[bytes], note: FeeNote, source: Source) -> int:
    """Draw the fee note of one patient (mémoire d'honoraires) as an A4 PDF into ``out``;
    return its page count.

    It shows the practice (its identity from the config, or its provider code), the patient
    (name and matricule, masked if ``source.mask_matricule``), the certificate, one line per
    session (date, act code and label, executing provider, gross amount, patient share, CNS
    share), the totals and what the patient pays; every page names the billing file and its
    SHA-256.
    """
    document = source.document(f"Mémoire d'honoraires n° {note.number} — {source.name}",
                               f"Mémoire d'honoraires n° {note.number} du fichier de facturation {source.name}, "
                               f"SHA-256 {source.sha256}")
    return draw(out, document, layout(note, source))


def layout(note: FeeNote, source: Source) -> list:
    """The pages of the fee note ``note``: the identity blocks, the sessions' table (its
    column titles again on every page it runs onto) and the totals with the "what you pay"
    box, kept together under column titles."""
    header = header_band(COLUMNS)
    flow = Flow(first=[_head(note, source), header],
                running=[heading_band(f"Mémoire d'honoraires n° {note.number} (suite)", _NEXT, dy=16)])
    label_width = COLUMNS[3].width - 6
    totals = Totals()
    totals.add(note)
    for i, s in enumerate(note.sessions):
        label = wrap(source.act_labels.get(s.act_code, ""), label_width, 8)
        cells = [str(s.line_no), french_date(s.session_date), s.act_code, label[0], s.executing_provider,
                 euros(s.gross), euros(s.patient_share), euros(s.cns_share)]
        flow.add(row_band(COLUMNS, cells, [[], [], [], label, [], [], [], []], shade=i % 2 == 1,
                          height=max(ROW, 4 + len(label) * 10.0)), again=[header])
    count = f"Total ({totals.sessions} séance{'s' if totals.sessions != 1 else ''})"
    total = total_band(COLUMNS, [count, "", "", "", "", euros(totals.gross), euros(totals.patient), euros(totals.cns)])
    gap = 18.0
    box = Band(gap + _BOX + _UNDER, (
        Box(LEFT, gap, RIGHT - LEFT, _BOX, fill=GREY, radius=4),
        Text(LEFT + 10, gap + 16, "Montant total des prestations", size=9.5),
        Text(RIGHT - 10, gap + 16, f"{euros(totals.gross)} €", size=9.5, align="right"),
        Text(LEFT + 10, gap + 32, "Réglé directement par la CNS au prestataire (part statutaire)", size=9.5),
        Text(RIGHT - 10, gap + 32, f"{euros(totals.cns)} €", size=9.5, align="right"),
        Text(LEFT + 10, gap + 50, "Reste à votre charge (participation personnelle)", size=11, bold=True),
        Text(RIGHT - 10, gap + 50, f"{euros(totals.patient)} €", size=11, bold=True, align="right")))
    flow.add(total, box, again=[header])
    return list(flow.close())


def _head(note: FeeNote, source: Source) -> Band:
    """The first page's top: title, who treated, the practice's and the patient's blocks."""
    header = source.header
    practice = source.practice
    executing = sorted({s.executing_provider for s in note.sessions})
    named = [f"{source.dietician(code)} ({code})" for code in executing if source.dietician(code)]
    marks = [
        Text(LEFT, 16, "Mémoire d'honoraires", size=18, bold=True),
        Text(RIGHT, 16, f"n° {note.number}", size=12, bold=True, align="right"),
        Text(LEFT, 32, fit("Diététicien(ne) : " + ", ".join(named) if named else
                           "Diététique · tiers payant : la CNS règle sa part directement au prestataire", RIGHT - LEFT, 9),
             grey=True),
    ]
    top, height = 54.0, 74.0
    half = (RIGHT - LEFT - 12) / 2
    x2 = LEFT + half + 12
    marks += [Box(LEFT, top, half, height, stroke=DARK, radius=4), Box(x2, top, half, height, stroke=DARK, radius=4),
              Text(LEFT + 8, top + 14, "PRESTATAIRE", size=7.5, bold=True, grey=True)]
    if practice:  # the practice's identity (config [practice]) in place of the bare code
        contact = " · ".join(x for x in (f"Tél. {practice.phone}" if practice.phone else "",
                                          f"IBAN {practice.iban}" if practice.iban else "") if x)
        marks += [
            Text(LEFT + 8, top + 27, fit(practice.name, half - 16, 10, True), size=10, bold=True),
            Text(LEFT + 8, top + 39, fit(", ".join(practice.address), half - 16, 8), size=8),
            Text(LEFT + 8, top + 50, fit(contact, half - 16, 8), size=8),
            Text(LEFT + 8, top + 62, fit(f"Code CNS {header.provider} · fichier du {french_date(header.created.date())}"
                                         f" n° {header.sequence}", half - 16, 8), size=8, grey=True)]
    else:
        marks += [
            Text(LEFT + 8, top + 30, f"Code prestataire CNS : {header.provider}", size=10),
            Text(LEFT + 8, top + 46, f"Fichier de facturation du {french_date(header.created.date())}", size=9),
            Text(LEFT + 8, top + 60, f"n° de séquence {header.sequence}", size=9, grey=True)]
    marks += [
        Text(x2 + 8, top + 14, "PATIENT", size=7.5, bold=True, grey=True),
        Text(x2 + 8, top + 30, fit(f"{note.last_name} {note.first_name}".strip() or "—", half - 16, 11, True), size=11,
             bold=True),
        Text(x2 + 8, top + 46, f"Matricule : {show_matricule(note.matricule, source.mask_matricule)}", size=10),
        Text(x2 + 8, top + 60, f"Titre de prise en charge : {note.certificate_number}", size=9),
        Text(LEFT, top + height + 22, "Séances", size=11, bold=True),
    ]
    return Band(_FIRST, tuple(marks))
