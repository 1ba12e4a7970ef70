"""Exports for people outside cnsx: the accountant's list of billed sessions.

One row per billed session (each session once, however often it was billed:
``sessions.counted``), with its fee note, patient, amounts and, once the CNS paid, the payment
statement's date and bank reference. Rows are plain dicts with amounts in cents, produced one
at a time (a year of a busy practice need not be held in memory); the CLI writes them with
:class:`cns_exchange.rows.csvout.CsvWriter` in the French Excel convention.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from cns_exchange import clock
from cns_exchange.store.database import BILLED_SESSIONS, fee_note_name
from cns_exchange.errors import UsageError
from cns_exchange.i18n import _
from cns_exchange.domain.nomenclature import add_months

#: The columns of the accounting export, in order (docs/cli.md, cnsx export accounting).
ACCOUNTING_COLUMNS = (
    "billing_file", "billed_on", "fee_note", "certificate", "matricule", "last_name", "first_name",
    "session_date", "act", "gross", "patient_share", "cns_share", "paid", "disputed", "reason_code",
    "paid_on", "payment_reference",
)
#: The columns holding amounts (cents in the rows, decimal amounts in the CSV).
ACCOUNTING_AMOUNTS = ("gross", "patient_share", "cns_share", "paid", "disputed")


@dataclass(frozen=True)
class Period:
    """The session dates exported: from ``start`` to ``end``, both included (None: unbounded)."""

    start: date | None = None
    end: date | None = None


def period(month: str | None = None, start: str | None = None, end: str | None = None) -> Period:
    """The period asked for: a month (``YYYY-MM``), or ``--from``/``--to`` days (either may be
    left out). Raises UsageError for a month given with days, a value that is no date, or a
    period that ends before it starts."""
    if month is not None:
        if start is not None or end is not None:
            raise UsageError(_("--month with --from/--to: one period at a time"), _("give --month, or --from and --to"))
        try:
            first = clock.day("--month", f"{month}-01") if len(month) == 7 else None
        except UsageError:
            first = None
        if first is None:
            raise UsageError(_("--month '{month}' is not a month").format(month=month), _("give it as YYYY-MM, e.g. 2026-11"))
        return Period(first, add_months(first, 1) - timedelta(days=1))
    asked = Period(clock.day("--from", start) if start else None, clock.day("--to", end) if end else None)
    if asked.start and asked.end and asked.end < asked.start:
        raise UsageError(_("--to {end} is before --from {start}").format(end=asked.end.isoformat(), start=asked.start.isoformat()),
                         _("swap them"))   # (the options' arguments as typed)
    return asked


def accounting_rows(conn: sqlite3.Connection, within: Period = Period()) -> Iterator[dict]:
    """Yield one dict per billed session whose date is within ``within`` (keys:
    :data:`ACCOUNTING_COLUMNS`), by session date, then billing file, fee note and line.
    Amounts are cents; ``paid``, ``paid_on`` and ``payment_reference`` are None while no
    payment statement covers the session, ``disputed`` and ``reason_code`` unless the CNS
    disputed it (the statement of the latest rank decides, docs/database.md). Sessions of a
    billing file the CNS rejected are not billed and are not listed."""
    bounds, params = [], []
    if within.start:
        bounds.append("s.session_date >= ?")
        params.append(within.start.isoformat())
    if within.end:
        bounds.append("s.session_date <= ?")
        params.append(within.end.isoformat())
    cursor = conn.execute(f"""
        SELECT d.name AS billing_file, substr(d.created_at, 1, 10) AS billed_on, f.number AS fee_note,
               f.certificate_number AS certificate, f.matricule,
               {fee_note_name("last_name")} AS last_name, {fee_note_name("first_name")} AS first_name,
               s.session_date, s.act, s.gross, s.patient_share, s.cns_share, s.paid, s.disputed,
               p.reason_code, y.paid_on, y.reference AS payment_reference
        FROM {BILLED_SESSIONS}
        LEFT JOIN payment_lines p ON p.id = s.payment_line_id
        LEFT JOIN payments y ON y.id = p.payment_id
        {"WHERE " + " AND ".join(bounds) if bounds else ""}
        ORDER BY s.session_date, d.name, f.number, s.line_no""", params)
    for row in cursor:
        yield dict(row)


def write_accounting_csv(rows, stream) -> int:
    """Write ``rows`` (of :func:`accounting_rows`) to the text ``stream`` as CSV in the French
    Excel convention (BOM, ``;``, decimal comma; no cell a spreadsheet runs as a formula),
    a header first. Returns the number of rows written."""
    from cns_exchange.rows.csvout import CsvWriter

    writer = CsvWriter(stream, ACCOUNTING_COLUMNS, french=True, amounts=ACCOUNTING_AMOUNTS)
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writedicts([row])
        count += 1
    return count
