"""The summary statement (relevé récapitulatif) of a billing file, laid out as bands (pdf.layout)
and drawn as the fee notes are read: one page of bands in memory at a time."""

from __future__ import annotations

from typing import IO, Iterable, Iterator

from cns_exchange.domain.identifiers import show_matricule
from cns_exchange.domain.model import FeeNote
from cns_exchange.pdf.feenote import Source, Totals
from cns_exchange.pdf.layout import (GREY, LEFT, RIGHT, Band, Box, Column, Flow, Page, Text, draw, euros, fit,
                                     french_moment, header_band, heading_band, row_band, total_band)

COLUMNS = [
    Column("N°", 22), Column("Titre", 72), Column("Patient", 100), Column("Matricule", 66),
    Column("Séances", 34, "right"), Column("Du", 38), Column("Au", 38),
    Column("Brut €", 46, "right"), Column("Patient €", 44, "right"), Column("CNS €", 50, "right"),
]   # 510 points: the width between the margins
#: The sessions by executing provider, named as the config's [practice] names them.
BY_PROVIDER = [
    Column("Exécutant", 60), Column("Diététicien(ne)", 220), Column("Séances", 50, "right"),
    Column("Brut €", 60, "right"), Column("Patient €", 60, "right"), Column("CNS €", 60, "right"),
]
_ROW = 13.0      # a fee note's row
_FIRST = 160.0   # points above the table on the first page
_NEXT = 40.0
_BOX = 66.0      # the totals box
_UNDER = 14.0    # room kept under it


def write_summary(out: IO[bytes], notes: Iterable[FeeNote], source: Source) -> Totals:
    """Draw the summary statement (relevé récapitulatif) of a billing file into ``out``.

    One row per fee note (number, certificate, patient, matricule masked unless asked
    otherwise, sessions, first and last date, gross, patient and CNS shares), the header
    data, and the totals; when the config names the practice's dieticians, the sessions by
    executing provider with their names. ``notes`` is consumed as it comes (the file is read
    streaming). Returns the totals drawn, for the caller to check against the header.
    """
    totals = Totals()
    document = source.document(f"Relevé récapitulatif — {source.name}",
                               f"Relevé récapitulatif du fichier de facturation {source.name}, SHA-256 {source.sha256}")
    draw(out, document, layout(notes, source, totals))
    return totals


def layout(notes: Iterable[FeeNote], source: Source, totals: Totals) -> Iterator[Page]:
    """The pages of the summary, each yielded as soon as it is full; ``totals`` is added to
    as the fee notes go by."""
    header = header_band(COLUMNS)
    flow = Flow(first=[_head(source), header],
                running=[heading_band(f"Relevé récapitulatif (suite) — {source.name}", _NEXT, dy=16)])
    by_provider: dict[str, list[int]] = {}   # executing provider -> sessions, gross, patient, CNS
    for index, note in enumerate(notes):
        before = (totals.gross, totals.patient, totals.cns)
        totals.add(note)
        for s in note.sessions:
            sums = by_provider.setdefault(s.executing_provider, [0, 0, 0, 0])
            for k, value in enumerate((1, s.gross, s.patient_share, s.cns_share)):
                sums[k] += value
        days = [s.session_date for s in note.sessions]
        cells = [str(note.number), note.certificate_number, f"{note.last_name} {note.first_name}".strip(),
                 show_matricule(note.matricule, source.mask_matricule), str(len(note.sessions)),
                 f"{min(days):%d/%m/%y}" if days else "", f"{max(days):%d/%m/%y}" if days else "",
                 euros(totals.gross - before[0]), euros(totals.patient - before[1]), euros(totals.cns - before[2])]
        flow.add(row_band(COLUMNS, cells, shade=index % 2 == 1, size=7, height=_ROW), again=[header])
        yield from flow.finished()
    total = total_band(COLUMNS, ["Total", "", f"{totals.notes} mémoire{'s' if totals.notes != 1 else ''}", "",
                                 str(totals.sessions), "", "", euros(totals.gross), euros(totals.patient),
                                 euros(totals.cns)], size=7)
    gap = 14.0
    marks = [Box(LEFT, gap, RIGHT - LEFT, _BOX, fill=GREY, radius=4)]
    for k, (label, amount, big) in enumerate((("Total montant brut", totals.gross, False),
                                              ("Total participation personnelle (patients)", totals.patient, False),
                                              ("Total part statutaire (à régler par la CNS)", totals.cns, True))):
        size = 10.5 if big else 9.5
        marks += [Text(LEFT + 10, gap + 16 + 17 * k, label, size=size, bold=big),
                  Text(RIGHT - 10, gap + 16 + 17 * k, f"{euros(amount)} €", size=size, bold=big, align="right")]
    flow.add(total, Band(gap + _BOX + _UNDER, tuple(marks)), again=[header])
    if source.practice and source.practice.dieticians and by_provider:
        _by_provider(flow, source, by_provider)
    yield from flow.close()


def _by_provider(flow: Flow, source: Source, by_provider: dict[str, list[int]]) -> None:
    """The sessions of the file by executing provider, with the dietician's name (config)."""
    title = "Séances par prestataire exécutant"
    header = header_band(BY_PROVIDER)
    rows = []
    for i, (code, (sessions, gross, patient, cns)) in enumerate(sorted(by_provider.items())):
        rows.append(row_band(BY_PROVIDER, [code, source.dietician(code) or "—", str(sessions), euros(gross),
                                           euros(patient), euros(cns)], shade=i % 2 == 1))
    flow.add(heading_band(title, 26), header, rows[0])
    for row in rows[1:]:
        flow.add(row, again=[heading_band(f"{title} (suite)", 26), header])


def _head(source: Source) -> Band:
    """The first page's top: title and the billing file's facts."""
    header = source.header
    extra = header.extra
    provider = header.provider
    if source.dietician(provider):
        provider += f" — {source.dietician(provider)}"
    facts = [
        ("Fichier", source.name),
        ("Code prestataire", provider),
        ("Créé le", french_moment(header.created)),
        ("N° de séquence", str(header.sequence)),
        ("Version du schéma", header.version),
        ("Mémoires d'honoraires", extra.get("NombreMemoires", "")),
        ("Séances", extra.get("NombreSeances", "")),
    ]
    practice = source.practice
    if practice:  # the practice's identity (config [practice]) first
        facts[:0] = [("Cabinet", " · ".join([practice.name, *practice.address])),
                     ("Téléphone · IBAN", " · ".join(x for x in (practice.phone, practice.iban) if x) or "—")]
    marks = [Text(LEFT, 16, "Relevé récapitulatif", size=18, bold=True),
             Text(LEFT, 32, "Fichier de facturation · tiers payant · diététique", grey=True)]
    dy = 52.0
    for label, value in facts:
        marks += [Text(LEFT, dy, label, grey=True), Text(LEFT + 120, dy, fit(value, RIGHT - LEFT - 120, 9))]
        dy += 13 if len(facts) <= 8 else 11
    return Band(_FIRST, tuple(marks))
