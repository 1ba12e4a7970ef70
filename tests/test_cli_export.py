"""cnsx export accounting: one row per billed session for the accountant, in the French Excel
convention, from a database made by a real exchange through the sandbox."""

from __future__ import annotations

import csv
import io
import sqlite3
from decimal import Decimal

import pytest

from test_ledger import _billed_through_the_sandbox

COLUMNS = ["billing_file", "billed_on", "fee_note", "certificate", "matricule", "last_name", "first_name",
           "session_date", "act", "gross", "patient_share", "cns_share", "paid", "disputed", "reason_code",
           "paid_on", "payment_reference"]


def _read(data: bytes) -> list[dict]:
    """The CSV as Excel in French reads it: BOM, ';' between cells."""
    assert data.startswith(b"\xef\xbb\xbf"), data[:20]
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))


def _euros(cell: str) -> Decimal | None:
    assert "." not in cell, cell  # a decimal comma, never a point
    return Decimal(cell.replace(",", ".")) if cell else None


@pytest.fixture
def exchanged(run, dropbox, tmp_path):
    """The example exchange, billed and paid through the sandbox; returns the database."""
    _billed_through_the_sandbox(run, tmp_path / "outbox")
    return tmp_path / "data" / "practice.sqlite"


def test_the_export_has_the_columns_and_the_amounts_of_the_database(run, exchanged):
    r = run("export", "accounting")
    assert r.exit_code == 0, r.stderr
    rows = _read(r.stdout_bytes)
    assert list(rows[0].keys()) == COLUMNS
    conn = sqlite3.connect(exchanged)
    expected = conn.execute("""
        SELECT s.session_date, s.act, f.matricule, s.gross, s.patient_share, s.cns_share, s.paid, s.disputed,
               y.paid_on, y.reference
        FROM sessions s JOIN fee_notes f ON f.id = s.fee_note_id
        LEFT JOIN payment_lines p ON p.id = s.payment_line_id LEFT JOIN payments y ON y.id = p.payment_id
        WHERE s.counted = 1 ORDER BY s.session_date, f.number, s.line_no""").fetchall()
    assert len(rows) == len(expected) == 8
    cents = lambda cell: None if _euros(cell) is None else int(_euros(cell) * 100)  # noqa: E731
    got = [(r["session_date"], r["act"], r["matricule"], cents(r["gross"]), cents(r["patient_share"]),
            cents(r["cns_share"]), cents(r["paid"]), cents(r["disputed"]), r["paid_on"] or None,
            r["payment_reference"] or None) for r in rows]
    assert got == expected
    # The sandbox paid some sessions and disputed others: both are there, with the bank's reference.
    assert any(r["paid_on"] and r["payment_reference"] for r in rows)
    assert any(r["disputed"] and _euros(r["disputed"]) > 0 and r["reason_code"] for r in rows)
    assert all(_euros(r["gross"]) == _euros(r["patient_share"]) + _euros(r["cns_share"]) for r in rows)
    assert r.stderr.strip().endswith("8 billed sessions → stdout")


def test_a_month_exports_only_its_sessions_and_a_file_is_written_once(run, exchanged, tmp_path):
    target = tmp_path / "books" / "2026-10.csv"
    target.parent.mkdir()
    r = run("export", "accounting", "--month", "2026-10", "-o", str(target))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    rows = _read(target.read_bytes())
    assert [row["session_date"] for row in rows] == ["2026-10-20", "2026-10-27"]
    assert target.stat().st_mode & 0o777 == 0o600
    again = run("export", "accounting", "--month", "2026-10", "-o", str(target))
    assert again.exit_code == 2 and "never overwrites" in again.stderr
    days = run("export", "accounting", "--from", "2026-11-04", "--to", "2026-11-05")
    assert sorted(row["session_date"] for row in _read(days.stdout_bytes)) == ["2026-11-04", "2026-11-05"]
    assert [p.name for p in target.parent.iterdir()] == ["2026-10.csv"]  # no temp file left


@pytest.mark.parametrize("args", [["--month", "2026-13"], ["--month", "2026-1"], ["--from", "yesterday"],
                                  ["--month", "2026-10", "--to", "2026-11-01"], ["--from", "2026-11-02", "--to", "2026-11-01"]])
def test_a_period_that_is_no_period_is_a_usage_error(run, exchanged, args):
    r = run("export", "accounting", *args)
    assert r.exit_code == 2, r.stderr
    assert r.stdout == ""


def test_no_database_yet_is_exit_3(run, data):
    r = run("export", "accounting")
    assert r.exit_code == 3 and "no practice database yet" in r.stderr


def test_a_name_a_spreadsheet_would_run_is_written_harmless(run, exchanged):
    conn = sqlite3.connect(exchanged)
    with conn:
        conn.execute("UPDATE fee_notes SET last_name = '=HYPERLINK(\"http://x\")', first_name = '@SUM(A1)'")
    rows = _read(run("export", "accounting").stdout_bytes)
    assert {r["last_name"] for r in rows} == {"'=HYPERLINK(\"http://x\")"}
    assert {r["first_name"] for r in rows} == {"'@SUM(A1)"}


def test_the_french_writer_writes_negative_amounts_as_numbers_not_quoted_formulas():
    from cns_exchange.rows.csvout import CsvWriter

    out = io.StringIO(newline="")
    writer = CsvWriter(out, ["label", "amount", "other"], french=True, amounts=["amount", "other"])
    writer.writeheader()
    writer.writedicts([{"label": "-x", "amount": -1250, "other": None}, {"label": "a;b", "amount": 5, "other": 123456}])
    assert out.getvalue() == "\ufefflabel;amount;other\r\n'-x;-12,50;\r\n\"a;b\";0,05;1234,56\r\n"
