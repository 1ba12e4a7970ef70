"""Minors pay nothing on the age they had on the prescription date (issue 14).

The CNS pays 100 % "when the insured person has not reached the age of 18 years on the
issuance date of the medical prescription". Each rule is tried at its boundary (the day before,
the day of, the day after) by build-invoice, by validate and by the CNS sandbox alike:

- the share follows the age on the prescription date (NOM03; C05 in the sandbox);
- without a prescription date, the share is given only when every possible date agrees
  (under 18 on the session date, or 21 and older), else NOM06;
- a session before its prescription is NOM08; two dates for one certificate NOM07;
- schema v1 documents, which cannot carry the date, keep being judged on the session date.

The patient of the issue is born 2008-12-15: 18 on 2026-12-15, 21 on 2029-12-15.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from cns_exchange.billing.build import load_fee_notes
from cns_exchange.errors import InputError
from cns_exchange.domain.identifiers import birth_date
from cns_exchange.domain.model import BilledSession, FeeNote, Header
from cns_exchange.domain.nomenclature import NoTariffError, PrescriptionDateNeeded, load_codes, load_nomenclature
from cns_exchange.documents.schemas import SchemaRegistry
from cns_exchange.validation.validate import Validator
from cns_exchange.documents.read import read_document
from cns_exchange.documents.write import write_billing_file
from conftest import EXAMPLES, PROVIDER, SCHEMAS, make_matricule, xmllint

BORN = date(2008, 12, 15)
PATIENT = make_matricule(BORN)
BIRTHDAY = date(2026, 12, 15)          # 18
CERT = "TPC-2026-000500"
CREATED = "2026-12-21T09:00:00+01:00"  # schema v2 is in force (from 2026-12-01)
PRESCRIPTION_PDF = EXAMPLES / "prescriptions" / "ordonnance-REQ-0001.pdf"
DAY = timedelta(days=1)
ADULT_SHARE = {"ZD11": "10.67", "ZD12": "13.33", "ZD13": "6.67", "ZD21": "6.67"}


def sessions_csv(folder: Path, rows: list[tuple], prescribed: bool = True) -> Path:
    """A sessions input: (certificate, matricule, session date, act[, prescription date]) rows."""
    columns = ["certificate_number", "matricule", "session_date", "act_code"] + (["prescription_date"] if prescribed else [])
    path = folder / f"sessions-{len(list(folder.glob('sessions-*.csv')))}.csv"
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[str(v) for v in row] for row in rows])
    path.write_text(out.getvalue(), "utf-8")
    return path


def build(run, source: Path, created: str = CREATED, *options: str):
    return run("build-invoice", str(source), "--provider", PROVIDER, "--created", created, *options)


def shares(xml: bytes) -> list[str]:
    return [s.findtext("ParticipationPersonnelle") for s in etree.fromstring(xml).iter("Seance")]


def document(tmp_path: Path, xml: bytes, name: str = "123456_FAC_20261221_000001.xml") -> Path:
    path = tmp_path / name
    path.write_bytes(xml)
    return path


def codes_of(run, path: Path) -> tuple[int, list[str]]:
    r = run("validate", "--json", str(path))
    [report] = json.loads(r.stdout)
    return r.exit_code, [i["code"] for i in report["issues"] if i["severity"] == "error"]


# --- the share follows the age on the prescription date: build, validate ----------------------

def written(path: Path, version: str, prescribed: date | None, sessions: list[tuple[date, str, int, int]],
            created: datetime = datetime(2026, 12, 21, 9, 0, tzinfo=timezone(timedelta(hours=1)))) -> Path:
    """A billing file of one fee note of the patient, written as stated: (day, act, gross, share)
    per session, cents; its header totals are the sums (so that only the share can be wrong)."""
    note = FeeNote(1, CERT, PATIENT, "", "", prescription_date=prescribed)
    note.sessions = [BilledSession(n, day, act, PROVIDER, gross, share, gross - share)
                     for n, (day, act, gross, share) in enumerate(sessions, 1)]
    with open(path, "wb") as f:
        write_billing_file(f, Header(PROVIDER, created, 1, version), [note])
    return path


@pytest.mark.parametrize("prescribed,share", [
    (BIRTHDAY - DAY, "0.00"),     # 17 on the prescription date: nothing to pay on any session
    (BIRTHDAY, "6.67"),           # 18 on it: 12 %
    (BIRTHDAY + DAY, "6.67"),
])
def test_build_and_validate_take_the_age_on_the_prescription_date(run, tmp_path, prescribed, share):
    source = sessions_csv(tmp_path, [(CERT, PATIENT, "2026-12-17", "ZD13", prescribed),
                                     (CERT, PATIENT, "2026-12-20", "ZD13", prescribed)])
    r = build(run, source)
    assert r.exit_code == 0, r.stderr
    assert shares(r.stdout_bytes) == [share, share]
    root = etree.fromstring(r.stdout_bytes)
    assert root.findtext("EnTete/VersionSchema") == "2"
    assert root.findtext("MemoireHonoraires/DateOrdonnance") == prescribed.isoformat()
    built = document(tmp_path, r.stdout_bytes)
    assert codes_of(run, built) == (0, [])
    lint = xmllint(built, SCHEMAS / "v2" / "facturation.xsd")   # a second validator of v2
    assert lint.returncode == 0, lint.stderr
    # Validate alike: on that prescription date, one share is right and the other is NOM03.
    for cents in (0, 667):
        path = written(tmp_path / f"123456_FAC_20261221_00000{2 + bool(cents)}.xml", "2", prescribed,
                       [(date(2026, 12, 17), "ZD13", 5555, cents), (date(2026, 12, 20), "ZD13", 5555, cents)])
        right = f"{cents // 100}.{cents % 100:02d}" == share
        assert codes_of(run, path) == ((0, []) if right else (3, ["NOM03", "NOM03"]))


def test_the_issue_example_pays_nothing_on_both_sides_of_the_birthday(run, tmp_path):
    """Sessions on 2026-12-10 and 2026-12-20 on a prescription of 2026-12-01: 0.00 twice (it was 0.00, then 13.33)."""
    source = sessions_csv(tmp_path, [(CERT, PATIENT, "2026-12-10", "ZD12", "2026-12-01"),
                                     (CERT, PATIENT, "2026-12-20", "ZD13", "2026-12-01")])
    r = build(run, source)
    assert r.exit_code == 0, r.stderr
    assert shares(r.stdout_bytes) == ["0.00", "0.00"]
    assert "EUR to the CNS" in r.stderr and "166.66 EUR to the CNS" in r.stderr
    assert codes_of(run, document(tmp_path, r.stdout_bytes)) == (0, [])


# --- without the prescription date: given only when certain, else NOM06 ------------------------

@pytest.mark.parametrize("session,share", [
    (BIRTHDAY - DAY, "0.00"),           # under 18 on the session date: under 18 on any prescription before it
    (BIRTHDAY, None),                   # 18 on the session date: depends on the prescription
    (BIRTHDAY + DAY, None),
    (date(2029, 12, 14), None),         # the day before 21
    (date(2029, 12, 15), "13.33"),      # 21: 18 on any prescription of the 3 years before
    (date(2029, 12, 16), "13.33"),
])
def test_without_a_prescription_date_build_gives_only_a_certain_share(run, tmp_path, session, share):
    source = sessions_csv(tmp_path, [(CERT, PATIENT, session, "ZD12")], prescribed=False)
    r = build(run, source, f"{session + DAY}T09:00:00+01:00")
    if share is not None:
        assert r.exit_code == 0, r.stderr
        assert shares(r.stdout_bytes) == [share]
        assert b"DateOrdonnance" not in r.stdout_bytes
        return
    assert r.exit_code == 3
    assert r.stdout == ""
    assert f"{source}:2 [prescription_date]: error NOM06: the patient came of age on 2026-12-15" in r.stderr
    # It says which column and which import would tell it.
    assert "a prescription_date column of the sessions" in r.stderr and "cnsx import" in r.stderr


def _v2_without_date(run, tmp_path: Path, session: date) -> Path:
    """A v2 billing file of one session, built with a prescription date whose DateOrdonnance is then taken out."""
    source = sessions_csv(tmp_path, [(CERT, PATIENT, session, "ZD12", session)])
    r = build(run, source, f"{session + DAY}T09:00:00+01:00")
    assert r.exit_code == 0, r.stderr
    xml = r.stdout_bytes.replace(f"    <DateOrdonnance>{session}</DateOrdonnance>\n".encode(), b"")
    assert b"DateOrdonnance" not in xml
    return document(tmp_path, xml, f"123456_FAC_{session + DAY:%Y%m%d}_000001.xml")


@pytest.mark.parametrize("session,needed", [
    (BIRTHDAY - DAY, False), (BIRTHDAY, True), (BIRTHDAY + DAY, True),
    (date(2029, 12, 14), True), (date(2029, 12, 15), False), (date(2029, 12, 16), False),
])
def test_validate_wants_the_date_where_build_does(run, tmp_path, session, needed):
    path = _v2_without_date(run, tmp_path, session)
    code, errors = codes_of(run, path)
    if not needed:
        # Built on the session date as prescription date: the share is the certain one either way.
        assert (code, errors) == (0, [])
    else:
        assert (code, errors) == (3, ["NOM06"])


# --- a session before its prescription: NOM08 --------------------------------------------------

@pytest.mark.parametrize("session,ok", [(date(2026, 12, 9), False), (date(2026, 12, 10), True), (date(2026, 12, 11), True)])
def test_a_session_before_its_prescription_is_refused_by_build_and_validate(run, tmp_path, session, ok):
    prescribed = date(2026, 12, 10)
    r = build(run, sessions_csv(tmp_path, [(CERT, PATIENT, session, "ZD11", prescribed)]))
    if ok:
        assert r.exit_code == 0, r.stderr
        return
    assert r.exit_code == 3
    assert f"error NOM08: session date {session} is before the prescription date {prescribed}" in r.stderr
    # The same file, written anyway: validate says the same.
    made = build(run, sessions_csv(tmp_path, [(CERT, PATIENT, session, "ZD11", session)]))
    xml = made.stdout_bytes.replace(f"<DateOrdonnance>{session}".encode(), f"<DateOrdonnance>{prescribed}".encode())
    assert codes_of(run, document(tmp_path, xml)) == (3, ["NOM08"])


# --- where the date comes from: the database, the column; both must agree ---------------------

def test_two_rows_of_one_certificate_with_two_dates_are_refused(run, tmp_path):
    source = sessions_csv(tmp_path, [(CERT, PATIENT, "2026-12-17", "ZD11", "2026-12-01"),
                                     (CERT, PATIENT, "2026-12-20", "ZD12", "2026-12-02")])
    r = build(run, source)
    assert r.exit_code == 3
    assert (f"{source}:3 [prescription_date]: error NOM07: prescription date 2026-12-02 differs from 2026-12-01 on line 2"
            in r.stderr)


@pytest.fixture
def database(run, data) -> Path:
    """A practice database holding the examples' requests and the CNS's answers (REQ-0001:
    prescription 2026-10-15 -> TPC-2026-000101, Schmit, born 1974)."""
    r = run("import", str(EXAMPLES / "123456_DTP_20261120_000001.xml"), str(EXAMPLES / "CNS_RTP_20261120_000002.xml"))
    assert r.exit_code == 0, r.stderr
    return data / "practice.sqlite"


def test_the_database_gives_the_certificates_prescription_date(run, tmp_path, database):
    source = sessions_csv(tmp_path, [("TPC-2026-000101", "1974091186700", "2026-12-01", "ZD11")], prescribed=False)
    r = build(run, source, "2026-12-02T09:00:00+01:00")
    assert r.exit_code == 0, r.stderr
    assert etree.fromstring(r.stdout_bytes).findtext("MemoireHonoraires/DateOrdonnance") == "2026-10-15"


def test_a_column_that_contradicts_the_database_is_refused_naming_both(run, tmp_path, database):
    source = sessions_csv(tmp_path, [("TPC-2026-000101", "1974091186700", "2026-12-01", "ZD11", "2026-10-16")])
    r = build(run, source, "2026-12-02T09:00:00+01:00")
    assert r.exit_code == 3
    assert ("error NOM07: prescription date 2026-10-16 differs from 2026-10-15, the date of request REQ-0001 of "
            "certificate TPC-2026-000101 in the practice database") in r.stderr
    agreeing = sessions_csv(tmp_path, [("TPC-2026-000101", "1974091186700", "2026-12-01", "ZD11", "2026-10-15")])
    assert build(run, agreeing, "2026-12-02T09:00:00+01:00").exit_code == 0


# --- schema v1: no prescription date, judged on the session date -------------------------------

def test_v1_documents_keep_being_judged_on_the_session_date(run, tmp_path):
    source = sessions_csv(tmp_path, [(CERT, PATIENT, "2026-12-10", "ZD13"), (CERT, PATIENT, "2026-12-20", "ZD13")],
                          prescribed=False)
    r = build(run, source, CREATED, "--schema-version", "1")
    assert r.exit_code == 0, r.stderr
    assert etree.fromstring(r.stdout_bytes).findtext("EnTete/VersionSchema") == "1"
    assert shares(r.stdout_bytes) == ["0.00", "6.67"]     # as v1 was made to: 17, then 18 on the session date
    v1 = document(tmp_path, r.stdout_bytes)
    assert codes_of(run, v1) == (0, [])
    # A 0.00 share on the session of an 18-year-old is still NOM03 in v1.
    wrong = written(tmp_path / "123456_FAC_20261221_000002.xml", "1", None,
                    [(date(2026, 12, 10), "ZD13", 5555, 0), (date(2026, 12, 20), "ZD13", 5555, 0)])
    assert codes_of(run, wrong) == (3, ["NOM03"])


def test_a_v1_build_refuses_a_share_that_the_prescription_date_changes(run, tmp_path):
    source = sessions_csv(tmp_path, [(CERT, PATIENT, "2026-12-10", "ZD13", "2026-12-01"),
                                     (CERT, PATIENT, "2026-12-20", "ZD13", "2026-12-01")])
    r = build(run, source, CREATED, "--schema-version", "1")
    assert r.exit_code == 3
    assert r.stderr.count("error ") == 1
    assert "error NOM06: the patient share on the prescription date 2026-12-01 is not the one on the session date " \
           "2026-12-20, on which schema version 1 judges it" in r.stderr
    # Where the date changes nothing, v1 is written, without it.
    same = sessions_csv(tmp_path, [(CERT, PATIENT, "2026-12-10", "ZD12", "2026-12-01")])
    r = build(run, same, CREATED, "--schema-version", "1")
    assert r.exit_code == 0, r.stderr
    assert b"DateOrdonnance" not in r.stdout_bytes


@pytest.mark.parametrize("created,version", [("2026-11-30T23:00:00+01:00", "1"), ("2026-12-01T00:00:00+01:00", "2")])
def test_builds_write_v2_from_its_first_day(run, tmp_path, created, version):
    source = sessions_csv(tmp_path, [("T1", "1974091186700", "2026-11-30", "ZD11")], prescribed=False)
    r = build(run, source, created)
    assert r.exit_code == 0, r.stderr
    assert etree.fromstring(r.stdout_bytes).findtext("EnTete/VersionSchema") == version


@pytest.mark.parametrize("created,ok", [("2027-02-28T12:00:00+01:00", True), ("2027-03-01T12:00:00+01:00", False)])
def test_v1_can_be_written_for_three_months_and_read_for_ever(run, tmp_path, created, ok):
    source = sessions_csv(tmp_path, [("T1", "1974091186700", "2027-02-27", "ZD11")], prescribed=False)
    r = build(run, source, created, "--schema-version", "1")
    assert r.exit_code == (0 if ok else 4), r.stderr
    if not ok:
        assert "schema version 1 is not in force on 2027-03-01" in r.stderr
    assert codes_of(run, EXAMPLES / "123456_FAC_20261120_000001.xml") == (0, [])


# --- one engine: build and validate find the same problems ------------------------------------

CODES = load_codes()
NOMENCLATURE = load_nomenclature()
VALIDATOR = Validator(SchemaRegistry([]), CODES, NOMENCLATURE, 1 << 30)
CREATED_AT = datetime(2030, 1, 2, 9, 0, tzinfo=timezone(timedelta(hours=1)))
#: Patients who come of age around the sessions drawn below, and one who never does.
PATIENTS = [make_matricule(d) for d in (date(2008, 12, 15), date(2009, 2, 28), date(2010, 6, 1), date(1974, 9, 11))]


def _by_build(rows) -> list[tuple[str, str]]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["certificate_number", "matricule", "session_date", "act_code", "prescription_date"])
    writer.writerows(rows)
    try:
        _, report = load_fee_notes(io.BytesIO(out.getvalue().encode()), "rows.csv", "csv", CODES, NOMENCLATURE,
                                   PROVIDER, CREATED_AT.date())
        issues = report.issues
    except InputError as exc:
        issues = exc.issues
    return sorted((i.code, i.message) for i in issues)


def _by_validate(rows, path: Path) -> list[tuple[str, str]]:
    """The v2 document of ``rows`` as build would write it, each session at the tariff's price
    on its prescription date where there is one (1.00 where the engine cannot price it)."""
    groups: dict[tuple[str, str], list] = {}
    prescribed: dict[tuple[str, str], date | None] = {}
    for line, (cert, matricule, day, act, when) in enumerate(rows):
        groups.setdefault((cert, matricule), []).append((date.fromisoformat(day), line, act))
        prescribed[(cert, matricule)] = date.fromisoformat(when) if when else None
    notes = []
    for key, sessions in groups.items():
        sessions.sort()
        note = FeeNote(len(notes) + 1, key[0], key[1], "", "", prescription_date=prescribed[key])
        for n, (day, _, act) in enumerate(sessions, 1):
            gross, share = 100, 12
            try:
                price = NOMENCLATURE.price_for(act, day, birth_date(key[1]), prescribed[key])
                gross, share = price.gross, price.patient_share
            except (NoTariffError, PrescriptionDateNeeded):
                pass
            note.sessions.append(BilledSession(n, day, act, PROVIDER, gross, share, gross - share))
        notes.append(note)
    with open(path, "wb") as f:
        write_billing_file(f, Header(PROVIDER, CREATED_AT, 1, "2"), notes)
    report = VALIDATOR.validate(str(path), check_name=False)
    assert not [i for i in report.issues if i.code.startswith(("XSD", "XML", "VAL"))], report.issues
    return sorted((i.code, i.message) for i in report.issues)


_certificate = st.sampled_from(list(zip(["T1", "T2", "T3", "T4"], PATIENTS)))
_when = st.one_of(st.just(""), st.dates(date(2026, 6, 1), date(2029, 12, 31)).map(date.isoformat))


@st.composite
def _rows(draw):
    prescriptions = {cert: draw(_when) for cert in ("T1", "T2", "T3", "T4")}   # one date per certificate
    rows = []
    for _ in range(draw(st.integers(1, 8))):
        cert, matricule = draw(_certificate)
        day = draw(st.dates(date(2026, 6, 1), date(2030, 1, 1)))
        rows.append((cert, matricule, day.isoformat(), draw(st.sampled_from(["ZD11", "ZD12", "ZD13"])), prescriptions[cert]))
    return rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows())
def test_build_and_validate_judge_the_share_alike(tmp_path, rows):
    assert _by_build(rows) == _by_validate(rows, tmp_path / "doc.xml")


def test_the_cases_above_reach_every_new_rule(tmp_path):
    rows = [("T1", PATIENTS[0], "2026-12-20", "ZD11", ""),            # 18, no date: NOM06
            ("T2", PATIENTS[1], "2026-12-20", "ZD11", "2026-12-21")]  # before its prescription: NOM08
    found = _by_build(rows)
    assert found == _by_validate(rows, tmp_path / "doc.xml")
    assert {code for code, _ in found} - {"NOM05"} == {"NOM06", "NOM08"}   # (NOM05: the bundled table's age)


# --- the CNS sandbox judges alike, from its own memory -----------------------------------------

def _request_csv(folder: Path, prescribed: date, ref: str = "REQ-M1") -> Path:
    path = folder / f"requests-{ref}.csv"
    path.write_text("request_ref;matricule;last_name;first_name;prescriber_code;prescription_date;pathology_codes;"
                    "treatment;prescription_pdf\n"
                    f"{ref};{PATIENT};Muller;Lena;12345678;{prescribed};D10;initial;{PRESCRIPTION_PDF}\n", "utf-8")
    return path


def _sandbox(run, box: Path) -> dict[str, list[Path]]:
    download = box / "download"
    before = set(download.iterdir()) if download.is_dir() else set()
    r = run("sandbox", "--root", str(box), "--once")
    assert r.exit_code == 0, r.stderr
    new: dict[str, list[Path]] = {}
    for path in sorted(set(download.iterdir()) - before):
        new.setdefault(path.name.split("_")[1], []).append(path)
    return new


def _records(path: Path, kind: str, root: str) -> list:
    with open(path, "rb") as f:
        return [item.record for item in read_document(f, kind, root) if item.what == "item"]


@pytest.mark.parametrize("prescribed,told", [
    (BIRTHDAY - DAY, BIRTHDAY),        # granted on a minor's prescription; the file says 18: 12 % billed
    (BIRTHDAY, BIRTHDAY - DAY),        # granted on an adult's; the file says 17: 0.00 billed
    (BIRTHDAY + DAY, BIRTHDAY - DAY),
])
def test_the_sandbox_pays_the_share_of_the_prescription_it_granted(run, tmp_path, prescribed, told):
    box = tmp_path / "dropbox"
    (box / "upload").mkdir(parents=True)
    r = run("build-request", str(_request_csv(tmp_path, prescribed)), "--provider", PROVIDER,
            "--created", "2026-12-16T09:00:00+01:00", "-o", str(box / "upload"))
    assert r.exit_code == 0, r.stderr
    [answers] = _sandbox(run, box)["RTP"]
    [granted] = _records(answers, "answers", "ReponsesTitrePriseEnCharge")
    cert = granted.certificate.number
    rows = lambda when: [(cert, PATIENT, "2026-12-17", "ZD11", when), (cert, PATIENT, "2026-12-20", "ZD12", when)]
    # First a file whose DateOrdonnance is on the other side of the birthday: valid in itself,
    # accepted, and disputed by the sandbox, which knows the prescription it granted.
    for when in (told, prescribed):
        r = build(run, sessions_csv(tmp_path, rows(when)), CREATED, "-o", str(box / "upload"))
        assert r.exit_code == 0, r.stderr
    answered = _sandbox(run, box)
    assert [a.read_text("utf-8").count("<Statut>accepte</Statut>") for a in answered["ACR"]] == [1, 1]
    lied, right = answered["DEC"]
    assert [(line.reason_code, line.accepted) for line in _records(lied, "payment", "JustificatifPaiement")] == \
           [("C05", 0), ("C05", 0)]
    paid = _records(right, "payment", "JustificatifPaiement")
    assert [line.reason_code for line in paid] == ["", ""]
    minor = prescribed < BIRTHDAY
    assert [line.accepted for line in paid] == ([8889, 11111] if minor else [7822, 9778])


def test_the_sandbox_rejects_what_validate_refuses(run, tmp_path):
    box = tmp_path / "dropbox"
    (box / "upload").mkdir(parents=True)
    shutil.copy(_v2_without_date(run, tmp_path, BIRTHDAY), box / "upload")                 # NOM06
    made = build(run, sessions_csv(tmp_path, [(CERT, PATIENT, "2026-12-09", "ZD11", "2026-12-09")]),
                 "2026-12-10T09:00:00+01:00")
    (box / "upload" / "123456_FAC_20261210_000002.xml").write_bytes(
        made.stdout_bytes.replace(b"<DateOrdonnance>2026-12-09", b"<DateOrdonnance>2026-12-10"))  # NOM08
    acks = _sandbox(run, box)["ACR"]
    anomalies = [[a.code for a in _records(ack, "ack", "AccuseReception")[0].anomalies] for ack in acks]
    assert sorted(anomalies) == [["NOM06"], ["NOM08"]]


# --- the whole exchange: the patient turns 18 between prescription and sessions ----------------

def test_a_patient_who_turns_18_after_the_prescription_pays_nothing_through_the_whole_exchange(run, tmp_path, dropbox):
    root, data = dropbox
    outbox = tmp_path / "outbox"
    outbox.mkdir()

    def night() -> None:
        """The CNS (the sandbox) answers what was sent; cnsx nightly fetches and imports it."""
        assert run("sandbox", "--once").exit_code == 0
        nightly = run("nightly")
        assert nightly.exit_code == 0, nightly.stderr

    # The prescription of 2026-12-01, when the patient is 17, is validated by the CNS.
    r = run("build-request", str(_request_csv(tmp_path, date(2026, 12, 1))), "--created", "2026-12-02T09:00:00+01:00",
            "-o", str(outbox))
    assert r.exit_code == 0, r.stderr
    assert run("upload", *map(str, outbox.glob("*_DTP_*.xml"))).exit_code == 0
    night()
    db = sqlite3.connect(data / "practice.sqlite")
    [(cert,)] = db.execute("SELECT number FROM certificates").fetchall()
    # Sessions on both sides of the 18th birthday (2026-12-15), with no prescription date in the
    # input: the certificate knows its request.
    sessions = sessions_csv(tmp_path, [(cert, PATIENT, "2026-12-10", "ZD11"), (cert, PATIENT, "2026-12-20", "ZD12")],
                            prescribed=False)
    r = run("build-invoice", str(sessions), "--created", CREATED, "-o", str(outbox))
    assert r.exit_code == 0, r.stderr
    [billing] = outbox.glob("*_FAC_*.xml")
    xml = billing.read_bytes()
    assert shares(xml) == ["0.00", "0.00"]
    assert etree.fromstring(xml).findtext("MemoireHonoraires/DateOrdonnance") == "2026-12-01"
    assert run("validate", str(billing)).exit_code == 0
    assert run("upload", str(billing)).exit_code == 0
    night()
    [statement] = (root / "download").glob("CNS_DEC_*.xml")   # (fetch keeps them on the server)
    lines = _records(statement, "payment", "JustificatifPaiement")
    assert [(line.reason_code, line.billed, line.accepted) for line in lines] == [("", 8889, 8889), ("", 11111, 11111)]
    assert db.execute("SELECT patient_share, cns_share, paid FROM sessions ORDER BY session_date").fetchall() == \
           [(0, 8889, 8889), (0, 11111, 11111)]
    status = json.loads(run("status", "--json").stdout)
    assert status["disputed"] == []
