"""The status report of the practice database (cnsx status --pdf), laid out as bands
(pdf.layout) and drawn: one table per section of :func:`cns_exchange.store.status.status`,
and the months as a chart drawn with reportlab's own graphics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import IO, Any

from cns_exchange.i18n import Msg
from cns_exchange.pdf.layout import (FONT, LEFT, RIGHT, ROW, Band, Column, Document, Flow, Graphic, Page, Text, draw,
                                     euros, fit, french, french_date, header_band, heading_band, row_band, total_band,
                                     wrap)


@dataclass
class StatusHeading:
    """What the status report says about itself: whose, when, which selection, which data."""

    providers: list[str]        # the provider codes found in the database
    today: date                 # the day the status is computed for (ages, expiry)
    printed: datetime           # the PDF's creation date
    data_sha256: str            # SHA-256 of the canonical JSON of the sections shown (status.data_sha256)
    certificate: str | None = None
    patient: str | None = None  # the matricule as shown (masked or not)
    practice: Any = None        # config.Practice (name, address, phone, iban, dieticians) or None


#: Each section of status.status(): its key, its title, its columns (510 points, the width
#: between the margins) and, for the months, the columns summed on a total line.
SECTIONS: list[tuple[str, str, list[Column]]] = [
    ("due", "À faire bientôt : titres qui expirent ou s'épuisent, demandes sans réponse", [
        Column("Quoi", 46, key="what", kind="state"), Column("Référence", 80, key="reference"),
        Column("Matricule", 76, key="matricule"), Column("Patient", 100, key="patient", kind="wrap"),
        Column("Date", 53, key="date", kind="date"), Column("Jours", 40, "right", key="days"),
        Column("Restantes", 45, "right", key="sessions_remaining"), Column("Motif", 70, key="reason", kind="state")]),
    ("requests_awaiting_answer", "Demandes en attente de réponse", [
        Column("Demande", 60, key="request_ref"), Column("Matricule", 76, key="matricule"),
        Column("Patient", 94, key="patient", kind="wrap"), Column("Prescription", 56, key="prescription_date", kind="date"),
        Column("Traitement", 60, key="treatment"), Column("Pathologies", 58, key="pathologies", kind="wrap"),
        Column("Envoyée le", 56, key="sent_at", kind="day"), Column("Âge (jours)", 50, "right", key="age_days")]),
    ("refused_requests", "Demandes refusées", [
        Column("Demande", 70, key="request_ref"), Column("Matricule", 80, key="matricule"),
        Column("Patient", 110, key="patient", kind="wrap"), Column("Motifs du refus", 250, key="reasons", kind="wrap")]),
    ("certificates", "Titres de prise en charge", [
        Column("Titre", 84, key="certificate"), Column("Matricule", 76, key="matricule"),
        Column("Patient", 96, key="patient", kind="wrap"),
        Column("Valable du", 53, key="valid_from", kind="date"), Column("au", 53, key="valid_to", kind="date"),
        Column("Aut.", 34, "right", key="sessions_authorised"),
        Column("Fact.", 34, "right", key="sessions_billed"),
        Column("Rest.", 34, "right", key="sessions_remaining"), Column("État", 46, key="state", kind="state")]),
    ("billed_awaiting_payment", "Séances facturées en attente de paiement", [
        Column("Titre", 84, key="certificate"), Column("Matricule", 76, key="matricule"),
        Column("Patient", 88, key="patient", kind="wrap"),
        Column("Séance", 53, key="session_date", kind="date"), Column("Acte", 34, key="act"),
        Column("Part CNS €", 56, "right", key="cns_share", kind="amount"),
        Column("Fichier de facturation", 119, key="billing_file")]),
    ("disputed", "Lignes contestées par la CNS", [
        Column("Titre", 78, key="certificate"), Column("Matricule", 74, key="matricule"),
        Column("Patient", 78, key="patient", kind="wrap"),
        Column("Séance", 53, key="session_date", kind="date"), Column("Acte", 30, key="act"),
        Column("Motif", 30, key="reason_code"), Column("Libellé du motif", 79, key="reason_label", kind="wrap"),
        Column("Facturé €", 44, "right", key="billed", kind="amount"),
        Column("Accepté €", 44, "right", key="accepted", kind="amount")]),
    ("per_month", "Montants par mois", [
        Column("Mois", 60, key="month", kind="month"), Column("Séances", 50, "right", key="sessions"),
        Column("Brut €", 80, "right", key="gross", kind="amount"),
        Column("Part patient €", 80, "right", key="patient_share", kind="amount"),
        Column("Part CNS €", 80, "right", key="billed", kind="amount"),
        Column("Payé €", 80, "right", key="paid", kind="amount"),
        Column("Contesté €", 80, "right", key="disputed", kind="amount")]),
    ("final_reports_due", "Rapports diététiques finaux à envoyer au prescripteur", [
        Column("Titre", 78, key="certificate"), Column("Matricule", 73, key="matricule"),
        Column("Patient", 57, key="patient", kind="wrap"),
        Column("Prescr.", 47, key="prescriber"), Column("Valable au", 53, key="valid_to", kind="date"),
        Column("Aut.", 22, "right", key="sessions_authorised"), Column("Fact.", 22, "right", key="sessions_billed"),
        Column("Dern. s.", 53, key="last_session", kind="date"), Column("Traitement", 52, key="ended", kind="state"),
        Column("Dû depuis", 53, key="due_since", kind="date")]),
    # Only with --patient: the patient's history, in date order; each row's detail on a line
    # of its own under its cells, from the certificate's column to the right margin.
    ("history", "Historique du patient (montants en €)", [
        Column("Date", 53, key="date", kind="date"), Column("Quoi", 46, key="event", kind="state"),
        Column("Titre", 78, key="certificate"), Column("Référence", 101, key="reference", kind="wrap"),
        Column("Acte", 28, key="act"), Column("Brut", 40, "right", key="gross", kind="amount"),
        Column("Patient", 40, "right", key="patient_share", kind="amount"),
        Column("CNS", 40, "right", key="cns_share", kind="amount"),
        Column("Payé", 40, "right", key="paid", kind="amount"),
        Column("Contesté", 44, "right", key="disputed", kind="amount"),
        Column("Détail", 411, key="detail", kind="under")]),
    # Only with --year: not drawn at all when status() did not give it.
    ("it_flat_rate", "Forfait informatique (art. 38 de la convention)", [
        Column("Année", 34, key="year"), Column("Prestataire(s)", 76, key="providers", kind="wrap"),
        Column("Du", 54, key="period_from", kind="date"), Column("Au", 54, key="period_to", kind="date"),
        Column("Ordonnances", 60, "right", key="prescriptions"),
        Column("En attente", 50, "right", key="awaiting_payment"), Column("Seuil", 36, "right", key="threshold"),
        Column("Droit", 34, key="qualifies", kind="yesno"), Column("Montant €", 58, "right", key="amount", kind="amount"),
        Column("Année close", 54, key="year_ended", kind="yesno")]),
]
_TOTALS = {"per_month": ("sessions", "gross", "patient_share", "billed", "paid", "disputed")}
#: The report's own words for some states and events (in narrow columns, or where the
#: catalogue's word means something else: "sessions" is "séances" there); every other word of
#: a "state" column is the catalogue's, in French (as the terminal shows it in French).
_STATES = {"refused": "refus", "fee note": "mémoire", "dispute": "contesté", "final report sent": "rapport final",
           "sessions": "≤ 1 séance"}
_MASCULINE = {"per_month", "final_reports_due", "history"}   # "… : aucun"
_NEXT = 30.0       # on the following pages (a short title)
_HEADING = 26.0    # a section's title (with ": aucune" when it is empty)


def status_columns() -> dict[str, list[str]]:
    """Return, per section of the status report, the keys of the rows its columns show."""
    return {name: [col.key for col in columns] for name, _, columns in SECTIONS}


def _cell(value, column: Column) -> str:
    """The text of a cell of the status report: amounts (cents) in euros the French way, dates
    and months the French way, states and messages (i18n.Msg: a history's detail) in French,
    the days in a message too (i18n.tr writes them)."""
    if value is None:
        return ""
    if column.kind == "amount":
        return euros(value)
    if isinstance(value, Msg):
        return french(value)
    text = str(value)
    if column.kind in ("date", "day") and len(text) >= 10 and text[4] == "-" and text[7] == "-":
        return _french_day(text)
    if column.kind == "month" and len(text) == 7 and text[4] == "-":
        return f"{text[5:7]}/{text[:4]}"
    if column.kind == "state":
        return _STATES.get(text) or french(text)
    if column.kind == "yesno":
        return "oui" if value else "non"
    return text


def _french_day(text: str) -> str:
    """'2026-11-20' (or the day of '2026-11-20T09:00:00+01:00') as '20/11/2026'."""
    return f"{text[8:10]}/{text[5:7]}/{text[:4]}"


def layout(sections: dict[str, list[dict]], heading: StatusHeading) -> list[Page]:
    """The pages of the report: the title and facts, then one table per section. A section's
    title never ends a page; a table going on to the next page has its title "(suite)" and
    its column titles again; the months' total line is under column titles, then the chart."""
    title, _ = _titles(heading)
    flow = Flow(first=[_head(heading)], running=[heading_band(f"{title} (suite)", _NEXT, dy=16)])
    for name, caption, columns in SECTIONS:
        if name not in sections:
            continue
        rows = sections[name]
        if not rows:
            flow.add(heading_band(f"{caption} : aucun" if name in _MASCULINE else f"{caption} : aucune", _HEADING))
            continue
        under = [col for col in columns if col.kind == "under"]   # on lines of their own
        columns = [col for col in columns if col.kind != "under"]
        header = header_band(columns, under)
        again = [heading_band(f"{caption} (suite)", _HEADING), header]
        for i, row in enumerate(rows):
            cells = [_cell(row.get(col.key), col) for col in columns]
            lines = [wrap(cell, col.width - 6, 8) if col.kind == "wrap" else [] for col, cell in zip(columns, cells)]
            below = [(col, wrap(text, col.width - 6, 8)) for col in under if (text := _cell(row.get(col.key), col))]
            depth = max([1] + [len(x) for x in lines]) + sum(len(x) for _, x in below)
            height = max(ROW, 4 + depth * 10.0)
            band = row_band(columns, cells, lines, shade=i % 2 == 1, height=height, under=below)
            if i == 0:   # the title and the column titles stay with the first row
                flow.add(heading_band(f"{caption} ({len(rows)})", _HEADING), header, band)
            else:
                flow.add(band, again=again)
        summed = _TOTALS.get(name)
        if summed:
            cells = ["Total"]
            for col in columns[1:]:
                if col.key not in summed:
                    cells.append("")
                elif col.kind == "amount":
                    cells.append(_cell(sum(r[col.key] or 0 for r in rows), col))
                else:
                    cells.append(str(sum(int(r[col.key]) for r in rows)))
            flow.add(total_band(columns, cells, gap=2), again=again)
        if name == "per_month":   # and as a chart: billed, paid, disputed by month, every month
            months = every_month(rows)[-_CHART_MONTHS:]
            flow.add(Band(_CHART_HEIGHT, (Graphic(LEFT, _CHART_HEIGHT - 4, _month_chart(months)),)))
    return list(flow.close())


def _titles(heading: StatusHeading) -> tuple[str, str]:
    """The report's title, and what it says of the selection in the metadata ('' for all)."""
    providers = ", ".join(heading.providers) or "—"
    scope = (" (un titre de prise en charge)" if heading.certificate else " (un patient)" if heading.patient else "")
    return f"État du cabinet {providers} au {french_date(heading.today)}", scope


def _head(heading: StatusHeading) -> Band:
    """The first page's top: the title and the facts (the practice, which selection, when)."""
    day = french_date(heading.today)
    if heading.certificate:
        selection = f"titre de prise en charge {heading.certificate}"
    elif heading.patient:
        selection = f"patient de matricule {heading.patient}"
    else:
        selection = "tout le cabinet (titres valables, ou expirés depuis 30 jours au plus)"
    practice = heading.practice
    named = practice.dieticians if practice else {}
    providers = ", ".join(f"{code} ({named[code]})" if code in named else code for code in heading.providers)
    facts = [("Code prestataire", providers or "—"), ("Sélection", selection),
             ("Établi le", f"{day}, d'après la base de données du cabinet")]
    if practice:  # the practice's identity (config [practice]) first
        facts[:0] = [("Cabinet", " · ".join([practice.name, *practice.address])),
                     ("Téléphone · IBAN", " · ".join(x for x in (practice.phone, practice.iban) if x) or "—")]
    marks = [Text(LEFT, 16, "État du cabinet", size=18, bold=True),
             Text(RIGHT, 16, f"au {day}", size=12, bold=True, align="right"),
             Text(LEFT, 32, "Demandes, titres de prise en charge, facturation et paiements CNS · diététique", grey=True)]
    dy = 54.0
    for label, value in facts:
        marks += [Text(LEFT, dy, label, grey=True),
                  Text(LEFT + 100, dy, fit(value, RIGHT - LEFT - 100, 9),
                       bold=label == "Sélection" and bool(heading.certificate or heading.patient))]
        dy += 13
    return Band(dy - 13 + _FACTS_UNDER, tuple(marks))


_FACTS_UNDER = 20.0   # points between the last fact's baseline and the first section


_CHART_HEIGHT = 190.0     # points the month chart takes, with its legend
_CHART_MONTHS = 24        # the latest months drawn, empty ones too (the table lists those with something)


def every_month(rows: list[dict]) -> list[dict]:
    """The rows of the months table (status' per_month: the months with something in them,
    in order) with every month between the first and the last, a month without a row as a row
    of zeros: the month chart's axis is a time axis."""
    if not rows:
        return []
    given = {row["month"]: row for row in rows}
    first, last = min(given), max(given)
    year, month = int(first[:4]), int(first[5:7])
    months = []
    while True:
        key = f"{year:04d}-{month:02d}"
        months.append(given.get(key) or {**{column: 0 for column in rows[0]}, "month": key})
        if key >= last:
            return months
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _month_chart(rows: list[dict]):
    """Return a reportlab Drawing of the CNS's share billed, paid and disputed by month (euros)."""
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.charts.legends import Legend
    from reportlab.graphics.shapes import Drawing
    from reportlab.lib import colors

    width = RIGHT - LEFT
    drawing = Drawing(width, _CHART_HEIGHT - 10)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 46, 34, width - 56, _CHART_HEIGHT - 64
    chart.data = [[(r[key] or 0) / 100 for r in rows] for key in ("billed", "paid", "disputed")]
    chart.categoryAxis.categoryNames = [_cell(r["month"], Column("", 0, kind="month")) for r in rows]
    chart.categoryAxis.labels.fontName = chart.valueAxis.labels.fontName = FONT
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
    legend.fontName, legend.fontSize = FONT, 7.5
    legend.alignment, legend.columnMaximum, legend.dx, legend.dy = "right", 1, 8, 8
    legend.deltax = 110
    legend.colorNamePairs = list(zip(palette, ("Facturé (part CNS) €", "Payé €", "Contesté €")))
    drawing.add(legend)
    return drawing


def write_status(out: IO[bytes], sections: dict[str, list[dict]], heading: StatusHeading) -> int:
    """Draw the status report of the practice database as an A4 PDF into ``out``; return its page count.

    One table per section of :func:`cns_exchange.store.status.status` (as given: matricules already
    masked or not; amounts in cents), long tables split over pages with their column titles
    repeated, amounts to the cent as in the JSON output (written the French way), and a total
    line under the months.
    The title names the provider code(s), the day and the selection (one certificate or
    patient); the metadata and every page's footer carry ``heading.data_sha256``. No patient
    data goes into the metadata.
    """
    title, scope = _titles(heading)
    providers = ", ".join(heading.providers) or "—"
    document = Document(title=title + scope, author=f"Prestataire {providers}",
                        subject=f"{title}{scope}, données de la base du cabinet, data SHA-256 {heading.data_sha256}",
                        keywords=f"CNS, tiers payant, état, data-sha256:{heading.data_sha256}",
                        footer="Données affichées (JSON canonique) · data SHA-256 :", sha256=heading.data_sha256,
                        printed=heading.printed)
    return draw(out, document, layout(sections, heading))
