"""Invalid CNS documents for ``cnsx validate``: corpus/invalid-documents/cases.toml.

Each case takes a valid example from examples/, applies a few edits with lxml (a small
generator below), and states the issues ``cnsx validate`` must report: code, line and XPath.
The expected line is not written down: it is the line of the element the XPath names in the
generated document, found by lxml. ``xmllint --schema`` then checks the other side of each
case: it must reject every schema violation and accept every business-rule case, so that a
rule tested here is really beyond the XSD.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from cns_exchange.issues import CATALOGUE
from conftest import EXAMPLES, SCHEMAS, xmllint

CORPUS = Path(__file__).resolve().parent / "corpus" / "invalid-documents"
#: The exact issues of each case: with a current tariff table, no NOM05 joins them (test_tariffs.py tests it).
pytestmark = pytest.mark.usefixtures("current_tariffs")
CASES = tomllib.loads((CORPUS / "cases.toml").read_text("utf-8"))["case"]
IDS = [c["id"] for c in CASES]
CENT = Decimal("0.01")


@pytest.fixture(autouse=True)
def fresh_libxml2_log():
    """Start every test with an empty libxml2 error log (see test_hostile_xml)."""
    etree.clear_error_log()


# --- the generator -------------------------------------------------------------------------

def _one(root, path: str):
    found = root.getroottree().xpath(path)
    assert len(found) == 1, f"{path} names {len(found)} elements in the source"
    return found[0]


def _remove(el) -> None:
    """Delete an element and the line it stood on (the whitespace before it goes too)."""
    previous, parent = el.getprevious(), el.getparent()
    if previous is not None:
        previous.tail = el.tail
    else:
        parent.text = el.tail
    tail = el.tail
    parent.remove(el)
    if previous is not None:
        previous.tail = tail


def _swap(el) -> None:
    """Swap a leaf element with its next sibling, leaving the layout (lines, indent) as it was."""
    other = el.getnext()
    assert other is not None and len(el) == 0 and len(other) == 0, "swap takes two neighbouring leaves"
    el.tag, other.tag = other.tag, el.tag
    el.text, other.text = other.text, el.text


def _amount(value: Decimal) -> str:
    return str(value.quantize(CENT))


def _retotal(root) -> None:
    """Recompute the header's control totals from the lines (billing and payment documents)."""
    header = root.find("EnTete")
    total = lambda xpath: sum((Decimal(t) for t in root.xpath(xpath)), Decimal(0))  # noqa: E731
    if root.tag == "FichierFacturation":
        header.find("NombreMemoires").text = str(len(root.findall("MemoireHonoraires")))
        header.find("NombreSeances").text = str(len(root.findall("MemoireHonoraires/Seance")))
        header.find("TotalMontantBrut").text = _amount(total("MemoireHonoraires/Seance/MontantBrut/text()"))
        header.find("TotalParticipationPersonnelle").text = _amount(
            total("MemoireHonoraires/Seance/ParticipationPersonnelle/text()"))
        header.find("TotalPartStatutaire").text = _amount(total("MemoireHonoraires/Seance/PartStatutaire/text()"))
    elif root.tag == "JustificatifPaiement":
        billed = total("Ligne/MontantFacture/text()")
        accepted = total("Ligne/MontantAccepte/text() | Ligne/Contestation/MontantAccepte/text()")
        header.find("NombreLignes").text = str(len(root.findall("Ligne")))
        header.find("TotalFacture").text = _amount(billed)
        header.find("TotalAccepte").text = _amount(accepted)
        header.find("TotalConteste").text = _amount(billed - accepted)
    else:  # pragma: no cover - a case asked for totals a document does not have
        raise AssertionError(f"no control totals in <{root.tag}>")


def generate(case: dict, folder: Path) -> Path:
    """Write the case's document into ``folder`` and return its path."""
    source = EXAMPLES / case["source"]
    tree = etree.parse(str(source), etree.XMLParser(resolve_entities=False, no_network=True))
    root = tree.getroot()
    for edit in case["edits"]:
        el = _one(root, edit["path"])
        op = edit["op"]
        if op == "set":
            assert len(el) == 0, "set takes a leaf element"
            el.text = edit["value"]
        elif op == "remove":
            _remove(el)
        elif op == "swap":
            _swap(el)
        elif op == "rename":
            el.tag = edit["value"]
        else:  # pragma: no cover
            raise AssertionError(f"unknown edit {op}")
    if case.get("retotal"):
        _retotal(root)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / case.get("name", case["source"])
    target.write_bytes(etree.tostring(tree, xml_declaration=True, encoding="UTF-8") + b"\n")
    for pdf in EXAMPLES.glob("123456_ORD_*.pdf"):  # a request's prescriptions beside it, as cnsx validate wants them
        shutil.copyfile(pdf, folder / pdf.name)
    return target


def canonical(tree, xpath: str) -> str:
    """Return the canonical path (lxml's getpath) of the one element ``xpath`` names, else ``xpath``.

    /R/EnTete[1]/X and /R/EnTete/X name the same element: the tests compare elements, not spellings.
    """
    if not xpath:
        return ""
    try:
        found = tree.xpath(xpath)
    except etree.XPathError:
        return xpath
    return tree.getpath(found[0]) if len(found) == 1 and isinstance(found[0], etree._Element) else xpath


def expected_issues(case: dict, document: Path) -> set[tuple[str, int | None, str]]:
    """Return ``(code, line, element)`` for each expected issue.

    The line is that of the element the XPath names (its start tag), as xmllint reports it:
    a reader jumping to ``file:line`` lands on the element the XPath names.
    """
    tree = etree.parse(str(document))
    result = set()
    for issue in case["expect"]:
        xpath = issue["xpath"]
        line = _one(tree.getroot(), xpath).sourceline if xpath else None
        result.add((issue["code"], line, canonical(tree, xpath)))
    return result


def expected_exit(case: dict) -> int:
    return 3 if any(CATALOGUE[i["code"]].severity == "error" for i in case["expect"]) else 0


def xsd_of(document: Path) -> Path:
    """The v1 XSD of the document's kind, found from its root by the schema set's manifest."""
    root = etree.parse(str(document)).getroot().tag
    manifest = json.loads((SCHEMAS / "v1" / "manifest.json").read_text("utf-8"))
    [xsd] = [spec["xsd"] for spec in manifest["documents"].values() if spec["root"] == root]
    return SCHEMAS / "v1" / xsd


# --- the corpus ----------------------------------------------------------------------------

def test_corpus_is_well_formed():
    assert len(IDS) == len(set(IDS))
    codes = {i["code"] for c in CASES for i in c["expect"]}
    assert {"XSD01", "DOC01", "DOC02", "DOC03", "DOC04", "DOC05", "DOC07", "NOM02", "NOM03", "NOM04",
            "TRT05", "XML04", "XML05"} <= codes
    for case in CASES:
        if any(i["code"] == "XSD01" for i in case["expect"]):
            assert case.get("xmllint") == "reject", case["id"]
        elif not any(i["code"].startswith("XML") for i in case["expect"]):
            assert case.get("xmllint") == "accept", case["id"]


@pytest.mark.parametrize("source", sorted({c["source"] for c in CASES}))
def test_sources_are_valid(run, source):
    """The examples the cases start from are clean: every issue below comes from the edits."""
    r = run("validate", "--json", str(EXAMPLES / source))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)[0]["issues"] == []
    assert xmllint(EXAMPLES / source, xsd_of(EXAMPLES / source)).returncode == 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_edits_change_the_document(tmp_path, case):
    document = generate(case, tmp_path)
    if case["edits"]:
        assert document.read_bytes() != (EXAMPLES / case["source"]).read_bytes()
    # The generator keeps the layout: only removed lines disappear.
    removed = sum(1 for e in case["edits"] if e["op"] == "remove")
    source_lines = (EXAMPLES / case["source"]).read_text("utf-8").count("\n")
    assert document.read_text("utf-8").count("\n") == source_lines - removed


# --- cnsx validate -------------------------------------------------------------------------

def _report(r, name: str) -> dict:
    assert "Traceback" not in r.stderr
    reports = json.loads(r.stdout)
    assert len(reports) == 1 and reports[0]["file"] == name
    return reports[0]


def _diff(case: dict, expected: set, got: set, stderr: str) -> str:
    return (f"{case['id']} ({case['why']}):\n  missing {sorted(expected - got, key=str)}\n"
            f"  unexpected {sorted(got - expected, key=str)}\nstderr:\n{stderr}")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_validate_reports_code_and_xpath(run, tmp_path, case):
    """Exit code, and exactly the expected issues, each naming the expected element."""
    document = generate(case, tmp_path / case["id"])
    name = str(document)
    r = run("validate", "--json", name)
    assert r.exit_code == expected_exit(case), f"exit {r.exit_code}\n{r.stderr}"
    report = _report(r, name)
    assert report["valid"] is (expected_exit(case) == 0)
    tree = etree.parse(name)
    expected = {(code, element) for code, _, element in expected_issues(case, document)}
    got = {(i["code"], canonical(tree, i["xpath"])) for i in report["issues"]}
    assert got == expected, _diff(case, expected, got, r.stderr)
    for issue in report["issues"]:
        assert issue["file"] == name
        assert issue["severity"] == CATALOGUE[issue["code"]].severity
    # The same issues for a human on stderr, as file:line XPATH: severity CODE:, and the verdict.
    plain = run("validate", name)
    assert plain.exit_code == r.exit_code
    assert plain.stdout == ""
    for issue in report["issues"]:
        where = name + (f":{issue['line']}" if issue["line"] is not None else "") + (f" {issue['xpath']}" if issue["xpath"] else "")
        assert f"{where}: {issue['severity']} {issue['code']}:" in plain.stderr, plain.stderr
    verdict = "valid" if expected_exit(case) == 0 else "INVALID"
    assert f"{name}: {verdict} (" in plain.stderr


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_validate_reports_the_line_of_the_element(run, tmp_path, case):
    """``file:LINE XPATH``: the line is the line of the element the XPath names (xmllint's line)."""
    document = generate(case, tmp_path / case["id"])
    name = str(document)
    r = run("validate", "--json", name)
    tree = etree.parse(name)
    expected = expected_issues(case, document)
    got = {(i["code"], i["line"], canonical(tree, i["xpath"])) for i in _report(r, name)["issues"]}
    assert got == expected, _diff(case, expected, got, r.stderr)


STDIN_CASES = [c for c in CASES if "name" not in c]


@pytest.mark.parametrize("case", STDIN_CASES, ids=[c["id"] for c in STDIN_CASES])
def test_validate_from_stdin_gives_the_same_report(run, tmp_path, case):
    """'-' gets the same verdict and the same issues (lines, XPaths) as the file itself."""
    document = generate(case, tmp_path / case["id"])
    from_file = run("validate", "--json", str(document))
    from_stdin = run("validate", "--json", "-", input=document.read_bytes())
    assert from_stdin.exit_code == from_file.exit_code == expected_exit(case), from_stdin.stderr
    strip = lambda issues: [{k: v for k, v in i.items() if k != "file"} for i in issues]  # noqa: E731
    file_report, stdin_report = _report(from_file, str(document)), _report(from_stdin, "<stdin>")
    assert strip(stdin_report["issues"]) == strip(file_report["issues"])
    assert {i["code"] for i in stdin_report["issues"]} == {i["code"] for i in case["expect"]}
    assert all(i["file"] == "<stdin>" for i in stdin_report["issues"])


# --- xmllint, the independent validator ----------------------------------------------------

_XMLLINT_ERROR = re.compile(r"^.*?:(?P<line>\d+): element (?P<element>[^:]+): Schemas validity error")


@pytest.mark.parametrize("case", [c for c in CASES if "xmllint" in c], ids=[c["id"] for c in CASES if "xmllint" in c])
def test_xmllint_agrees(tmp_path, case):
    document = generate(case, tmp_path / case["id"])
    result = xmllint(document, xsd_of(document))
    if case["xmllint"] == "accept":
        assert result.returncode == 0, f"xmllint rejects a business-rule case: the XSD already catches it\n{result.stderr}"
        return
    assert result.returncode != 0, "xmllint accepts a document cnsx must reject as a schema violation"
    errors = [m for m in map(_XMLLINT_ERROR.match, result.stderr.splitlines()) if m]
    assert errors, result.stderr
    # xmllint points at the same element and line as the expected issue.
    tree = etree.parse(str(document))
    for issue in case["expect"]:
        element = _one(tree.getroot(), issue["xpath"])
        assert any(m["element"] == element.tag and int(m["line"]) == element.sourceline for m in errors), result.stderr


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_same_report_with_and_without_libxml2s_verdict(run, tmp_path, monkeypatch, case):
    """libxml2's tree-less verdict only speeds up what lxml's schema pass decides: switched
    off (as it switches itself off when its self-check fails), every case gets the same report."""
    import cns_exchange.documents.verdict as xsdstream

    assert xsdstream.available()
    document = generate(case, tmp_path / case["id"])
    reports = []
    for state in (dict(xsdstream._STATE), {"lib": None, "reason": "switched off by the test"}):
        monkeypatch.setattr(xsdstream, "_STATE", state)
        r = run("validate", "--json", str(document))
        reports.append((r.exit_code, r.stdout, r.stderr))
    assert reports[0] == reports[1]
