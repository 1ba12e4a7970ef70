"""Invalid practice inputs for build-request and build-invoice: corpus/invalid-input/.

Each corpus file has its expected issues in corpus/invalid-input/cases.toml, as
``"LINE [column] CODE"``. A case passes only if the command exits 3, prints exactly those
issues (file:line [column], code) on stderr, prints nothing on stdout and writes nothing to the
output folder. The corpus must cover every input issue code of the catalogue.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest
from lxml import etree

from cns_exchange.issues import CATALOGUE
from conftest import CREATED, PROVIDER

CORPUS = Path(__file__).resolve().parent / "corpus" / "invalid-input"
#: The exact issues of each case: with a current tariff table, no NOM05 joins them (test_tariffs.py tests it).
pytestmark = pytest.mark.usefixtures("current_tariffs")
CASES = tomllib.loads((CORPUS / "cases.toml").read_text("utf-8"))["case"]
COMMANDS = {"req": "build-request", "ses": "build-invoice"}
FORMATS = {".csv": "csv", ".json": "json", ".ndjson": "ndjson"}

_EXPECTED = re.compile(r"(?P<line>\d+)(?: \[(?P<field>[^\]]+)\])? (?P<code>[A-Z]{2,3}\d{2,3})\Z")


@pytest.fixture(autouse=True)
def fresh_libxml2_log():
    """Start every test with an empty libxml2 error log (see test_hostile_xml)."""
    etree.clear_error_log()


def expected_issues(case: dict) -> set[tuple[int, str, str]]:
    result = set()
    for text in case["expect"]:
        m = _EXPECTED.match(text)
        assert m, f"{case['file']}: bad expectation {text!r}"
        result.add((int(m["line"]), m["field"] or "", m["code"]))
    assert len(result) == len(case["expect"]), f"{case['file']}: an expectation is listed twice"
    return result


def reported_issues(stderr: str, name: str) -> list[tuple[int | None, str, str, str]]:
    """Return ``(line, field, code, severity)`` for each issue line stderr prints for ``name``."""
    pattern = re.compile(re.escape(name) + r"(?::(?P<line>\d+))?(?: \[(?P<field>[^\]]*)\])?: "
                         r"(?P<severity>error|warning) (?P<code>[A-Z]{2,3}\d{2,3}):")
    found = []
    for text in stderr.splitlines():
        m = pattern.match(text)
        if m:
            found.append((int(m["line"]) if m["line"] else None, m["field"] or "", m["code"], m["severity"]))
    return found


def command_of(file: str) -> str:
    return COMMANDS[file.split("-", 1)[0]]


def stage(examples: Path, file: str) -> Path:
    """Put a corpus file beside the examples' prescriptions/ and the corpus attachments/."""
    attachments = examples / "attachments"
    if not attachments.exists():
        shutil.copytree(CORPUS / "attachments", attachments)
    target = examples / file
    shutil.copyfile(CORPUS / file, target)
    return target


def assert_refused(r, name: str, case: dict, out: Path) -> None:
    expected = expected_issues(case)
    assert r.exit_code == 3, f"exit {r.exit_code}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert list(out.iterdir()) == [], "something was written although the input is invalid"
    reported = reported_issues(r.stderr, name)
    assert all(sev == "error" for *_, sev in reported), r.stderr
    got = {(line, field, code) for line, field, code, _ in reported}
    missing, extra = expected - got, got - expected
    assert not missing and not extra, (f"{case['file']} ({case['why']}):\n  missing {sorted(missing)}\n"
                                       f"  unexpected {sorted(extra, key=str)}\nstderr:\n{r.stderr}")
    n = len(expected)
    assert f"{name}: {n} problem{'s' if n > 1 else ''} in the" in r.stderr
    assert "nothing was written" in r.stderr


# --- the corpus ----------------------------------------------------------------------------

def test_every_corpus_file_has_a_case():
    inputs = {p.name for p in CORPUS.iterdir() if p.is_file() and p.suffix in FORMATS and not p.name.startswith("ok-")}
    listed = [c["file"] for c in CASES]
    assert len(listed) == len(set(listed)), "a file is listed twice in cases.toml"
    assert inputs == set(listed)


def test_corpus_covers_every_input_code():
    """Every IN0xx code, every identifier code but MAT04 (a warning, tested below), the rules, and
    the prescription checks that need no option (PDF04, PDF07: tests/test_pdf_attachments.py)."""
    wanted = {code for code in CATALOGUE if code.startswith(("IN", "MAT", "PRV", "PRS", "PAT", "ACT", "CRT", "TRT"))}
    wanted |= {"NOM01", "PDF01", "PDF02", "PDF03", "PDF05", "PDF06"}
    wanted -= {"MAT04", "TRT05"}  # warnings: tested below
    wanted -= {"IN017", "IN018"}  # warnings: tests/test_excel_inputs.py
    wanted -= {"CRT02", "CRT03", "CRT04", "CRT05"}  # need imported certificates: tests/test_cli_import_status.py
    wanted -= {"CRT06"}  # needs a billed session in the database: tests/test_ledger.py
    wanted -= {"TRT10", "TRT11"}  # need earlier treatments in the database: tests/test_treatment_history.py
    wanted -= {"IN015", "IN016"}  # the limits (a 1 GB line, 1000 errors): tests/test_exits_and_streams.py
    covered = {code for case in CASES for _, _, code in expected_issues(case)}
    assert wanted - covered == set()
    for case in CASES:
        for _, _, code in expected_issues(case):
            assert CATALOGUE[code].severity == "error", f"{case['file']}: {code} is a warning, not a refusal"


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_invalid_input_is_refused(run, examples, tmp_path, case):
    path = stage(examples, case["file"])
    out = tmp_path / "out"
    out.mkdir()
    r = run(command_of(case["file"]), str(path), "--created", CREATED, "--provider", PROVIDER, "-o", str(out),
            *case.get("options", []))
    assert_refused(r, str(path), case, out)


SESSION_CASES = [c for c in CASES if c["file"].startswith("ses-")]


@pytest.mark.parametrize("case", SESSION_CASES, ids=[c["file"] for c in SESSION_CASES])
def test_invalid_sessions_through_stdin(run, tmp_path, case):
    """The same verdict when the sessions come from '-' (no relative paths to resolve)."""
    out = tmp_path / "out"
    out.mkdir()
    fmt = FORMATS[Path(case["file"]).suffix]
    r = run("build-invoice", "-", "--input-format", fmt, "--created", CREATED, "--provider", PROVIDER,
            "-o", str(out), *case.get("options", []), input=(CORPUS / case["file"]).read_bytes())
    assert_refused(r, "<stdin>", case, out)


@pytest.mark.parametrize("file", ["req-all-problems.csv", "ses-all-problems.csv"])
def test_one_run_reports_every_problem_of_a_file(run, examples, tmp_path, file):
    """A file with many bad rows: every row's problems in one run, and none for the good rows."""
    case = next(c for c in CASES if c["file"] == file)
    expected = expected_issues(case)
    bad_lines = {line for line, _, _ in expected}
    assert len(bad_lines) >= 6 and len({code for *_, code in expected}) >= 6
    path = stage(examples, file)
    out = tmp_path / "out"
    out.mkdir()
    r = run(command_of(file), str(path), "--created", CREATED, "--provider", PROVIDER, "-o", str(out))
    assert_refused(r, str(path), case, out)
    data_lines = len([t for t in path.read_text("utf-8").splitlines()[1:] if t.strip()])
    good_lines = set(range(2, data_lines + 2)) - bad_lines
    assert good_lines, "the file should keep good rows among the bad ones"
    assert not {line for line, *_ in reported_issues(r.stderr, str(path))} & good_lines


# --- inputs that must build ----------------------------------------------------------------

def _xml_names(path: Path) -> list[tuple[str, str]]:
    root = etree.parse(str(path)).getroot()
    return [(p.findtext("Nom"), p.findtext("Prenom")) for p in root.iter("Patient")]


def _csv_names(path: Path, encoding: str) -> list[tuple[str, str]]:
    text = path.read_text(encoding)
    delimiter = ";" if text.splitlines()[0].count(";") > text.splitlines()[0].count(",") else ","
    return [(row["last_name"], row["first_name"]) for row in csv.DictReader(text.splitlines(), delimiter=delimiter)]


def test_bom_semicolon_and_accents_build(run, examples, tmp_path):
    path = stage(examples, "ok-requests-bom-semicolon.csv")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    out = tmp_path / "out"
    out.mkdir()
    r = run("build-request", str(path), "--created", CREATED, "--provider", PROVIDER, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    documents = sorted(out.glob("*.xml"))
    assert [d.name for d in documents] == ["123456_DTP_20261120_000001.xml"]
    assert _xml_names(documents[0]) == _csv_names(path, "utf-8-sig")
    refs = [e.text for e in etree.parse(str(documents[0])).getroot().iter("ReferenceDemande")]
    assert refs == ["REQ-0001", "REQ-0002", "REQ-0003"]  # the BOM is not part of the first column's name
    assert run("validate", str(documents[0])).exit_code == 0


def test_cp1252_is_detected_and_an_explicit_encoding_wins(run, examples, tmp_path):
    """A Windows-1252 file builds as it is; --encoding utf-8 says otherwise, and is obeyed."""
    path = stage(examples, "ok-requests-cp1252.csv")
    out = tmp_path / "out"
    out.mkdir()
    refused = run("build-request", str(path), "--encoding", "utf-8", "--created", CREATED, "--provider", PROVIDER,
                  "-o", str(out))
    assert refused.exit_code == 3
    assert [(line, code) for line, _, code, _ in reported_issues(refused.stderr, str(path))] == [(3, "IN005")]
    assert list(out.iterdir()) == []
    built = []
    for options in ([], ["--encoding", "cp1252"]):
        r = run("build-request", str(path), *options, "--created", CREATED, "--provider", PROVIDER, "-o", "-")
        assert r.exit_code == 0, r.stderr
        built.append(r.stdout_bytes)
        names = [(p.findtext("Nom"), p.findtext("Prenom")) for p in etree.fromstring(r.stdout_bytes).iter("Patient")]
        assert names == _csv_names(path, "cp1252")
        assert ("Weber", "François") in names and ("Hoffmann", "Zoë") in names
    assert built[0] == built[1]


def test_two_consultations_of_a_patient_on_one_day_are_only_a_warning(run, examples, tmp_path):
    """No public rule forbids them (TRT05 was an error without a source): build warns, goes on,
    and validate warns the same of the document."""
    path = stage(examples, "ok-sessions-trt05.csv")
    out = tmp_path / "out"
    out.mkdir()
    r = run("build-invoice", str(path), "--created", CREATED, "--provider", PROVIDER, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert reported_issues(r.stderr, str(path)) == [(3, "session_date", "TRT05", "warning"),
                                                    (6, "session_date", "TRT05", "warning")], r.stderr
    [document] = out.glob("*.xml")
    v = run("validate", "--json", str(document))
    assert v.exit_code == 0, v.stderr
    assert [(i["code"], i["severity"]) for i in json.loads(v.stdout)[0]["issues"]] == [("TRT05", "warning")] * 2


@pytest.mark.parametrize("file", ["ok-requests-mat04.csv", "ok-sessions-mat04.csv"])
def test_impossible_birth_date_is_only_a_warning(run, examples, tmp_path, file):
    """1980-02-31 in a matricule with good check digits: MAT04 warns, the build goes on."""
    path = stage(examples, file)
    out = tmp_path / "out"
    out.mkdir()
    command = "build-request" if file.startswith("ok-requests") else "build-invoice"
    r = run(command, str(path), "--created", CREATED, "--provider", PROVIDER, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    assert reported_issues(r.stderr, str(path)) == [(3, "matricule", "MAT04", "warning")], r.stderr
    documents = sorted(out.glob("*.xml"))
    assert len(documents) == 1
    matricules = [e.text for e in etree.parse(str(documents[0])).getroot().iter("Matricule")]
    assert "1980023112337" in matricules
    v = run("validate", str(documents[0]))
    assert v.exit_code == 0, v.stderr
    assert " warning MAT04:" in v.stderr
