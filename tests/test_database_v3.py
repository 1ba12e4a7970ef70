"""Database version 3: payments applied by batch (the latest line imported decides), month
totals kept by import, and the migration of a version-2 database."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from cns_exchange.store import database
from conftest import EXAMPLES

BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"
PAYMENT = EXAMPLES / "CNS_DEC_20261125_000001.xml"
DISPUTE = re.compile(rb"<Contestation>.*?</Contestation>", re.S)


def _corrected(tmp_path):
    """A second statement for the same billing file: the disputed line is now paid in full."""
    text = PAYMENT.read_bytes()
    assert len(DISPUTE.findall(text)) == 1
    text = DISPUTE.sub(b"<MontantAccepte>55.55</MontantAccepte>", text)
    text = text.replace(b"<NumeroSequence>1</NumeroSequence>", b"<NumeroSequence>2</NumeroSequence>")
    path = tmp_path / "CNS_DEC_20261126_000002.xml"
    path.write_bytes(text)
    return path


def _months(db) -> tuple[list, list]:
    """(what import kept in month_totals, what the sessions of files not rejected sum to) per month."""
    conn = sqlite3.connect(db)
    try:
        kept = conn.execute("SELECT month, sessions, billed, paid, disputed, gross, patient_share FROM month_totals "
                            "WHERE sessions > 0 ORDER BY month").fetchall()
        summed = conn.execute("SELECT substr(session_date, 1, 7), count(*), sum(cns_share), coalesce(sum(paid), 0), "
                              "coalesce(sum(disputed), 0), sum(gross), sum(patient_share) "
                              "FROM sessions s JOIN documents d ON d.id = s.document_id "
                              "WHERE d.rejected = 0 GROUP BY 1 ORDER BY 1").fetchall()
        return kept, summed
    finally:
        conn.close()


def _per_month(run) -> dict:
    status = json.loads(run("status", "--json").stdout)
    return {m["month"]: (m["sessions"], m["billed"], m["paid"], m["disputed"]) for m in status["per_month"]}


@pytest.mark.parametrize("order", ["billing-first", "payments-first", "between"])
def test_month_totals_are_the_sums_of_the_sessions_in_any_order(run, data, tmp_path, order):
    corrected = _corrected(tmp_path)
    files = {"billing-first": [BILLING, PAYMENT, corrected], "payments-first": [PAYMENT, corrected, BILLING],
             "between": [PAYMENT, BILLING, corrected]}[order]
    db = data / "practice.sqlite"
    for path in files:
        assert run("import", str(path)).exit_code == 0
        kept, summed = _months(db)
        assert kept == summed
    # Whatever the order, the corrected statement (imported last of the two) decides, and
    # the dispute it lifted is no longer listed.
    assert _per_month(run) == {"2026-10": (2, "176.00", "176.00", "0.00"), "2026-11": (6, "384.86", "384.86", "0.00")}
    assert json.loads(run("status", "--json").stdout)["disputed"] == []


def test_a_corrected_statement_replaces_the_earlier_one(run, data, tmp_path):
    corrected = _corrected(tmp_path)
    assert run("import", str(BILLING), str(PAYMENT)).exit_code == 0
    assert _per_month(run)["2026-11"] == (6, "384.86", "329.31", "55.55")
    assert run("import", str(corrected)).exit_code == 0
    assert _per_month(run)["2026-11"] == (6, "384.86", "384.86", "0.00")
    conn = sqlite3.connect(data / "practice.sqlite")
    # The session's amounts name the line that set them: the corrected statement's.
    decided = conn.execute("""SELECT d.name FROM sessions s JOIN fee_notes f ON f.id = s.fee_note_id
                              JOIN payment_lines p ON p.id = s.payment_line_id JOIN payments y ON y.id = p.payment_id
                              JOIN documents d ON d.id = y.document_id
                              WHERE f.certificate_number = 'TPC-2026-000087' AND s.line_no = 2""").fetchall()
    assert decided == [(corrected.name,)]
    assert conn.execute("SELECT count(*) FROM sessions WHERE disputed IS NOT NULL").fetchone()[0] == 0
    # Importing the first statement again changes nothing: it is already there.
    assert "already imported" in run("import", str(PAYMENT)).stderr
    assert _per_month(run)["2026-11"] == (6, "384.86", "384.86", "0.00")


def _v2_database(path):
    """A database at version 2 with a billed session paid twice: once disputed, then in full,
    and the old import's way of seeing it (the first line set paid, later ones ignored)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for script in database.MIGRATIONS[:2]:
        for statement in database._statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.executescript("""
        INSERT INTO documents (id, kind, name, sha256, provider, created_at, sequence, version, imported_at)
            VALUES (1, 'billing', 'b.xml', 'b', '123456', '2026-11-20T09:00:00', 1, '1', 'now'),
                   (2, 'payment', 'p1.xml', 'p1', '123456', '2026-11-25T09:00:00', 1, '1', 'now'),
                   (3, 'payment', 'p2.xml', 'p2', '123456', '2026-11-26T09:00:00', 2, '1', 'now'),
                   (4, 'billing', 'b2.xml', 'b2', '123456', '2026-11-21T09:00:00', 2, '1', 'now'),
                   (5, 'ack', 'a.xml', 'a', '123456', '2026-11-21T09:05:00', 3, '1', 'now');
        INSERT INTO acknowledgements (document_id, file_name, file_sha256, received_at, accepted, acked_document_id)
            VALUES (5, 'b2.xml', 'b2', '2026-11-21T09:05:00', 0, 4);
        INSERT INTO fee_notes (id, document_id, number, certificate_number, matricule, last_name, first_name)
            VALUES (1, 1, 1, 'TPC-1', '1974091186700', '', ''), (2, 4, 1, 'TPC-1', '1974091186700', '', '');
        INSERT INTO sessions (id, fee_note_id, document_id, line_no, session_date, act, executing, gross, patient_share,
                              cns_share, paid, disputed)
            VALUES (1, 1, 1, 1, '2026-10-20', 'ZD11', '123456', 8889, 1067, 7822, 7822, NULL),
                   (2, 1, 1, 2, '2026-11-03', 'ZD13', '123456', 5555, 667, 4888, 0, 4888),
                   (3, 1, 1, 3, '2026-11-10', 'ZD13', '123456', 5555, 667, 4888, NULL, NULL),
                   (4, 2, 4, 1, '2026-11-17', 'ZD13', '123456', 5555, 667, 4888, NULL, NULL);
        INSERT INTO payments (id, document_id, billing_name, billing_sha256, billing_document_id, paid_on, reference)
            VALUES (1, 2, 'b.xml', 'b', 1, '2026-11-25', 'V1'), (2, 3, 'b.xml', 'b', 1, '2026-11-26', 'V2');
        INSERT INTO payment_lines (id, payment_id, fee_note_number, line_no, certificate_number, billed, accepted,
                                   reason_code, reason_label, session_id)
            VALUES (1, 1, 1, 1, 'TPC-1', 7822, 7822, NULL, NULL, 1),
                   (2, 1, 1, 2, 'TPC-1', 4888, 0, 'C01', 'x', 2),
                   (3, 2, 1, 2, 'TPC-1', 4888, 4888, NULL, NULL, 2);
    """)
    conn.close()


def test_a_version_2_database_is_migrated(tmp_path):
    db = tmp_path / "old.sqlite"
    _v2_database(db)
    conn = database.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(database.MIGRATIONS) >= 3
        rows = conn.execute("SELECT id, paid, disputed, payment_line_id FROM sessions ORDER BY id").fetchall()
        # The latest line decides now: session 2's corrected line (3) pays it in full.
        assert [tuple(r) for r in rows] == [(1, 7822, None, 1), (2, 4888, None, 3), (3, None, None, None),
                                            (4, None, None, None)]
        # The second billing file was rejected: its session counts for nothing.
        assert conn.execute("SELECT id FROM documents WHERE rejected = 1").fetchall()[0][0] == 4
        kept = conn.execute("SELECT month, sessions, billed, paid, disputed FROM month_totals ORDER BY month").fetchall()
        assert [tuple(r) for r in kept] == [("2026-10", 1, 7822, 7822, 0), ("2026-11", 2, 9776, 4888, 0)]
        # Version 6: gross and patient share beside the CNS's share, summed from the sessions that count.
        assert [tuple(r) for r in conn.execute("SELECT month, gross - patient_share, billed FROM month_totals "
                                               "ORDER BY month")] == [("2026-10", 7822, 7822), ("2026-11", 9776, 9776)]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "payment_lines_unmatched" in indexes and not {"sessions_month", "payment_lines_session"} & indexes
    finally:
        conn.close()


def test_the_queries_in_the_database_documentation_run(run, data):
    from conftest import ROOT

    assert run("import", str(BILLING), str(PAYMENT)).exit_code == 0
    queries = re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "database.md").read_text("utf-8"), re.S)
    assert queries
    conn = sqlite3.connect(data / "practice.sqlite")
    for query in queries:
        conn.execute(query.replace("date('now', 'start of month', '-1 month')", "'2026-01-01'")).fetchall()
    rows = conn.execute(queries[0].replace("date('now', 'start of month', '-1 month')", "'2026-01-01'")).fetchall()
    assert [(r[0], r[3]) for r in rows] == [("TPC-2026-000087", "C01")]


def test_a_line_given_twice_in_one_statement_the_later_decides(run, data, tmp_path):
    # Two lines for one session in the same statement (the "latest per session" step).
    text = PAYMENT.read_bytes()
    block = re.search(rb"  <Ligne>\s*<NumeroMemoire>1</NumeroMemoire>\s*<NumeroLigne>1</NumeroLigne>.*?</Ligne>\n", text, re.S)
    later = block.group(0).replace(b"<MontantAccepte>78.22</MontantAccepte>",
                                   b"<Contestation><CodeMotif>C04</CodeMotif><Libelle>x</Libelle>"
                                   b"<MontantAccepte>0.00</MontantAccepte></Contestation>")
    assert later != block.group(0)
    twice = tmp_path / PAYMENT.name
    twice.write_bytes(text.replace(b"</JustificatifPaiement>", later + b"</JustificatifPaiement>"))
    assert run("import", str(BILLING), str(twice)).exit_code == 0
    kept, summed = _months(data / "practice.sqlite")
    assert kept == summed
    assert _per_month(run)["2026-10"] == (2, "176.00", "97.78", "78.22")


REQUEST = EXAMPLES / "123456_DTP_20261120_000001.xml"
ANSWERS = EXAMPLES / "CNS_RTP_20261120_000002.xml"
ACK = EXAMPLES / "CNS_ACR_20261120_000001.xml"


@pytest.mark.parametrize("ack_first", [False, True])
def test_a_billing_file_the_cns_rejected_bills_nothing(run, data, tmp_path, ack_first):
    rejected = tmp_path / ACK.name
    rejected.write_bytes(ACK.read_bytes().replace(b"<Statut>accepte</Statut>", b"<Statut>rejete</Statut>"))
    assert run("import", str(REQUEST), str(ANSWERS)).exit_code == 0
    for path in ([rejected, BILLING] if ack_first else [BILLING, rejected]):
        assert run("import", str(path)).exit_code == 0
    status = json.loads(run("status", "--json").stdout)
    assert status["billed_awaiting_payment"] == [] and status["per_month"] == []
    assert {c["certificate"]: c["sessions_billed"] for c in status["certificates"]} == {
        "TPC-2026-000101": 0, "TPC-2026-000102": 0}
    kept, summed = _months(data / "practice.sqlite")
    assert kept == summed == []
    # The sessions can be billed again, in a corrected file: their count is not used up.
    r = run("build-invoice", "--provider", "123456", str(EXAMPLES / "sessions.csv"))
    assert "CRT03" not in r.stderr, r.stderr
    # A payment statement for the rejected file changes no total either.
    assert run("import", str(PAYMENT)).exit_code == 0
    kept, summed = _months(data / "practice.sqlite")
    assert kept == summed == []
