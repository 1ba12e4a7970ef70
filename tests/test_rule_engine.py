"""One implementation of each rule: the rule engine (cns_exchange/validation/rules.py), called by build
and by validate alike.

- Each business rule code of the catalogue is produced in one home: the engine's modules
  (rules, treatment, identifiers), or, for what only one side can see, the module named here
  with its reason. A second road that writes a rule again fails this test.
- The same sessions, given as rows to build-invoice and as a billing document to validate,
  get the same problems (code and message), on a table of faults and on files Hypothesis
  draws anew on each run (it prints the falsifying file and the seed to replay it).
"""

from __future__ import annotations

import ast
import csv
import io
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cns_exchange.billing.build import load_fee_notes
from cns_exchange.errors import InputError
from cns_exchange.domain.identifiers import birth_date, check_matricule
from cns_exchange.issues import CATALOGUE
from cns_exchange.domain.model import BilledSession, FeeNote, Header
from cns_exchange.domain.nomenclature import Nomenclature, NoTariffError, load_codes, load_nomenclature
from cns_exchange.documents.schemas import SchemaRegistry
from cns_exchange.validation.validate import Validator
from cns_exchange.documents.write import write_billing_file
from conftest import VALID_MATRICULES, make_matricule

PACKAGE = Path(__file__).resolve().parent.parent / "cns_exchange"
CODES = load_codes()
#: The bundled table, and its figures again from 2025-11-01 (a practice's own table): taken as
#: current up to 2026-11-01, so that NOM05 is one fault among others below.
NOMENCLATURE = Nomenclature(load_nomenclature().tables
                            + [replace(load_nomenclature().tables[0], valid_from=date(2025, 11, 1), path="2025-11-01.json")])
VALIDATOR = Validator(SchemaRegistry([]), CODES, NOMENCLATURE, 1 << 30)
PROVIDER = "123456"
CREATED = datetime(2026, 11, 20, 9, 0, tzinfo=timezone(timedelta(hours=1)))

#: The engine's modules: every rule of rows and documents alike is written here, once.
ENGINE = {"validation/rules.py", "domain/treatment.py", "domain/identifiers.py"}
#: Rules only one side can see, each in its one home.
ONE_SIDED = {
    "CRT01": ({"rows/records.py"}, "a certificate number's form in a row (a document's is its XSD's)"),
    **{code: ({"billing/build.py"}, "sessions against the certificates imported into the database (build's CertificateBook)")
       for code in ("CRT02", "CRT03", "CRT04", "CRT05", "CRT06")},
    **{code: ({"validation/validate.py"}, "a document's header counts and totals, a certificate's dates, payment lines")
       for code in ("DOC01", "DOC02", "DOC03", "DOC04", "DOC05")},
    "DOC08": ({"validation/rules.py", "validation/validate.py"}, "a line given twice: in a fee note (the engine's), in a payment statement (validate's)"),
    "NOM07": ({"billing/notes.py"}, "a certificate's prescription date given twice, by rows or by rows and the database "
                            "(a document carries it once per fee note)"),
}
#: Modules that name a rule code without deciding it again (they are not a second road).
NOT_A_ROAD = {
    "issues.py": "the catalogue itself",
    "transport/sandbox_judge.py": "the CNS's stand-in: a separate judge, compared with the engine by its own tests",
    "pdf/printing.py": "checks that the printed summary adds up to the header validate already checked",
    "store/importing.py": "import reads leniently: it does not repeat the advice of NOM05 for a file already sent",
    "store/matching.py": "import's database side: a duplicate line it leaves out is a warning (DOC08)",
    "transport/upload.py": "upload's own checks of a document's kind and name (DOC06, DOC07, DOC09)",
}
RULE_PREFIXES = ("MAT", "PRV", "PRS", "PAT", "ACT", "CRT", "NOM", "TRT", "DOC")


def _literals(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text("utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_every_rule_code_is_decided_in_one_home():
    literals = {str(p.relative_to(PACKAGE)): _literals(p) for p in PACKAGE.rglob("*.py")
                if str(p.relative_to(PACKAGE)) not in NOT_A_ROAD}
    rule_codes = [code for code in CATALOGUE if code.startswith(RULE_PREFIXES) and code not in ("DOC06", "DOC07", "DOC09")]
    assert len(rule_codes) > 30
    wrong = {}
    for code in rule_codes:
        homes = {name for name, found in literals.items() if code in found}
        allowed = ONE_SIDED.get(code, (ENGINE, ""))[0]
        if not homes or not homes <= allowed:
            wrong[code] = sorted(homes)
    assert not wrong, f"rule codes written outside their one home: {wrong}"


# --- the same sessions, as rows and as a document ------------------------------------------

def _rows_csv(rows: list[tuple[str, str, str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["certificate_number", "matricule", "session_date", "act_code"])
    writer.writerows(rows)
    return out.getvalue().encode()


def _document(rows: list[tuple[str, str, str, str]], path: Path) -> Path:
    """The billing document of ``rows``, written as build groups them (per certificate and
    patient, by date) but with no check: each session at the tariff's price where there is
    one, else at 1.00 (the engine does not price what it cannot: no problem either side)."""
    groups: dict[tuple[str, str], list[tuple[date, int, str]]] = {}
    for line, (cert, matricule, day, act) in enumerate(rows):
        groups.setdefault((cert, matricule), []).append((date.fromisoformat(day), line, act))
    notes = []
    for (cert, matricule), sessions in groups.items():
        sessions.sort()
        note = FeeNote(len(notes) + 1, cert, matricule, "", "")
        usable = all(code == "MAT04" for code, _ in check_matricule(matricule))
        for n, (day, _, act) in enumerate(sessions, 1):
            gross, share = 100, 12
            if usable:
                try:
                    price = NOMENCLATURE.price_for(act, day, birth_date(matricule))
                    gross, share = price.gross, price.patient_share
                except NoTariffError:
                    pass
            note.sessions.append(BilledSession(n, day, act, PROVIDER, gross, share, gross - share))
        notes.append(note)
    with open(path, "wb") as f:
        write_billing_file(f, Header(PROVIDER, CREATED, 1, "1"), notes)
    return path


def _by_build(rows) -> list[tuple[str, str]]:
    try:
        _, report = load_fee_notes(io.BytesIO(_rows_csv(rows)), "rows.csv", "csv", CODES, NOMENCLATURE, PROVIDER,
                                   CREATED.date())
        issues = report.issues
    except InputError as exc:
        issues = exc.issues
    return sorted((i.code, i.message) for i in issues)


def _by_validate(rows, folder: Path) -> list[tuple[str, str]]:
    report = VALIDATOR.validate(str(_document(rows, folder / "doc.xml")), check_name=False)
    assert not [i for i in report.issues if i.code.startswith(("XSD", "XML", "VAL"))], report.issues
    return sorted((i.code, i.message) for i in report.issues)


A, B, C = VALID_MATRICULES[2], VALID_MATRICULES[3], VALID_MATRICULES[4]
CHILD = make_matricule(date(2015, 3, 1))

INITIAL = ["ZD11", "ZD12", "ZD13", "ZD13", "ZD13", "ZD13"]


def _treatment(cert, matricule, start="2026-09-01", acts=INITIAL):
    first = date.fromisoformat(start)
    return [(cert, matricule, (first + timedelta(days=7 * i)).isoformat(), act) for i, act in enumerate(acts)]


FAULTS = {
    "clean": (_treatment("T1", A) + _treatment("T2", CHILD), []),
    "acts out of order": (_treatment("T1", A, acts=["ZD12", "ZD11"]), ["TRT01"]),
    "too many ZD13": (_treatment("T1", A, acts=INITIAL + ["ZD13"]), ["TRT02"]),
    "initial and extension on one certificate": (_treatment("T1", A, acts=["ZD11", "ZD21"]), ["TRT03"]),
    "two consultations a day": (_treatment("T1", A, acts=["ZD11"]) + _treatment("T2", A, acts=["ZD21"]), ["TRT05"]),
    "after the creation date": (_treatment("T1", A, start="2026-11-21", acts=["ZD11"]), ["TRT07", "NOM05"]),
    "the newest table's last current day": (_treatment("T1", A, start="2026-11-01", acts=["ZD11"]), []),
    "more than 12 months after the newest table": (_treatment("T1", A, start="2026-11-02", acts=["ZD11"]), ["NOM05"]),
    "one certificate, two patients": (_treatment("T1", A, acts=["ZD11"]) + _treatment("T1", B, "2026-10-01", ["ZD12"]),
                                      ["TRT09"]),
    "no tariff on that date": (_treatment("T1", A, start="2010-01-04", acts=["ZD11"]), ["NOM01"]),
    "Luhn digit wrong": (_treatment("T1", A[:11] + str((int(A[11]) + 1) % 10) + A[12], acts=["ZD11"]), ["MAT02"]),
    "Verhoeff digit wrong": (_treatment("T1", A[:12] + str((int(A[12]) + 1) % 10), acts=["ZD11"]), ["MAT03"]),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_build_and_validate_find_the_same_problems(tmp_path, name):
    rows, expected = FAULTS[name]
    by_build, by_validate = _by_build(rows), _by_validate(rows, tmp_path)
    assert by_build == by_validate
    assert sorted({code for code, _ in by_build}) == sorted(set(expected))


def test_the_faults_cover_every_rule_both_sides_can_see():
    """Every session rule that a row and a document can both carry has a case above."""
    seen = {code for _, codes in FAULTS.values() for code in codes}
    both = {"MAT02", "MAT03", "NOM01", "NOM05", "TRT01", "TRT02", "TRT03", "TRT05", "TRT07", "TRT09"}
    assert both <= seen


# --- the same requests, as rows and as a document -------------------------------------------

PRESCRIPTION = PACKAGE.parent / "examples" / "prescriptions" / "ordonnance-REQ-0001.pdf"
REQUEST_COLUMNS = ["request_ref", "matricule", "last_name", "first_name", "prescriber_code", "prescription_date",
                   "pathology_codes", "treatment", "prescription_pdf", "requested_acts"]


def _requests_by_build(rows) -> list[tuple[str, str]]:
    from cns_exchange.billing.build import load_requests

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REQUEST_COLUMNS)
    writer.writerows([ref, matricule, "Schmit", "Léa", "12345678", day, pathology, treatment, str(PRESCRIPTION), acts]
                     for ref, matricule, day, pathology, treatment, acts in rows)
    try:
        _, report = load_requests(io.BytesIO(out.getvalue().encode()), "rows.csv", "csv", CODES, PRESCRIPTION.parent,
                                  CREATED.date(), PROVIDER)
        issues = report.issues
    except InputError as exc:
        issues = exc.issues
    return sorted((i.code, i.message) for i in issues)


def _requests_by_validate(rows, folder: Path) -> list[tuple[str, str]]:
    from cns_exchange.domain.model import CertificateRequest
    from cns_exchange.documents.write import write_request_file

    requests = [CertificateRequest(ref, matricule, "Schmit", "Léa", "12345678", date.fromisoformat(day), [pathology],
                                   treatment, [(a, int(n)) for a, _, n in (part.partition(":") for part in acts.split(";"))],
                                   f"{PROVIDER}_ORD_{ref}.pdf", "0" * 64)
                for ref, matricule, day, pathology, treatment, acts in rows]
    path = folder / "requests.xml"
    with open(path, "wb") as f:
        write_request_file(f, Header(PROVIDER, CREATED, 1, "1"), requests)
    report = VALIDATOR.validate(str(path), check_name=False, attachments=False)
    assert not [i for i in report.issues if i.code.startswith(("XSD", "XML", "VAL"))], report.issues
    return sorted((i.code, i.message) for i in report.issues)


INITIAL_ACTS = "ZD11:1;ZD12:1;ZD13:4"
REQUEST_FAULTS = {
    "clean": ([("R1", A, "2026-10-15", "D12", "initial", INITIAL_ACTS)], []),
    "Luhn digit wrong": ([("R1", A[:11] + str((int(A[11]) + 1) % 10) + A[12], "2026-10-15", "D12", "initial",
                           INITIAL_ACTS)], ["MAT02"]),
    "Verhoeff digit wrong": ([("R1", A[:12] + str((int(A[12]) + 1) % 10), "2026-10-15", "D12", "initial", INITIAL_ACTS)],
                             ["MAT03"]),
    "too many ZD13 asked": ([("R1", A, "2026-10-15", "D12", "initial", "ZD11:1;ZD12:1;ZD13:5")], ["TRT02"]),
    "an extension's act on an initial request": ([("R1", A, "2026-10-15", "D12", "initial", "ZD21:4")], ["TRT03"]),
    "an extension beside its initial treatment": ([("R1", A, "2026-10-15", "D12", "initial", INITIAL_ACTS),
                                                   ("R2", A, "2026-10-16", "D12", "extension", "ZD21:4")], ["TRT04"]),
    "a prescription 91 days old": ([("R1", A, "2026-08-21", "D12", "initial", INITIAL_ACTS)], ["TRT06"]),
    "a prescription after the file": ([("R1", A, "2026-11-21", "D12", "initial", INITIAL_ACTS)], ["TRT07"]),
    "two initial treatments in one file": ([("R1", A, "2026-10-15", "D12", "initial", INITIAL_ACTS),
                                            ("R2", A, "2026-10-16", "D12", "initial", INITIAL_ACTS)], ["TRT08"]),
}


@pytest.mark.parametrize("name", sorted(REQUEST_FAULTS))
def test_build_request_and_validate_find_the_same_problems(tmp_path, name):
    rows, expected = REQUEST_FAULTS[name]
    by_build, by_validate = _requests_by_build(rows), _requests_by_validate(rows, tmp_path)
    assert by_build == by_validate
    assert sorted({code for code, _ in by_build}) == sorted(set(expected))


#: Rules of the engine that the two tables above cannot show on both sides, and where each is shown.
ONE_SIDED_HERE = {
    **{code: "a document that breaks it is refused by the XSD first (XSD01); build reports it: tests/corpus/invalid-input"
       for code in ("MAT01", "MAT05", "PRV01", "PRS01", "PAT01", "ACT01")},
    "MAT04": "a warning on both sides: tests/test_invalid_inputs.py::test_impossible_birth_date_is_only_a_warning",
    **{code: "a document's amounts: build prices the sessions itself (tests/corpus/invalid-documents)"
       for code in ("NOM02", "NOM03", "NOM04")},
    **{code: "build and validate alike, Hypothesis near the birthday: tests/test_minors.py"
       for code in ("NOM06", "NOM07", "NOM08")},
    **{code: "needs the practice database: tests/test_treatment_history.py (build, validate --db, sandbox)"
       for code in ("TRT10", "TRT11")},
    "DOC08": "a document's line numbers: build numbers the sessions itself",
}


def test_every_rule_of_the_engine_is_shown_on_both_sides_or_says_where():
    """Derived from the catalogue: each rule code the engine decides is either compared between
    build and validate above, or named with the test that shows it."""
    engine = {code for code in CATALOGUE
              if code.startswith(RULE_PREFIXES) and any(code in _literals(PACKAGE / name) for name in ENGINE)}
    compared = ({code for _, codes in FAULTS.values() for code in codes}
                | {code for _, codes in REQUEST_FAULTS.values() for code in codes})
    assert engine - compared - set(ONE_SIDED_HERE) == set()
    assert not set(ONE_SIDED_HERE) & compared, "a rule compared above needs no reason here"


# Files drawn anew on each run: a few patients, certificates and dates, acts in any order.
_row = st.tuples(st.sampled_from(["T1", "T2", "T3", "T4"]), st.sampled_from([A, B, C, CHILD]),
                 st.dates(date(2018, 12, 20), date(2026, 11, 22)).map(date.isoformat),
                 st.sampled_from(["ZD11", "ZD12", "ZD13", "ZD21"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, min_size=1, max_size=14))
def test_any_file_gets_the_same_problems_from_build_and_validate(tmp_path, rows):
    assert _by_build(rows) == _by_validate(rows, tmp_path)
