"""Reports of issue 13, on a database made by a real exchange through the sandbox (the example
requests answered, the example sessions billed, paid and disputed; test_ledger's exchange),
plus a request the CNS never answered: names beside matricules, one patient's history by
name or matricule, what needs doing soon (status --due), the month table with gross and
patient share, the new certificates as CSV for the agenda.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import date, timedelta

import pytest

from cns_exchange.store import database
from cns_exchange.store import status as status_mod
from conftest import CREATED
from test_ledger import _billed_through_the_sandbox

SCHMIT, WEBER = "1974091186700", "1982080285657"


@pytest.fixture
def exchanged(run, dropbox, tmp_path, examples):
    """The example exchange through the sandbox, then a request for a second Schmit imported
    but never sent (so never answered). Returns the database path."""
    _billed_through_the_sandbox(run, tmp_path / "outbox")
    extra = tmp_path / "extra.csv"
    rows = (examples / "requests.csv").read_text("utf-8").splitlines()
    extra.write_text("\n".join([rows[0], rows[1].replace("REQ-0001;1974091186700;Schmit;Léa", "REQ-0009;1990093012358;"
                                                         "Schmit;Marc").replace("prescriptions/", f"{examples}/prescriptions/")]) + "\n", "utf-8")
    (tmp_path / "unsent").mkdir()
    built = run("build-request", str(extra), "--created", "2026-11-01T09:00:00+01:00", "-o", str(tmp_path / "unsent"))
    assert built.exit_code == 0, built.stderr
    [request] = (tmp_path / "unsent").glob("*_DTP_*.xml")
    assert run("import", str(request)).exit_code == 0
    return dropbox[1] / "practice.sqlite"


def _json(run, *args) -> dict:
    r = run("status", "--json", *args)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_names_beside_matricules_in_every_section(run, exchanged):
    data = _json(run)
    names = {"1974091186700": "Schmit Léa", "1982080285657": "Weber-Müller François", "2001120308757": "Hoffmann Zoë"}
    shown = 0
    for section, rows in data.items():
        for row in rows:
            if "matricule" in row:
                assert "patient" in row, section
                if row["matricule"] in names:
                    assert row["patient"] == names[row["matricule"]], (section, row)
                shown += 1
    assert shown >= 4
    assert {c["patient"] for c in data["certificates"]} == {"Schmit Léa", "Weber-Müller François"}


@pytest.mark.parametrize("query", ["Schmit Léa", "léa schmit", "LEA", SCHMIT, "1974 0911 867 00"])
def test_patient_by_name_or_matricule_shows_the_history(run, exchanged, query):
    data = _json(run, "--patient", query)
    history = data["history"]
    assert [c["certificate"] for c in data["certificates"]] == ["TPC-2026-000101"]
    events = [h["event"] for h in history]
    assert events.count("session") == 4 and "request" in events and "certificate" in events
    assert "fee note" in events and events.count("payment") == 4
    assert [h["date"] for h in history] == sorted(h["date"] for h in history)   # date order
    session = next(h for h in history if h["event"] == "session")
    assert (session["gross"], session["patient_share"], session["cns_share"]) == ("88.89", "10.67", "78.22")


def test_a_disputed_session_is_in_its_patients_history(run, exchanged):
    disputed = _json(run)["disputed"][0]
    history = _json(run, "--patient", disputed["patient"])["history"]
    disputes = [h for h in history if h["event"] == "dispute"]
    assert disputes and all(h["certificate"] == disputed["certificate"] for h in disputes)
    assert any(h["disputed"] == disputed["billed"] and disputed["reason_code"] in h["detail"] for h in disputes), disputes


def test_no_patient_and_several_patients_are_exit_3(run, exchanged):
    r = run("status", "--patient", "Hoffman")
    assert r.exit_code == 3 and "no patient of that name" in r.stderr and r.stdout == ""
    r = run("status", "--patient", "1893120105732")
    assert r.exit_code == 3 and "no patient of that matricule" in r.stderr
    r = run("status", "--patient", "Schmit")
    assert r.exit_code == 3 and "2 patients match" in r.stderr
    assert "Schmit Léa (•••••••••6700)" in r.stderr and "Schmit Marc (•••••••••2358)" in r.stderr
    assert SCHMIT not in r.stderr
    assert SCHMIT in run("status", "--patient", "Schmit", "--matricule", "full").stderr
    assert _json(run, "--patient", "Schmit Marc")["requests_awaiting_answer"][0]["request_ref"] == "REQ-0009"


def test_due_lists_expiring_used_up_certificates_and_unanswered_requests(exchanged):
    conn = database.connect(exchanged)
    try:
        valid_to = dict(conn.execute("SELECT number, valid_to FROM certificates"))
        expiry = date.fromisoformat(valid_to["TPC-2026-000101"])   # Schmit: 2 sessions left
        cases = {day: {(r["what"], r["reference"], r["reason"]) for r in status_mod.due(conn, day)}
                 for day in (expiry - timedelta(days=31), expiry - timedelta(days=30), expiry, expiry + timedelta(days=1),
                             date(2026, 11, 14), date(2026, 11, 15))}
        lines = status_mod.due_lines(status_mod.due(conn, expiry - timedelta(days=1)))
    finally:
        conn.close()
    first, edge, last, after, before14, at14 = cases.values()
    assert ("certificate", "TPC-2026-000101", "expiring") not in first
    assert ("certificate", "TPC-2026-000101", "expiring") in edge and ("certificate", "TPC-2026-000101", "expiring") in last
    assert not any(ref == "TPC-2026-000101" for _, ref, _ in after)
    assert ("request", "REQ-0009", "unanswered") not in before14 and ("request", "REQ-0009", "unanswered") in at14
    assert f"certificate TPC-2026-000101, Schmit Léa ({SCHMIT}): expires on {expiry} (in 1 day), 2 sessions left" in lines


def test_one_session_left_is_due_whenever_it_expires(exchanged):
    conn = database.connect(exchanged)
    try:
        conn.execute("UPDATE certificates SET sessions_billed = sessions_authorised - 1 WHERE number = 'TPC-2026-000102'")
        rows = status_mod.due(conn, date(2026, 11, 20))
    finally:
        conn.close()
    assert [(r["reference"], r["reason"], r["sessions_remaining"]) for r in rows if r["what"] == "certificate"] == [
        ("TPC-2026-000102", "sessions", 1)]


def test_status_due_prints_lines_only_when_there_is_something(run, exchanged, tmp_path):
    r = run("status", "--due")
    assert r.exit_code == 0
    # the unsent request dates from 2026-11-01: unanswered after 14 days from 2026-11-15 on
    if date.today() >= date(2026, 11, 15):
        assert r.stdout.startswith("request REQ-0009, Schmit Marc (1990093012358): unanswered since 2026-11-01")
    assert set(json.loads(run("status", "--due", "--json").stdout)) == {"due"}
    conn = sqlite3.connect(exchanged)
    conn.execute("DELETE FROM requests WHERE request_ref = 'REQ-0009'")
    conn.execute("UPDATE certificates SET valid_to = '2099-12-31', sessions_billed = 0")
    conn.commit()
    conn.close()
    r = run("status", "--due")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    assert run("status", "--due", "--pdf", str(tmp_path / "s.pdf")).exit_code == 2


def test_month_table_has_gross_patient_share_and_cns_share(run, exchanged):
    months = _json(run)["per_month"]
    conn = sqlite3.connect(exchanged)
    summed = {m: (g, p, c) for m, g, p, c in conn.execute(
        "SELECT substr(session_date, 1, 7), sum(gross), sum(patient_share), sum(cns_share) FROM sessions "
        "WHERE counted = 1 GROUP BY 1")}
    conn.close()
    assert {m["month"]: tuple(round(float(m[k]) * 100) for k in ("gross", "patient_share", "billed")) for m in months} \
        == summed
    for m in months:
        assert round(float(m["gross"]) * 100) == round(float(m["patient_share"]) * 100) + round(float(m["billed"]) * 100)
    table = run("status").stdout   # the terminal names the CNS share for what it is, beside gross
    assert "billed to the CNS" in table and "patient_share" in table


def test_new_certificates_csv_for_the_agenda(run, exchanged):
    r = run("certificates", "--since", "2000-01-01")
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes.startswith("\ufeff".encode()) and b"\r\n" in r.stdout_bytes
    rows = list(csv.DictReader(io.StringIO(r.stdout.lstrip("\ufeff")), delimiter=";"))
    assert [(x["request_ref"], x["patient"], x["matricule"], x["certificate"], x["sessions_authorised"]) for x in rows] == [
        ("REQ-0001", "Schmit Léa", SCHMIT, "TPC-2026-000101", "6"),
        ("REQ-0002", "Weber-Müller François", WEBER, "TPC-2026-000102", "6")]
    assert all(x["valid_from"] and x["valid_to"] for x in rows)
    masked = run("certificates", "--since", "2000-01-01", "--matricule", "masked").stdout
    assert SCHMIT not in masked and "•••••••••6700" in masked
    later = run("certificates", "--since", (date.today() + timedelta(days=1)).isoformat())
    assert later.exit_code == 0 and later.stdout.lstrip("\ufeff").splitlines() == [
        "request_ref;patient;matricule;certificate;valid_from;valid_to;sessions_authorised;answered_on"]
    assert run("certificates", "--since", "yesterday").exit_code == 2


@pytest.fixture
def nameless(run, dropbox, tmp_path, examples):
    """The example exchange through the sandbox, billed from a sessions CSV without its name
    columns (they are optional): the billing file names no patient. Returns the database."""
    from test_ledger import _night

    outbox = tmp_path / "outbox"
    outbox.mkdir()
    assert run("build-request", str(examples / "requests.csv"), "--created", CREATED, "-o", str(outbox)).exit_code == 0
    assert run("upload", *map(str, outbox.glob("*_DTP_*.xml"))).exit_code == 0
    _night(run)
    rows = list(csv.reader(io.StringIO((examples / "sessions.csv").read_text("utf-8")), delimiter=";"))
    assert rows[0][5:] == ["last_name", "first_name"]
    sessions = tmp_path / "sessions.csv"
    sessions.write_text("".join(";".join(row[:5]) + "\n" for row in rows), "utf-8")
    built = run("build-invoice", str(sessions), "--created", CREATED, "-o", str(outbox), "--no-certificate-check")
    assert built.exit_code == 0, built.stderr
    [billing] = outbox.glob("*_FAC_*.xml")
    assert b"<Nom>" not in billing.read_bytes()
    assert run("upload", str(billing)).exit_code == 0
    _night(run)
    return dropbox[1] / "practice.sqlite"


def test_a_billing_file_without_names_is_named_from_the_requests(run, nameless):
    """A patient the requests name is named in the billed, disputed and accounting rows too;
    a patient no request names (Kieffer, billed on a certificate never asked for) stays a
    matricule, never a stray space."""
    data = _json(run)
    rows = data["billed_awaiting_payment"] + data["disputed"]
    assert rows
    names = {"1974091186700": "Schmit Léa", "1982080285657": "Weber-Müller François", "2015123101725": ""}
    assert {(r["matricule"], r["patient"]) for r in rows} <= set(names.items())   # not " "
    r = run("export", "accounting")
    assert r.exit_code == 0, r.stderr
    exported = list(csv.DictReader(io.StringIO(r.stdout_bytes.decode("utf-8-sig")), delimiter=";"))
    assert {(row["matricule"], row["last_name"], row["first_name"]) for row in exported} == {
        ("1974091186700", "Schmit", "Léa"), ("1982080285657", "Weber-Müller", "François"), ("2015123101725", "", "")}


@pytest.mark.parametrize("option", ["--patient", "--certificate"])
def test_an_empty_patient_or_certificate_is_no_whole_practice_report(run, exchanged, option):
    """`--patient "$NAME"` with NAME unset must not print everyone's data."""
    for args in ([option, ""], ["--due", option, ""]) if option == "--patient" else ([option, ""],):
        r = run("status", *args)
        assert r.exit_code in (2, 3) and r.stdout == "" and "empty" in r.stderr, (args, r.stderr)


def test_a_request_is_unanswered_from_the_day_it_was_sent(run, dropbox, tmp_path, examples):
    """The 14 days count from the upload that reached the server (the ledger), not from the
    file's creation date: a request built on 2026-11-20 and sent today is not late today."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    assert run("build-request", str(examples / "requests.csv"), "--created", CREATED, "-o", str(outbox)).exit_code == 0
    [request] = outbox.glob("*_DTP_*.xml")
    assert run("import", str(request)).exit_code == 0     # known, not sent: counted from its creation
    db = dropbox[1] / "practice.sqlite"
    today = max(date.today(), date(2026, 12, 4))   # 14 days after CREATED at least
    conn = database.connect(db)
    try:
        before = {r["reference"]: r["date"] for r in status_mod.due(conn, today)}
    finally:
        conn.close()
    assert before == dict.fromkeys(["REQ-0001", "REQ-0002", "REQ-0003"], CREATED[:10])
    assert run("upload", str(request)).exit_code == 0
    conn = database.connect(db)
    try:
        [sent_on] = {r["sent_at"] for r in status_mod.status(conn, today)["requests_awaiting_answer"]}
        late = [{r["reference"] for r in status_mod.due(conn, today + timedelta(days=n))} for n in (0, 13, 14)]
    finally:
        conn.close()
    assert abs(date.fromisoformat(sent_on[:10]) - date.today()) <= timedelta(days=1)   # (UTC)
    if today == date.today():   # (a machine whose clock is before 2026-12-04 sends "in the past")
        assert late == [set(), set(), {"REQ-0001", "REQ-0002", "REQ-0003"}]


def test_fee_notes_without_names_are_printed_with_the_requests_names(run, nameless, tmp_path):
    """The patient's own fee note, and its file, carry the name the practice's request gives
    (a billing file without names, printed where the practice database is); one no request
    names keeps its matricule alone. The summary names them the same way."""
    from test_cli_print import text_of

    [billing] = (tmp_path / "outbox").glob("*_FAC_*.xml")
    r = run("print", "fee-notes", str(billing), "-o", str(tmp_path / "notes"))
    assert r.exit_code == 0, r.stderr
    names = sorted(p.name.split("_2026-")[0] for p in (tmp_path / "notes").glob("*.pdf"))
    assert names == ["Schmit_Lea", "Weber-Muller_Francois", "patient"], names
    [schmit] = (tmp_path / "notes").glob("Schmit_*.pdf")
    assert "Schmit Léa" in text_of(schmit)
    r = run("print", "summary", str(billing), "-o", str(tmp_path / "summary.pdf"))
    assert r.exit_code == 0, r.stderr
    summary = text_of(tmp_path / "summary.pdf")
    assert "Schmit Léa" in summary and "Weber-Müller François" in summary
