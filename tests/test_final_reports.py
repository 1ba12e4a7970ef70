"""The final dietetic report: `cnsx status` lists the treatments that ended (finished or
interrupted) without a report marked sent; `cnsx report-sent` marks one.

The database is made by a real exchange: requests built and uploaded, answered by the sandbox,
fetched and imported; two billing files, paid by the sandbox. Four treatments:

| patient | prescription | sessions billed | what it shows |
|---|---|---|---|
| FINISHED | 2026-06-10 | 5 of 6 by 2026-07-18, the 6th on 2026-07-25 | idle (5 of 6), then finished |
| EXPIRED | 2026-06-10 (valid to 2026-12-09) | 2 of 6, the last 2026-11-27 | interrupted: the certificate expired |
| IDLE | 2026-06-12 | 2 of 6, the last 2026-07-01 | interrupted: no session for 90 days |
| UNUSED | 2026-06-12 | none | a treatment that never began: nothing due |

Each rule is checked the day before, the day of and the day after its boundary, with the day
given to the core (`status.status(conn, today)`): the CLI takes today's date.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cns_exchange.store import database
from cns_exchange.store import status as status_mod
from cns_exchange.cli import cli
from conftest import EXAMPLES

FINISHED, EXPIRED, IDLE, UNUSED = "1974091186700", "1982080285657", "1990093012358", "1979122003208"
PATIENTS = {FINISHED: ("Schmit", "Léa", "2026-06-10"), EXPIRED: ("Weber", "Paul", "2026-06-10"),
            IDLE: ("Muller", "Anne", "2026-06-12"), UNUSED: ("Klein", "Marc", "2026-06-12")}
FIRST_BILLING = [(FINISHED, "2026-06-20", "ZD11"), (FINISHED, "2026-06-27", "ZD12"), (FINISHED, "2026-07-04", "ZD13"),
                 (FINISHED, "2026-07-11", "ZD13"), (FINISHED, "2026-07-18", "ZD13"),
                 (IDLE, "2026-06-20", "ZD11"), (IDLE, "2026-07-01", "ZD12")]
SECOND_BILLING = [(FINISHED, "2026-07-25", "ZD13"), (EXPIRED, "2026-11-20", "ZD11"), (EXPIRED, "2026-11-27", "ZD12")]


def _cnsx(env: dict, *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, f"cnsx {' '.join(args)}: {result.stderr}"
    return result.stdout


def _write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", "utf-8")
    return path


@pytest.fixture(scope="module")
def exchanged(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """The database after the exchange, after the first and after the second billing file
    (copies), and the certificate number granted to each patient."""
    work = tmp_path_factory.mktemp("exchange")
    root = work / "dropbox"
    (root / "upload").mkdir(parents=True)
    (root / "download").mkdir()
    config = work / "config"
    config.mkdir()
    (config / "config.toml").write_text(f'provider = "123456"\nremote = "file://{root}"\n')
    (config / "config.toml").chmod(0o600)
    # (a module's fixture: set up before the per-test isolation of conftest, so the caller's
    # CNSX_* variables are taken out here)
    env = {name: None for name in os.environ if name.startswith("CNSX_") and name != "CNSX_NO_SKIP"}
    env.update(CNSX_CONFIG_DIR=str(config), CNSX_DATA_DIR=str(work / "data"), SOURCE_DATE_EPOCH=None)
    (work / "prescriptions").mkdir()
    scan = (EXAMPLES / "prescriptions" / "ordonnance-REQ-0001.pdf").read_bytes()
    for n in range(1, len(PATIENTS) + 1):   # one scan each (a comment after the end tells them apart)
        (work / "prescriptions" / f"ordonnance-{n}.pdf").write_bytes(scan + f"%{n}\n".encode())
    outbox = work / "outbox"
    outbox.mkdir()

    def night() -> None:
        _cnsx(env, "sandbox", "--once")
        _cnsx(env, "fetch")
        _cnsx(env, "import")

    requests = _write_csv(work / "requests.csv", "request_ref;matricule;last_name;first_name;prescriber_code;"
                          "prescription_date;pathology_codes;treatment;prescription_pdf",
                          [f"REQ-{n:04d};{m};{last};{first};23456789;{day};D12;initial;prescriptions/ordonnance-{n}.pdf"
                           for n, (m, (last, first, day)) in enumerate(PATIENTS.items(), 1)])
    _cnsx(env, "build-request", str(requests), "--created", "2026-06-15T09:00:00+02:00", "-o", str(outbox))
    _cnsx(env, "upload", *map(str, sorted(outbox.glob("*_DTP_*.xml"))))
    night()
    db = work / "data" / "practice.sqlite"
    conn = sqlite3.connect(db)
    numbers = dict(conn.execute("SELECT matricule, number FROM certificates").fetchall())
    conn.close()
    assert set(numbers) == set(PATIENTS)
    copies = []
    for n, (sessions, created) in enumerate(((FIRST_BILLING, "2026-07-20T18:00:00+02:00"),
                                             (SECOND_BILLING, "2026-12-01T18:00:00+01:00")), 1):
        rows = _write_csv(work / f"sessions-{n}.csv", "certificate_number;matricule;session_date;act_code;"
                          "executing_provider;last_name;first_name",
                          [f"{numbers[m]};{m};{day};{act};123456;{PATIENTS[m][0]};{PATIENTS[m][1]}" for m, day, act in sessions])
        billing = work / f"billing-{n}"
        billing.mkdir()
        _cnsx(env, "build-invoice", str(rows), "--created", created, "-o", str(billing))
        _cnsx(env, "upload", *map(str, billing.glob("*.xml")))
        night()
        copies.append(work / f"after-billing-{n}.sqlite")
        source = sqlite3.connect(db)
        with sqlite3.connect(copies[-1]) as target:
            source.backup(target)
        source.close()
    return copies[0], numbers, copies[1]


@pytest.fixture
def db(exchanged, tmp_path) -> Path:
    """A private copy of the database after both billing files."""
    target = tmp_path / "practice.sqlite"
    shutil.copy(exchanged[2], target)
    return target


def _due(path: Path, day: str) -> dict[str, dict]:
    """The final reports due on ``day``, by matricule."""
    conn = database.connect(path)
    try:
        rows = status_mod.status(conn, date.fromisoformat(day))["final_reports_due"]
    finally:
        conn.close()
    return {row["matricule"]: row for row in rows}


def test_the_exchange_paid_every_session(exchanged):
    """The premise: the sandbox paid each session, so that each counts as billed."""
    conn = sqlite3.connect(exchanged[2])
    try:
        assert conn.execute("SELECT count(*), sum(paid > 0) FROM sessions WHERE counted = 1").fetchone() == (10, 10)
        billed = dict(conn.execute("SELECT matricule, sessions_billed FROM certificates").fetchall())
    finally:
        conn.close()
    assert billed == {FINISHED: 6, EXPIRED: 2, IDLE: 2, UNUSED: 0}


@pytest.mark.parametrize("day, listed", [("2026-10-15", False), ("2026-10-16", True), ("2026-10-17", True)])
def test_sessions_left_and_none_for_90_days_is_interrupted(exchanged, day, listed):
    """After the first billing file, the FINISHED patient has 5 of 6 sessions, the last on
    2026-07-18: interrupted from 2026-10-16 (90 days later) on, not before."""
    due = _due(exchanged[0], day)
    assert (FINISHED in due) is listed
    if listed:
        row = due[FINISHED]
        assert (row["ended"], row["due_since"], row["last_session"]) == ("interrupted", "2026-10-16", "2026-07-18")
        assert (row["sessions_authorised"], row["sessions_billed"]) == (6, 5)


@pytest.mark.parametrize("day, listed", [("2026-09-28", False), ("2026-09-29", True), ("2026-09-30", True)])
def test_idle_boundary_of_a_treatment_still_valid(db, day, listed):
    due = _due(db, day)
    assert (IDLE in due) is listed
    if listed:
        assert (due[IDLE]["ended"], due[IDLE]["due_since"], due[IDLE]["last_session"]) == (
            "interrupted", "2026-09-29", "2026-07-01")
        assert due[IDLE]["valid_to"] == "2026-12-11"      # still valid: the 90 days decide


@pytest.mark.parametrize("day, listed", [("2026-07-24", False), ("2026-07-25", True), ("2026-07-26", True)])
def test_every_authorised_session_billed_is_finished_from_the_last_session(db, day, listed):
    due = _due(db, day)
    assert (FINISHED in due) is listed
    if listed:
        row = due[FINISHED]
        assert (row["ended"], row["due_since"], row["sessions_billed"]) == ("finished", "2026-07-25", 6)
        assert row["prescriber"] == "23456789"            # the report goes to the prescriber of the request


@pytest.mark.parametrize("day, listed", [("2026-12-09", False), ("2026-12-10", True), ("2026-12-11", True)])
def test_sessions_left_when_the_certificate_expires_is_interrupted(db, day, listed):
    """The EXPIRED patient's last session is 2026-11-27 (90 days: 2027-02-25), but the
    certificate ends on 2026-12-09: interrupted from the day after."""
    due = _due(db, day)
    assert (EXPIRED in due) is listed
    if listed:
        assert (due[EXPIRED]["ended"], due[EXPIRED]["due_since"], due[EXPIRED]["valid_to"]) == (
            "interrupted", "2026-12-10", "2026-12-09")


def test_a_treatment_that_never_began_owes_no_report(db):
    assert UNUSED not in _due(db, "2030-01-01")
    assert set(_due(db, "2030-01-01")) == {FINISHED, EXPIRED, IDLE}


def test_the_longest_due_first_and_one_case_at_a_time(db, exchanged):
    conn = database.connect(db)
    try:
        rows = status_mod.status(conn, date(2030, 1, 1))["final_reports_due"]
        one = status_mod.status(conn, date(2030, 1, 1), certificate=exchanged[1][IDLE])["final_reports_due"]
        patient = status_mod.status(conn, date(2030, 1, 1), patient=EXPIRED)["final_reports_due"]
    finally:
        conn.close()
    assert [r["matricule"] for r in rows] == [FINISHED, IDLE, EXPIRED]     # due since 07-25, 09-29, 12-10
    assert [r["matricule"] for r in one] == [IDLE]
    assert [r["matricule"] for r in patient] == [EXPIRED]


# --- cnsx report-sent ---------------------------------------------------------------------------

def test_report_sent_marks_the_report_and_status_no_longer_lists_it(run, db, exchanged):
    number = exchanged[1][FINISHED]
    r = run("report-sent", number, "--date", "2026-08-01", "--db", str(db))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    assert r.stderr.strip() == f"{number}: final report marked sent on 2026-08-01"
    assert set(_due(db, "2030-01-01")) == {EXPIRED, IDLE}
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT certificate_number, sent_on FROM final_reports").fetchall() == [(number, "2026-08-01")]
    conn.close()
    status = json.loads(run("status", "--json", "--db", str(db)).stdout)
    assert {row["matricule"] for row in status["final_reports_due"]} == _due_today() - {FINISHED}


def test_marking_twice_changes_nothing_and_says_so(run, db, exchanged):
    number = exchanged[1][IDLE]
    assert run("report-sent", number, "--date", "2026-10-01", "--db", str(db)).exit_code == 0
    again = run("report-sent", number, "--date", "2026-10-01", "--db", str(db))
    assert again.exit_code == 0
    assert again.stderr.strip() == f"{number}: final report already marked sent on 2026-10-01; nothing changed"
    other_day = run("-q", "report-sent", number, "--date", "2026-10-05", "--db", str(db))
    assert other_day.exit_code == 0
    assert "already marked sent on 2026-10-01; nothing changed (not 2026-10-05)" in other_day.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT sent_on FROM final_reports").fetchall() == [("2026-10-01",)]
    conn.close()


@pytest.mark.parametrize("day", ["2026-8-01", "20260801", "2026-W31-6", "2026-02-30", "yesterday"])
def test_a_date_that_is_not_yyyy_mm_dd_is_a_usage_error(run, db, exchanged, day):
    """The one parser of date options (clock.day): what fromisoformat alone also takes
    (20260801, week dates) is refused too, before the database is touched."""
    r = run("report-sent", exchanged[1][FINISHED], "--date", day, "--db", str(db))
    assert r.exit_code == 2, r.stderr
    assert f"--date '{day}' is not a YYYY-MM-DD date" in r.stderr and r.stdout == ""
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM final_reports").fetchone() == (0,)
    conn.close()


def test_an_unknown_certificate_is_exit_3(run, db):
    r = run("report-sent", "TPC-2099-999999", "--db", str(db))
    assert r.exit_code == 3
    assert "TPC-2099-999999: no such certificate in the practice database" in r.stderr
    assert r.stdout == ""


def granted_again(folder: Path) -> Path:
    """The examples' answers written again later by the CNS (sequence 3), granting REQ-0001
    under a new number, TPC-2026-000201: TPC-2026-000101 is superseded once it is imported."""
    answers = (EXAMPLES / "CNS_RTP_20261120_000002.xml").read_text("utf-8")
    again = folder / "CNS_RTP_20261120_000003.xml"
    again.write_text(answers.replace("<NumeroSequence>2<", "<NumeroSequence>3<", 1)
                     .replace("<NumeroTitre>TPC-2026-000101<", "<NumeroTitre>TPC-2026-000201<", 1), "utf-8")
    return again


def test_a_superseded_certificate_is_no_treatment_of_its_own(run, data, tmp_path):
    """The sessions of TPC-2026-000101, superseded, owe no report of their own, and marking it
    names the certificate that stands."""
    again = granted_again(tmp_path)
    db = tmp_path / "practice.sqlite"
    documents = ["123456_DTP_20261120_000001.xml", "123456_FAC_20261120_000001.xml", "CNS_RTP_20261120_000002.xml"]
    assert run("import", "--db", str(db), *(str(EXAMPLES / n) for n in documents)).exit_code == 0
    assert {r["certificate"] for r in _due(db, "2030-01-01").values()} == {"TPC-2026-000101", "TPC-2026-000102"}
    assert run("import", "--db", str(db), str(again)).exit_code == 0
    assert {r["certificate"] for r in _due(db, "2030-01-01").values()} == {"TPC-2026-000102"}
    r = run("report-sent", "TPC-2026-000101", "--db", str(db))
    assert r.exit_code == 3
    assert "TPC-2026-000101: superseded by a later answer of the CNS to its request (certificate TPC-2026-000201)" in r.stderr


@pytest.mark.parametrize("offset, exit_code", [(-1, 0), (0, 0), (1, 2)])
def test_a_date_in_the_future_is_refused(run, db, exchanged, offset, exit_code):
    day = date.today() + timedelta(days=offset)
    r = run("report-sent", exchanged[1][EXPIRED], "--date", day.isoformat(), "--db", str(db))
    assert r.exit_code == exit_code, r.stderr
    conn = sqlite3.connect(db)
    recorded = conn.execute("SELECT sent_on FROM final_reports").fetchall()
    conn.close()
    if exit_code:
        assert f"--date {day}: after today" in r.stderr and recorded == []
    else:
        assert recorded == [(day.isoformat(),)]


@pytest.mark.parametrize("day, exit_code", [("2026-06-09", 3), ("2026-06-10", 0), ("2026-06-11", 0)])
def test_a_date_before_the_certificate_is_valid_is_refused(run, db, exchanged, day, exit_code):
    r = run("report-sent", exchanged[1][FINISHED], "--date", day, "--db", str(db))
    assert r.exit_code == exit_code, r.stderr
    if exit_code:
        assert "before the treatment could begin" in r.stderr and "valid from 2026-06-10" in r.stderr


def test_the_date_defaults_to_today_and_must_be_a_date(run, db, exchanged):
    number = exchanged[1][EXPIRED]
    assert run("report-sent", number, "--date", "2026-13-01", "--db", str(db)).exit_code == 2
    r = run("-q", "report-sent", f" {number} ", "--db", str(db))     # as pasted, with blanks
    assert r.exit_code == 0 and r.stderr == ""                         # -q: silent when it did what was asked
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT certificate_number, sent_on FROM final_reports").fetchall() == [
        (number, date.today().isoformat())]
    conn.close()


def test_no_database_is_exit_3(run, tmp_path):
    r = run("report-sent", "TPC-2026-000101", "--db", str(tmp_path / "none.sqlite"))
    assert r.exit_code == 3 and "no practice database yet" in r.stderr
    assert not (tmp_path / "none.sqlite").exists()


def test_the_pdf_shows_the_reports_due(run, db, tmp_path):
    """status --pdf draws the section with the JSON's figures; when none is due, one line."""
    from test_cli_print import text_of

    target = tmp_path / "s.pdf"
    assert run("status", "--pdf", str(target), "--matricule", "full", "--db", str(db)).exit_code == 0
    text = text_of(target)
    assert f"Rapports diététiques finaux à envoyer au prescripteur ({len(_due_today())})" in text
    assert "1990093012358 Muller Anne 23456789 11/12/2026 6 2 01/07/2026 interrompu 29/09/2026" in text
    for matricule in (FINISHED, EXPIRED, IDLE):
        assert run("report-sent", *[n for m, n in _numbers(db).items() if m == matricule], "--date", "2026-12-01",
                   "--db", str(db)).exit_code == 0
    empty = tmp_path / "e.pdf"
    assert run("status", "--pdf", str(empty), "--db", str(db)).exit_code == 0
    assert "Rapports diététiques finaux à envoyer au prescripteur : aucun" in text_of(empty)
    assert "Forfait informatique" not in text_of(empty)    # only with --year


def _due_today() -> set[str]:
    """Who is due on the day the test runs (the CLI's today): EXPIRED from 2026-12-10 on."""
    return {FINISHED, IDLE} | ({EXPIRED} if date.today() >= date(2026, 12, 10) else set())


def _numbers(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT matricule, number FROM certificates").fetchall())
    finally:
        conn.close()


# --- the last session of each certificate, kept by the database (version 7) ---------------------

def _v6_database(path):
    """A database at version 6: certificate TPC-1's sessions on 2026-10-20 (counted) and
    2026-11-10 (counted), and 2026-11-17 billed again in a copy (not counted)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for script in database.MIGRATIONS[:6]:
        for statement in database._statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 6")
    conn.executescript("""
        INSERT INTO documents (id, kind, name, sha256, provider, created_at, sequence, version, imported_at)
            VALUES (1, 'billing', 'b.xml', 'b', '123456', '2026-11-20T09:00:00', 1, '1', 'now');
        INSERT INTO answers (id, document_id, request_ref, matricule, certificate_number, refused)
            VALUES (1, 1, 'R1', '1974091186700', 'TPC-1', 0);
        INSERT INTO fee_notes (id, document_id, number, certificate_number, matricule, last_name, first_name)
            VALUES (1, 1, 1, 'TPC-1', '1974091186700', '', ''), (2, 1, 2, 'TPC-2', '1982080285657', '', '');
        INSERT INTO sessions (id, fee_note_id, document_id, line_no, session_date, act, executing, gross, patient_share,
                              cns_share, identity, counted)
            VALUES (1, 1, 1, 1, '2026-10-20', 'ZD11', '123456', 8889, 1067, 7822, 'a', 1),
                   (2, 1, 1, 2, '2026-11-10', 'ZD12', '123456', 8889, 1067, 7822, 'b', 1),
                   (3, 1, 1, 3, '2026-11-17', 'ZD13', '123456', 5555, 667, 4888, 'c', 0),
                   (4, 2, 1, 1, '2026-11-12', 'ZD11', '123456', 8889, 1067, 7822, 'd', 1);
        INSERT INTO certificates (number, answer_id, matricule, valid_from, valid_to, acts, sessions_authorised,
                                  sessions_billed)
            VALUES ('TPC-1', 1, '1974091186700', '2026-10-01', '2027-03-31', 'ZD11:1;ZD12:1;ZD13:4', 6, 2);
    """)
    conn.close()


def _last(conn):
    return dict(conn.execute("SELECT number, last_session FROM certificates").fetchall())


def test_the_last_session_of_each_certificate_is_kept_from_the_migration_on(tmp_path):
    _v6_database(tmp_path / "v6.sqlite")
    conn = database.connect(tmp_path / "v6.sqlite")
    try:
        assert _last(conn) == {"TPC-1": "2026-11-10"}   # the copy of 2026-11-17 does not count
        # A certificate answered after its sessions were billed: its last session at once.
        conn.execute("INSERT INTO certificates (number, answer_id, matricule, valid_from, valid_to, acts, "
                     "sessions_authorised) VALUES ('TPC-2', 1, '1982080285657', '2026-11-01', '2027-04-30', 'ZD11:1', 1)")
        assert _last(conn)["TPC-2"] == "2026-11-12"
        # Import recounts a certificate when its sessions change (a copy counts in place of a
        # billing the CNS rejected): the last session follows.
        conn.execute("UPDATE sessions SET counted = 1 - counted WHERE id IN (2, 3)")
        conn.execute(f"UPDATE certificates SET sessions_billed = (SELECT count(*) FROM {database.COUNTED_SESSIONS} "
                     "WHERE f.certificate_number = certificates.number)")
        assert _last(conn) == {"TPC-1": "2026-11-17", "TPC-2": "2026-11-12"}
        plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN SELECT number FROM certificates "
                                                   "WHERE superseded = 0 AND valid_to >= '2026-01-01' "
                                                   "ORDER BY valid_to, number LIMIT 10"))
        assert "certificates_standing" in plan and "TEMP B-TREE" not in plan
    finally:
        conn.close()
