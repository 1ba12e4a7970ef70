"""The IT flat rate: `cnsx status --year YYYY` counts the prescriptions with reimbursed services
of the year and says whether the practice qualifies, with the figures of a claim.

The databases are made by importing documents cnsx writes: a billing file built by
`cnsx build-invoice` from generated sessions, and the CNS's payment statement of it written
with cnsx's writer (as benchmarks/bench_import.py does), paying the prescriptions a test asks.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from datetime import date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cns_exchange.cli import cli
from cns_exchange.domain.model import FileRef, Header, PaymentLine
from cns_exchange.documents.read import read_document
from cns_exchange.documents.write import write_payment_statement
from conftest import EXAMPLES, random_matricules
from test_final_reports import granted_again

SESSIONS_HEADER = ["certificate_number", "matricule", "session_date", "act_code", "executing_provider", "last_name",
                   "first_name"]


def _build_billing(folder: Path, sessions: list[tuple[str, str, str]], created: str, env: dict | None = None) -> Path:
    """Build the billing file of ``sessions`` (certificate, date, act) with cnsx build-invoice;
    one patient per certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    certificates = sorted({c for c, _, _ in sessions})
    patients = dict(zip(certificates, random_matricules(len(certificates))))
    source = folder / "sessions.csv"
    with open(source, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(SESSIONS_HEADER)
        writer.writerows([c, patients[c], day, act, "123456", "Muller", "Anne"] for c, day, act in sessions)
    result = CliRunner().invoke(cli, ["-q", "build-invoice", str(source), "--created", created, "--provider", "123456",
                                      "--no-certificate-check", "-o", str(folder)], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    [billing] = folder.glob("123456_FAC_*.xml")
    return billing


def _pay(billing: Path, folder: Path, paid, awaiting=frozenset(), paid_on: date = date(2026, 1, 20)) -> Path:
    """Write the CNS's payment statement of ``billing``: each line of a certificate in
    ``paid`` accepted in full (``paid`` may also be a predicate on (certificate, line)),
    the lines of ``awaiting`` left out (awaiting payment), any other disputed in full (C01)."""
    accept = paid if callable(paid) else (lambda certificate, line: certificate in paid)
    lines = []
    with open(billing, "rb") as f:
        for item in read_document(f, "billing", "FichierFacturation"):
            if item.what != "item" or item.record.certificate_number in awaiting:
                continue
            note = item.record
            for s in note.sessions:
                if accept(note.certificate_number, s.line_no):
                    lines.append(PaymentLine(note.number, s.line_no, note.certificate_number, s.cns_share, s.cns_share))
                else:
                    lines.append(PaymentLine(note.number, s.line_no, note.certificate_number, s.cns_share, 0, "C01",
                                             "Nombre de séances autorisées dépassé"))
    payment = folder / f"CNS_DEC_{paid_on:%Y%m%d}_000001.xml"
    with open(payment, "wb") as out:
        write_payment_statement(out, Header("123456", datetime(paid_on.year, paid_on.month, paid_on.day, 6), 1, "1"),
                                FileRef(billing.name, hashlib.sha256(billing.read_bytes()).hexdigest()), paid_on,
                                "VIR-1", lines)
    return payment


def _year(run, db: Path, year: int, fmt: str = "--json"):
    r = run("status", fmt, "--year", str(year), "--db", str(db))
    assert r.exit_code == 0, r.stderr
    if fmt != "--json":
        return r.stdout
    [row] = json.loads(r.stdout)["it_flat_rate"]
    return row


# --- 99, 100 and 101 prescriptions --------------------------------------------------------------

#: 101 prescriptions of 2025, one session each but the first two (two sessions); one more
#: billed in 2025 and not paid yet; one on 2024-12-31 and one on 2026-01-01, paid.
YEAR = [f"TPC-2025-{n:06d}" for n in range(1, 102)]
AWAITING, BEFORE, AFTER = "TPC-2025-000500", "TPC-2024-000900", "TPC-2026-000901"


@pytest.fixture(scope="module")
def billing(tmp_path_factory) -> Path:
    days = [date.fromordinal(date(2025, 1, 1).toordinal() + (n * 364) // 100) for n in range(101)]   # 01-01 … 12-31
    assert days[0] == date(2025, 1, 1) and days[-1] == date(2025, 12, 31)
    sessions = [(c, d.isoformat(), "ZD11") for c, d in zip(YEAR, days)]
    sessions += [(YEAR[0], "2025-01-08", "ZD12"), (YEAR[1], "2025-01-12", "ZD12"), (AWAITING, "2025-06-15", "ZD11"),
                 (BEFORE, "2024-12-31", "ZD11"), (AFTER, "2026-01-01", "ZD11")]
    env = {name: None for name in os.environ if name.startswith("CNSX_") and name != "CNSX_NO_SKIP"}
    env["CNSX_CONFIG_DIR"] = str(tmp_path_factory.mktemp("config"))
    return _build_billing(tmp_path_factory.mktemp("billing"), sessions, "2026-01-05T09:00:00+01:00", env)


def _practice(run, billing: Path, tmp_path: Path, paid, awaiting=frozenset()) -> Path:
    db = tmp_path / "practice.sqlite"
    payment = _pay(billing, tmp_path, paid, awaiting)
    r = run("import", "--db", str(db), str(billing), str(payment))
    assert r.exit_code == 0, r.stderr
    return db


@pytest.mark.parametrize("reimbursed, qualifies", [(99, False), (100, True), (101, True)])
def test_the_threshold_of_100_prescriptions(run, data, billing, tmp_path, reimbursed, qualifies):
    """The first ``reimbursed`` prescriptions paid, the others disputed in full; the second
    prescription's second session is disputed too (it counts by its first)."""
    paid = set(YEAR[:reimbursed]) | {BEFORE, AFTER}
    db = _practice(run, billing, tmp_path, lambda c, line: c in paid and not (c == YEAR[1] and line == 2), {AWAITING})
    row = _year(run, db, 2025)
    assert row == {"year": 2025, "providers": "123456", "period_from": "2025-01-01", "period_to": "2025-12-31",
                   "prescriptions": reimbursed, "awaiting_payment": 1, "threshold": 100, "qualifies": qualifies,
                   "amount": "1600.00", "year_ended": True}


def test_the_year_is_that_of_the_session_day_before_day_of_day_after(run, data, billing, tmp_path):
    """Sessions on 2024-12-31, 2025-01-01, 2025-12-31 and 2026-01-01, all paid in January 2026:
    each counts in the year of its session, not of its payment."""
    db = _practice(run, billing, tmp_path, set(YEAR) | {BEFORE, AFTER, AWAITING})
    assert _year(run, db, 2025)["prescriptions"] == 102       # 101 and the one that was awaiting
    before = _year(run, db, 2024)
    assert before["prescriptions"] == 1 and before["period_from"] == "2024-12-31"   # the practice began that day
    assert (before["threshold"], before["amount"], before["qualifies"]) == (1, "4.37", True)   # 1 day of 366
    after = _year(run, db, 2026)
    assert (after["prescriptions"], after["period_from"], after["threshold"], after["qualifies"]) == (
        1, "2026-01-01", 100, False)
    assert after["year_ended"] is (date.today() > date(2026, 12, 31))
    assert after["amount"] == "1600.00"                       # the rate of the year; qualifies says if it is due


def test_a_session_paid_nothing_does_not_count_and_one_awaiting_payment_is_said(run, data, billing, tmp_path):
    db = _practice(run, billing, tmp_path, set(YEAR[:50]), {AWAITING, *YEAR[50:60]})
    row = _year(run, db, 2025)
    assert (row["prescriptions"], row["awaiting_payment"]) == (50, 11)   # 41 disputed in full count for nothing


def test_table_csv_and_pdf_give_the_same_figures(run, data, billing, tmp_path, monkeypatch):
    db = _practice(run, billing, tmp_path, set(YEAR) | {BEFORE, AFTER}, {AWAITING})
    table = _year(run, db, 2025, "--csv")
    rows = [line for line in table.splitlines() if line.startswith(("section,year", "it_flat_rate,"))]
    assert rows == ["section,year,providers,period_from,period_to,prescriptions,awaiting_payment,threshold,qualifies,"
                    "amount,year_ended",
                    "it_flat_rate,2025,123456,2025-01-01,2025-12-31,101,1,100,True,1600.00,True"]
    r = run("status", "--year", "2025", "--db", str(db))
    assert r.exit_code == 0, r.stderr
    assert "it flat rate" in r.stdout and "1600.00" in r.stdout and "2025-12-31" in r.stdout
    assert "yes" in r.stdout and "True" not in r.stdout   # the terminal says yes, --csv and --json True
    monkeypatch.setenv("LANG", "fr_LU.UTF-8")
    french = run("status", "--year", "2025", "--db", str(db))
    assert "forfait informatique" in french.stdout and "oui" in french.stdout and "yes" not in french.stdout
    monkeypatch.delenv("LANG")
    without = run("status", "--json", "--db", str(db))
    assert "it_flat_rate" not in json.loads(without.stdout)   # only when asked for
    from test_cli_print import text_of

    pdf = tmp_path / "s.pdf"
    assert run("status", "--year", "2025", "--pdf", str(pdf), "--db", str(db)).exit_code == 0
    assert "Forfait informatique (art. 38 de la convention) (1)" in text_of(pdf)
    assert "2025 123456 01/01/2025 31/12/2025 101 1 100 oui 1 600,00 oui" in text_of(pdf)


# --- a practice that began during the year: threshold and amount prorated by days -----------

@pytest.mark.parametrize("first, days, threshold, amount", [
    ("2024-12-31", 365, 100, "1600.00"),      # began the year before: the whole year
    ("2025-01-01", 365, 100, "1600.00"),
    ("2025-01-02", 364, 100, "1595.62"),      # 99.73 prescriptions: 100, rounded up; 1595.616… €
    ("2025-07-01", 184, 51, "806.58"),        # 50.41: 51; 806.575… € half up
])
def test_a_year_begun_during_it_is_prorated_by_days(run, data, tmp_path, first, days, threshold, amount):
    sessions = [(f"TPC-2025-{n:06d}", "2025-12-01", "ZD11") for n in range(1, 4)] + [("TPC-2025-000999", first, "ZD11")]
    billing = _build_billing(tmp_path / "billing", sessions, "2025-12-20T09:00:00+01:00")
    db = _practice(run, billing, tmp_path, {c for c, _, _ in sessions})
    row = _year(run, db, 2025)
    assert row["period_from"] == max(first, "2025-01-01") and row["period_to"] == "2025-12-31"
    assert (date(2025, 12, 31) - date.fromisoformat(row["period_from"])).days + 1 == days
    assert (row["threshold"], row["amount"]) == (threshold, amount)


@pytest.mark.parametrize("reimbursed, qualifies", [(50, False), (51, True), (52, True)])
def test_the_prorated_threshold(run, data, tmp_path, reimbursed, qualifies):
    """Begun on 2025-07-01: 184 days of 365, 51 prescriptions needed (100 × 184 / 365 = 50.41)."""
    sessions = [(f"TPC-2025-{n:06d}", f"2025-{7 + n % 6:02d}-{1 + n % 28:02d}", "ZD11") for n in range(52)]
    sessions[0] = (sessions[0][0], "2025-07-01", "ZD11")
    billing = _build_billing(tmp_path / "billing", sessions, "2025-12-31T18:00:00+01:00")
    db = _practice(run, billing, tmp_path, {c for c, _, _ in sessions[:reimbursed]})
    row = _year(run, db, 2025)
    assert (row["period_from"], row["threshold"], row["prescriptions"], row["qualifies"], row["amount"]) == (
        "2025-07-01", 51, reimbursed, qualifies, "806.58")


def test_a_request_sent_before_the_first_session_starts_the_activity(run, data, tmp_path):
    requests = tmp_path / "requests.csv"
    requests.write_text("request_ref;matricule;last_name;first_name;prescriber_code;prescription_date;pathology_codes;"
                        f"treatment;prescription_pdf\nREQ-0001;1974091186700;Schmit;Léa;23456789;2025-06-15;D12;initial;"
                        f"{EXAMPLES / 'prescriptions' / 'ordonnance-REQ-0001.pdf'}\n", "utf-8")
    out = tmp_path / "outbox"
    out.mkdir()
    built = run("build-request", str(requests), "--created", "2025-06-20T09:00:00+02:00", "--provider", "123456",
                "-o", str(out))
    assert built.exit_code == 0, built.stderr
    billing = _build_billing(tmp_path / "billing", [("TPC-2025-000001", "2025-07-01", "ZD11")], "2025-07-02T09:00:00+02:00")
    db = _practice(run, billing, tmp_path, {"TPC-2025-000001"})
    assert run("import", "--db", str(db), *map(str, out.glob("*_DTP_*.xml"))).exit_code == 0
    assert _year(run, db, 2025)["period_from"] == "2025-06-20"


# --- what is refused --------------------------------------------------------------------------

def test_a_year_without_a_known_rate_and_a_case_are_refused(run, data, billing, tmp_path):
    db = _practice(run, billing, tmp_path, set(YEAR))
    r = run("status", "--json", "--year", "2020", "--db", str(db))
    assert r.exit_code == 2 and r.stdout == ""
    assert "--year 2020: cnsx knows the IT flat rate from 2021 on" in r.stderr
    assert _year(run, db, 2021)["prescriptions"] == 0                    # the first year it knows
    r = run("status", "--year", "2025", "--certificate", YEAR[0], "--db", str(db))
    assert r.exit_code == 2 and "the IT flat rate is the whole practice's" in r.stderr
    assert run("status", "--year", "25", "--db", str(db)).exit_code == 2


def test_a_year_without_activity(run, data, billing, tmp_path):
    db = _practice(run, billing, tmp_path, set(YEAR))
    row = _year(run, db, 2023)                                           # before the practice's first day
    assert (row["period_from"], row["prescriptions"], row["threshold"], row["qualifies"], row["amount"]) == (
        None, 0, 0, False, "0.00")


def test_a_prescription_answered_twice_counts_once(run, data, tmp_path):
    """The examples, then a later answer of the CNS granting REQ-0001 again under another
    number: sessions paid on both certificates are one prescription (the request)."""
    again = granted_again(tmp_path)
    db = tmp_path / "practice.sqlite"
    documents = ["123456_DTP_20261120_000001.xml", "123456_FAC_20261120_000001.xml", "CNS_RTP_20261120_000002.xml",
                 "CNS_DEC_20261125_000001.xml"]
    assert run("import", "--db", str(db), *(str(EXAMPLES / n) for n in documents), str(again)).exit_code == 0
    billing = _build_billing(tmp_path / "billing", [("TPC-2026-000201", "2026-11-17", "ZD13")], "2026-11-20T09:00:00+01:00")
    payment = _pay(billing, tmp_path, {"TPC-2026-000201"}, paid_on=date(2026, 11, 30))
    assert run("import", "--db", str(db), str(billing), str(payment)).exit_code == 0
    # REQ-0001 (TPC-2026-000101 and …201), REQ-0002 (…102), and …087, which the database holds no request of
    assert _year(run, db, 2026)["prescriptions"] == 3
