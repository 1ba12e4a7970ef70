"""The ledger: one identity for a billed session, counted once; the CNS's corrections applied by
its own date and sequence, whatever the order of import; nothing dropped silently.

Every case was a bug of the first release (issue 12): each test fails on it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conftest import CREATED, EXAMPLES

REQUESTS_CSV = EXAMPLES / "requests.csv"
SESSIONS_CSV = EXAMPLES / "sessions.csv"
BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"
ANSWERS = EXAMPLES / "CNS_RTP_20261120_000002.xml"
PAYMENT = EXAMPLES / "CNS_DEC_20261125_000001.xml"
REQUEST = EXAMPLES / "123456_DTP_20261120_000001.xml"


def _status(run) -> dict:
    r = run("status", "--json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def _certificates(status) -> dict:
    return {c["certificate"]: (c["sessions_authorised"], c["sessions_billed"]) for c in status["certificates"]}


def _months(status) -> dict:
    return {m["month"]: (m["sessions"], m["billed"], m["paid"], m["disputed"]) for m in status["per_month"]}


def _night(run) -> str:
    """The CNS answers what was sent; its answers are fetched and imported. Returns import's stderr."""
    assert run("sandbox", "--once").exit_code == 0
    fetched = run("fetch")
    assert fetched.exit_code == 0, fetched.stderr
    imported = run("import")
    assert imported.exit_code == 0, imported.stderr
    return imported.stderr


def _edited(tmp_path, source, name, *edits):
    data = source.read_bytes()
    for old, new in edits:
        assert old in data, old
        data = data.replace(old, new, 1)
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- through the sandbox -------------------------------------------------------------------

def _billed_through_the_sandbox(run, outbox) -> Path:
    """The example exchange (as scripts/demo.sh): requests answered, the sessions billed on
    the certificates granted, and paid or disputed. Returns the billing file sent."""
    outbox.mkdir()
    assert run("build-request", str(REQUESTS_CSV), "--created", CREATED, "-o", str(outbox)).exit_code == 0
    assert run("upload", *map(str, outbox.glob("*_DTP_*.xml"))).exit_code == 0
    _night(run)
    # (the example bills a certificate the CNS never granted, which it disputes)
    built = run("build-invoice", str(SESSIONS_CSV), "--created", CREATED, "-o", str(outbox), "--no-certificate-check")
    assert built.exit_code == 0, built.stderr
    [billing] = outbox.glob("*_FAC_*.xml")
    assert run("upload", str(billing)).exit_code == 0
    _night(run)
    return billing


def test_a_billing_file_sent_again_with_force_is_counted_once(run, dropbox, tmp_path):
    billing = _billed_through_the_sandbox(run, tmp_path / "outbox")
    before = _status(run)
    # The same file sent again (a new sequence number, the same sessions): the CNS answers it too.
    forced = run("upload", "--force", str(billing))
    assert forced.exit_code == 0, forced.stderr
    assert "billed before and are counted once" in forced.stderr, forced.stderr
    _night(run)
    after = _status(run)
    assert _certificates(after) == _certificates(before)
    assert _months(after) == _months(before)  # billed, paid and disputed: not doubled
    assert after["disputed"] == before["disputed"]


def test_build_invoice_refuses_a_session_billed_already_unless_told_why(run, dropbox, tmp_path):
    billing = _billed_through_the_sandbox(run, tmp_path / "outbox")
    again = tmp_path / "again"
    again.mkdir()
    r = run("build-invoice", str(SESSIONS_CSV), "--created", CREATED, "-o", str(again), "--no-certificate-check")
    assert r.exit_code == 3
    assert "CRT06" in r.stderr and billing.name in r.stderr
    assert list(again.iterdir()) == []
    r = run("build-invoice", str(SESSIONS_CSV), "--created", CREATED, "-o", str(again), "--no-certificate-check",
            "--rebill", "CNS letter of 2026-11-30")
    assert r.exit_code == 0, r.stderr
    assert "billed again: CNS letter of 2026-11-30" in r.stderr
    conn = sqlite3.connect(tmp_path / "data" / "practice.sqlite")
    reasons = conn.execute("SELECT DISTINCT reason, earlier_name FROM rebills").fetchall()
    assert reasons == [("CNS letter of 2026-11-30", billing.name)]
    assert run("build-invoice", str(SESSIONS_CSV), "--created", CREATED, "-o", str(again), "--rebill", " ").exit_code == 2


# --- corrections and copies, from the example documents -------------------------------------

def test_the_same_billing_file_under_another_name_is_counted_once(run, data, tmp_path):
    assert run("import", str(REQUEST), str(ANSWERS), str(BILLING)).exit_code == 0
    before = _status(run)
    copy = _edited(tmp_path, BILLING, "123456_FAC_20261120_000009.xml",
                   (b"<NumeroSequence>1<", b"<NumeroSequence>9<"))
    r = run("import", str(copy))
    assert r.exit_code == 0, r.stderr
    assert "counted once" in r.stderr
    after = _status(run)
    assert _certificates(after) == _certificates(before) == {"TPC-2026-000101": (6, 4), "TPC-2026-000102": (6, 2)}
    assert _months(after) == _months(before)
    assert len(after["billed_awaiting_payment"]) == len(before["billed_awaiting_payment"])


def test_a_corrected_payment_statement_wins_whatever_the_order_of_import(run, data, tmp_path, monkeypatch):
    """The original says 88.89 paid on a line; the correction (a later sequence) says 0.00,
    disputed: imported first, it must still win over the original imported after it."""
    correction = _edited(tmp_path, PAYMENT, "CNS_DEC_20261125_000002.xml",
                         (b"<NumeroSequence>1<", b"<NumeroSequence>2<"))
    text = correction.read_text("utf-8")
    first_line = text.index("<Ligne>")
    billed = text[text.index("<MontantFacture>", first_line) + 16:text.index("</MontantFacture>", first_line)]
    accepted_at = text.index("<MontantAccepte>", first_line)
    end = text.index("</MontantAccepte>", accepted_at)
    total_accepted = text[text.index("<TotalAccepte>") + 14:text.index("</TotalAccepte>")]
    total_disputed = text[text.index("<TotalConteste>") + 15:text.index("</TotalConteste>")]
    cents = int(billed.replace(".", ""))
    new_total = int(total_accepted.replace(".", "")) - cents
    new_disputed = int(total_disputed.replace(".", "")) + cents
    text = (text[:accepted_at] + "<Contestation><CodeMotif>C03</CodeMotif><Libelle>correction</Libelle>"
            f"<MontantAccepte>0.00" + text[end:].replace("</MontantAccepte>", "</MontantAccepte></Contestation>", 1))
    text = text.replace(f"<TotalAccepte>{total_accepted}<", f"<TotalAccepte>{new_total // 100}.{new_total % 100:02d}<")
    text = text.replace(f"<TotalConteste>{total_disputed}<",
                        f"<TotalConteste>{new_disputed // 100}.{new_disputed % 100:02d}<")
    correction.write_text(text, "utf-8")
    assert run("validate", str(correction)).exit_code == 0, run("validate", str(correction)).stderr
    assert run("import", str(BILLING), str(correction)).exit_code == 0
    assert run("import", str(PAYMENT)).exit_code == 0  # the original, imported last
    status = _status(run)
    month = {m["month"]: m for m in status["per_month"]}
    assert any(d["reason_code"] == "C03" and d["accepted"] == "0.00" for d in status["disputed"]), status["disputed"]
    # The same two statements imported in the CNS's order, into another database: the same figures.
    monkeypatch.setenv("CNSX_DATA_DIR", str(tmp_path / "in-order"))
    assert run("import", str(BILLING), str(PAYMENT), str(correction)).exit_code == 0
    assert {m["month"]: m for m in _status(run)["per_month"]} == month


def test_a_certificate_granted_again_with_new_dates_is_applied_and_said_once(run, data, tmp_path):
    assert run("import", str(REQUEST), str(ANSWERS)).exit_code == 0
    answers = ANSWERS.read_text("utf-8")
    number = answers[answers.index("<NumeroTitre>") + 13:answers.index("</NumeroTitre>")]
    valid_to = answers[answers.index("<DateFinValidite>") + 17:answers.index("</DateFinValidite>")]
    corrected = _edited(tmp_path, ANSWERS, "CNS_RTP_20261120_000003.xml",
                        (b"<NumeroSequence>2<", b"<NumeroSequence>3<"),
                        (f"<DateFinValidite>{valid_to}<".encode(), b"<DateFinValidite>2027-05-01<"))
    assert run("validate", str(corrected)).exit_code == 0
    r = run("import", str(corrected))
    assert r.exit_code == 0, r.stderr
    assert [line for line in r.stderr.splitlines() if f"certificate {number} corrected: valid" in line
            and "to 2027-05-01" in line], r.stderr
    certificate = {c["certificate"]: c for c in _status(run)["certificates"]}[number]
    assert certificate["valid_to"] == "2027-05-01"
    # The older answer imported again changes nothing.
    again = run("import", str(ANSWERS))
    assert "corrected" not in again.stderr
    assert {c["certificate"]: c for c in _status(run)["certificates"]}[number]["valid_to"] == "2027-05-01"


def test_a_request_answered_twice_holds_the_latest_answer_only(run, data, tmp_path):
    """The CNS refused REQ-0003 and later grants it: one open certificate, not listed refused;
    and a request granted, then refused, is refused with no certificate standing."""
    assert run("import", str(REQUEST), str(ANSWERS)).exit_code == 0
    status = _status(run)
    assert [x["request_ref"] for x in status["refused_requests"]] == ["REQ-0003"]
    granted = _status(run)["certificates"]
    later = tmp_path / "CNS_RTP_20261121_000003.xml"
    text = ANSWERS.read_text("utf-8")
    # The later file: REQ-0001 refused (its certificate no longer stands), sequence 3, one answer.
    start, end = text.index("<Reponse>"), text.rindex("</Reponse>") + len("</Reponse>")
    first = text[start:text.index("</Reponse>") + len("</Reponse>")]
    refusal = (first[:first.index("<Titre>")] + "<Refus><Anomalie><Code>R02</Code><Libelle>revu</Libelle>"
               "<ElementConcerne>/Demande</ElementConcerne></Anomalie></Refus>\n  </Reponse>")
    body = text[:start] + refusal + text[end:]
    body = body.replace("<NumeroSequence>2<", "<NumeroSequence>3<", 1)
    body = body.replace(body[body.index("<NombreReponses>"):body.index("</NombreReponses>")], "<NombreReponses>1", 1)
    later.write_text(body, "utf-8")
    checked = run("validate", str(later))
    assert checked.exit_code == 0, checked.stderr
    r = run("import", str(later))
    assert r.exit_code == 0, r.stderr
    assert "no longer stands" in r.stderr
    status = _status(run)
    refused = sorted(x["request_ref"] for x in status["refused_requests"])
    assert refused == ["REQ-0001", "REQ-0003"]
    assert len(status["certificates"]) == len(granted) - 1


def test_a_payment_statement_whose_totals_disagree_is_reported_on_import(run, data, tmp_path):
    text = PAYMENT.read_text("utf-8")
    total = text[text.index("<TotalFacture>") + 14:text.index("</TotalFacture>")]
    wrong = _edited(tmp_path, PAYMENT, PAYMENT.name, (f"<TotalFacture>{total}<".encode(), b"<TotalFacture>1.00<"))
    assert run("validate", str(wrong)).exit_code == 3
    r = run("import", str(BILLING), str(wrong))
    assert "DOC02" in r.stderr and "TotalFacture" in r.stderr, r.stderr


def test_a_payment_line_given_twice_is_a_warning_naming_both(run, data, tmp_path):
    text = PAYMENT.read_text("utf-8")
    start = text.index("<Ligne>")
    end = text.index("</Ligne>") + len("</Ligne>")
    line = text[start:end]
    doubled = tmp_path / PAYMENT.name
    doubled.write_text(text[:end] + "\n  " + line + text[end:], "utf-8")
    r = run("import", str(BILLING), str(doubled))
    [warning] = [w for w in r.stderr.splitlines() if "DOC08" in w]
    first_line = text[:start].count("\n") + 1
    assert f"appears twice (lines {first_line} and " in warning


def test_a_version_3_database_counts_each_session_once_after_migration(tmp_path):
    """Under version 3 a billing file imported twice counted its sessions twice: the
    migration gives each session its identity and counts it once."""
    from cns_exchange.store import database

    db = tmp_path / "v3.sqlite"
    conn = sqlite3.connect(db)
    for script in database.MIGRATIONS[:3]:
        for statement in database._statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    for doc_id, name in ((1, "123456_FAC_20261120_000001.xml"), (2, "123456_FAC_20261120_000002.xml")):
        conn.execute("INSERT INTO documents (id, kind, name, sha256, provider, created_at, sequence, version, imported_at) "
                     "VALUES (?, 'billing', ?, ?, '123456', '2026-11-20T09:00:00+01:00', ?, '1', '')",
                     (doc_id, name, f"sha{doc_id}", doc_id))
        conn.execute("INSERT INTO fee_notes (id, document_id, number, certificate_number, matricule, last_name, first_name) "
                     "VALUES (?, ?, 1, 'TPC-1', '1974091186700', '', '')", (doc_id, doc_id))
        conn.execute("INSERT INTO sessions (fee_note_id, document_id, line_no, session_date, act, executing, gross, "
                     "patient_share, cns_share) VALUES (?, ?, 1, '2026-10-20', 'ZD11', '123456', 8889, 1067, 7822)",
                     (doc_id, doc_id))
    conn.execute("INSERT INTO month_totals (month, sessions, billed) VALUES ('2026-10', 2, 15644)")  # as version 3 kept it
    conn.commit()
    conn.close()
    conn = database.connect(db)
    try:
        assert [tuple(r) for r in conn.execute("SELECT id, counted FROM sessions ORDER BY id")] == [(1, 1), (2, 0)]
        assert tuple(conn.execute("SELECT sessions, billed FROM month_totals").fetchone()) == (1, 7822)
        assert [tuple(r) for r in conn.execute("SELECT DISTINCT identity FROM sessions")] == [("TPC-1|1974091186700|2026-10-20|ZD11",)]
    finally:
        conn.close()
