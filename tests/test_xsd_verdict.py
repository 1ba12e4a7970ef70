"""libxml2's tree-less XSD verdict (xsdstream) and how validate fails closed around it.

The verdict is an optimisation that must never pass a document lxml would refuse: it is
compared with lxml on the examples, on broken and hostile documents and on every cut of the
examples; it checks itself at first use and switches itself off when it answers wrong; and
whatever it says, a document is valid only when lxml also read it to its end.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from lxml import etree

import cns_exchange.documents.verdict as xsdstream
from cns_exchange.domain.nomenclature import load_codes, load_nomenclature
from cns_exchange.documents.schemas import SchemaRegistry
from cns_exchange.documents.safe import PARSER_OPTIONS
from conftest import EXAMPLES

REGISTRY = SchemaRegistry([])
BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"
PAYMENT = EXAMPLES / "CNS_DEC_20261125_000001.xml"
HOSTILE = sorted((EXAMPLES.parent / "tests" / "corpus" / "hostile").glob("*.xml"))
SWITCHED_OFF = {"lib": None, "reason": "switched off by the test"}


def _kind_and_xsd(path):
    """(kind, XSD path) of a document, by its root element; None if it has no known root."""
    try:
        root = next(etree.iterparse(str(path), events=("start",), **PARSER_OPTIONS))[1].tag
    except (etree.XMLSyntaxError, StopIteration):
        return None
    found = REGISTRY.kind_of_root(root)
    if not found:
        return None
    # The set of the document's own version (v1, v2), else the first that knows the root.
    version = re.search(rb"<VersionSchema>([^<]*)</VersionSchema>", Path(path).read_bytes()[:4096])
    schema_set, kind = next(((s, k) for s, k in found if version and s.version == version.group(1).decode()), found[0])
    return kind, schema_set.documents[kind].xsd


def _lxml_valid(path, xsd) -> bool:
    """lxml's verdict on a whole tree (no streaming, no iterparse)."""
    try:
        tree = etree.parse(str(path), etree.XMLParser(**PARSER_OPTIONS))
    except etree.XMLSyntaxError:
        return False
    try:
        return etree.XMLSchema(etree.parse(str(xsd))).validate(tree)
    except etree.XMLSchemaValidateError:  # e.g. "internal error" on a UTF-16 document with entities
        return False


def _variant(tmp_path, source, name, edit) -> str:
    path = tmp_path / name
    path.write_bytes(edit(source.read_bytes()))
    return str(path)


BROKEN = {  # edits that break a billing file and a payment statement alike
    "line-not-a-number": lambda b: b.replace(b"<NumeroLigne>2<", b"<NumeroLigne>x<", 1),
    "unknown-element": lambda b: b.replace(b"<NumeroLigne>", b"<Remarque>x</Remarque><NumeroLigne>", 1),
    "missing-element": lambda b: b.replace(b"<NumeroLigne>2</NumeroLigne>", b"", 1),
    "truncated": lambda b: b[: len(b) // 2],
    "root-never-closed": lambda b: b[: b.rindex(b"</")],
    "not-well-formed": lambda b: b.replace(b"</NumeroLigne>", b"</Numero>", 1),
    "empty": lambda b: b"",
    "header-sequence-not-a-number": lambda b: b.replace(b"<NumeroSequence>", b"<NumeroSequence>x", 1),
}


def test_the_verdict_is_on_here_and_passed_its_self_check():
    assert xsdstream.available(), xsdstream.disabled_reason()
    assert xsdstream.disabled_reason() == ""


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.xml")), ids=lambda p: p.name)
def test_verdict_passes_every_example(path, capfd):
    kind, xsd = _kind_and_xsd(path)
    assert xsdstream.verdict(str(path), str(xsd)) is True
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("change", sorted(BROKEN), ids=str)
@pytest.mark.parametrize("source", [BILLING, PAYMENT], ids=lambda p: p.name)
def test_verdict_fails_what_lxml_fails_and_prints_nothing(tmp_path, source, change, capfd):
    path = _variant(tmp_path, source, source.name, BROKEN[change])
    xsd = REGISTRY.get("1").documents["billing" if source == BILLING else "payment"].xsd
    assert _lxml_valid(path, xsd) is False  # the change does break the document
    assert xsdstream.verdict(path, str(xsd)) is False
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.xml")), ids=lambda p: p.name)
def test_verdict_refuses_every_cut_of_an_example(tmp_path, path):
    kind, xsd = _kind_and_xsd(path)
    data = path.read_bytes()
    end = len(data.rstrip())  # what follows the closing root tag is white space
    cut = tmp_path / path.name
    wrong = []
    for offset in range(0, end):
        cut.write_bytes(data[:offset])
        if xsdstream.verdict(str(cut), str(xsd)) is not False:
            wrong.append(offset)
    assert wrong == [], f"cuts of {path.name} called valid at offsets {wrong[:10]}"


@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p.name)
def test_verdict_agrees_with_lxml_on_hostile_documents(path, capfd):
    xsd = REGISTRY.get("1").documents["billing"].xsd
    found = _kind_and_xsd(path)
    if found is not None:
        xsd = found[1]
    assert xsdstream.verdict(str(path), str(xsd)) is _lxml_valid(path, xsd)
    assert capfd.readouterr() == ("", "")


# --- identity constraints: xs:unique, libxml2's whole ----------------------------------------

def _renumbered(tmp_path, second: bytes, third: bytes = b"3", extra: bytes = b"") -> str:
    """The example billing file with its second and third fee notes' numbers written
    ``second`` and ``third`` (and ``extra`` after its first fee note)."""
    data = BILLING.read_bytes()
    for number, written in ((b"2", second), (b"3", third)):
        data = data.replace(b"<NumeroMemoire>" + number + b"</NumeroMemoire>",
                            b"<NumeroMemoire>" + written + b"</NumeroMemoire>", 1)
    end = data.index(b"</MemoireHonoraires>") + len(b"</MemoireHonoraires>")
    path = tmp_path / BILLING.name
    path.write_bytes(data[:end] + extra + data[end:])
    return str(path)


NUMBERS = {  # the second and third fee notes' numbers as written, something after the first note; valid
    "a number twice": ((b"1",), False),
    "the same number with a blank": ((b" 1",), False),
    "the same number with a leading zero": ((b"01",), False),
    "the same number as a character reference": ((b"&#49;",), False),
    "the same number as CDATA": ((b"<![CDATA[1]]>",), False),
    "a comment holding a number again": ((b"2", b"3", b"<!-- <NumeroMemoire>1</NumeroMemoire> -->"), True),
    "a large number": ((b"16777217",), True),
    "a large number, twice": ((b"16777217", b"16777217"), False),
}


@pytest.mark.parametrize("case", sorted(NUMBERS), ids=str)
def test_the_unique_numbers_of_fee_notes_get_lxmls_verdict(tmp_path, case):
    written, valid = NUMBERS[case]
    path = _renumbered(tmp_path, *written)
    xsd = REGISTRY.get("1").documents["billing"].xsd
    assert _lxml_valid(path, xsd) is valid
    assert xsdstream.verdict(path, str(xsd)) is valid


@pytest.mark.parametrize("constraint", [
    '<xs:key name="K"><xs:selector xpath="Item"/><xs:field xpath="Id"/></xs:key>',
    '<xs:unique name="U"><xs:selector xpath="Item"/><xs:field xpath="@id"/></xs:unique>',
    '<xs:unique name="U"><xs:selector xpath=".//Item"/><xs:field xpath="Id"/></xs:unique>',
    '<xs:unique name="U"><xs:selector xpath="Item"/><xs:field xpath="Id"/><xs:field xpath="Other"/></xs:unique>',
], ids=["key", "attribute", "descendants", "two fields"])
def test_other_identity_constraints_get_lxmls_verdict(tmp_path, constraint):
    xsd = tmp_path / "s.xsd"
    xsd.write_text(f"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="List"><xs:complexType><xs:sequence>
    <xs:element name="Item" maxOccurs="unbounded"><xs:complexType><xs:sequence>
      <xs:element name="Id" type="xs:integer"/><xs:element name="Other" type="xs:integer" minOccurs="0"/>
    </xs:sequence><xs:attribute name="id" type="xs:integer"/></xs:complexType></xs:element>
  </xs:sequence></xs:complexType>{constraint}</xs:element>
</xs:schema>""", "utf-8")
    doc = tmp_path / "d.xml"
    doc.write_text('<?xml version="1.0" encoding="UTF-8"?><List><Item id="1"><Id>1</Id><Other>1</Other></Item>'
                   '<Item id="1"><Id>1</Id><Other>1</Other></Item></List>', "utf-8")
    assert xsdstream.verdict(str(doc), str(xsd)) is False is _lxml_valid(doc, xsd)


# --- the self-check: a verdict that answers wrong switches itself off ------------------------

@pytest.mark.parametrize("answer", [True, False])
def test_a_verdict_that_answers_wrong_switches_itself_off(monkeypatch, answer):
    """A libxml2 that calls everything valid (the lxml 6.2 kind of failure), or nothing."""
    monkeypatch.setattr(xsdstream, "_STATE", {})
    monkeypatch.setattr(xsdstream._Libxml2, "valid", lambda self, path, xsd: answer)
    assert xsdstream.available() is False
    assert "calls" in xsdstream.disabled_reason()
    assert xsdstream.verdict(str(BILLING), str(REGISTRY.get("1").documents["billing"].xsd)) is None


def test_switched_off_it_says_so_under_debug_and_lxml_validates_alone(run, tmp_path, monkeypatch):
    monkeypatch.setattr(xsdstream, "_STATE", {})
    monkeypatch.setattr(xsdstream._Libxml2, "valid", lambda self, path, xsd: True)
    bad = _variant(tmp_path, BILLING, BILLING.name, BROKEN["root-never-closed"])
    r = run("--debug", "validate", bad)
    assert r.exit_code == 3 and "XML01" in r.stderr
    assert "switched off" in r.stderr
    r = run("validate", bad)
    assert r.exit_code == 3 and "switched off" not in r.stderr  # a detail for --debug only


def test_without_the_verdict_lxml_alone_finds_the_same_errors(run, tmp_path, monkeypatch):
    bad = _variant(tmp_path, BILLING, BILLING.name, BROKEN["line-not-a-number"])
    reports = []
    for state in (dict(xsdstream._STATE), SWITCHED_OFF):
        monkeypatch.setattr(xsdstream, "_STATE", state)
        r = run("validate", "--json", bad)
        assert r.exit_code == 3
        reports.append(json.loads(r.stdout)[0]["issues"])
    assert reports[0] == reports[1] and [i["code"] for i in reports[0]] == ["XSD01"]


# --- failing closed around it --------------------------------------------------------------

def test_a_verdict_that_passes_a_truncated_file_is_overruled_by_the_reading(run, tmp_path, monkeypatch):
    """Two checks disagree (the verdict says valid, lxml cannot read the file to its end):
    the document is invalid, never 'probably fine'."""
    bad = _variant(tmp_path, BILLING, BILLING.name, BROKEN["root-never-closed"])
    monkeypatch.setattr(xsdstream, "verdict", lambda path, xsd: True)
    r = run("validate", "--json", bad)
    assert r.exit_code == 3
    [report] = json.loads(r.stdout)
    assert report["valid"] is False and "XML01" in [i["code"] for i in report["issues"]]


def test_a_verdict_that_refuses_what_lxml_cannot_locate_stays_refused(run, tmp_path, monkeypatch):
    import cns_exchange.documents.verdict as verdict

    monkeypatch.setattr(verdict, "verdict", lambda path, xsd: False)
    r = run("validate", "--json", str(BILLING))
    assert r.exit_code == 3
    [report] = json.loads(r.stdout)
    assert [i["code"] for i in report["issues"]] == ["XSD01"] and "libxml2" in report["issues"][0]["message"]


@pytest.mark.parametrize("where", ["verdict", "rules"])
def test_an_exception_in_a_check_makes_the_document_invalid(run, monkeypatch, where):
    import cns_exchange.documents.verdict as verdict
    import cns_exchange.validation.validate as validate

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure")

    if where == "verdict":  # in the verdict's thread
        monkeypatch.setattr(verdict, "verdict", boom)
    else:  # in this thread, inside the rules
        monkeypatch.setattr(validate._BillingRules, "on_item", boom)
    r = run("validate", "--json", str(BILLING))
    assert r.exit_code == 3, r.stderr
    [report] = json.loads(r.stdout)
    assert report["valid"] is False
    [issue] = [i for i in report["issues"] if i["code"] == "VAL01"]
    assert "simulated failure" in issue["message"]


def test_printing_a_document_whose_check_fails_is_refused(run, tmp_path, monkeypatch):
    import cns_exchange.documents.verdict as verdict

    monkeypatch.setattr(verdict, "verdict", lambda path, xsd: (_ for _ in ()).throw(RuntimeError("simulated")))
    r = run("print", "summary", str(BILLING), "-o", str(tmp_path))
    assert r.exit_code == 3, r.stderr
    assert list(tmp_path.iterdir()) == []


# --- build: its output is checked by the same validator ------------------------------------

def _validator():
    from cns_exchange.validation.validate import Validator

    return Validator(REGISTRY, load_codes(), load_nomenclature(), 1 << 30)


@pytest.mark.parametrize("broken", [None, "line-not-a-number", "root-never-closed"])
def test_a_built_document_that_fails_its_xsd_is_not_published(tmp_path, broken):
    from cns_exchange.billing.build import Destination, publish_document
    from cns_exchange.errors import InputError

    data = BROKEN[broken](BILLING.read_bytes()) if broken else BILLING.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    if broken:
        with pytest.raises(InputError) as caught:
            publish_document("billing", lambda stream: stream.write(data), BILLING.name, Destination(out), _validator(), "1")
        assert [i.code for i in caught.value.issues] == ["XSD01" if broken == "line-not-a-number" else "XML01"]
        assert list(out.iterdir()) == []
    else:
        path, sha = publish_document("billing", lambda stream: stream.write(data), BILLING.name, Destination(out),
                                     _validator(), "1")
        assert path.read_bytes() == data and sha == hashlib.sha256(data).hexdigest()


def test_a_built_document_is_refused_when_the_verdict_is_switched_off_too(tmp_path, monkeypatch):
    from cns_exchange.billing.build import Destination, publish_document
    from cns_exchange.errors import InputError

    monkeypatch.setattr(xsdstream, "_STATE", SWITCHED_OFF)
    data = BROKEN["root-never-closed"](BILLING.read_bytes())
    with pytest.raises(InputError) as caught:
        publish_document("billing", lambda stream: stream.write(data), BILLING.name, Destination(tmp_path), _validator(), "1")
    assert "XML01" in [i.code for i in caught.value.issues]
    assert list(tmp_path.iterdir()) == []
