"""The roads large files take: libxml2's tree-less XSD verdict (xsdstream), the reader for
plainly written files (xmlplain) and the matricule checks the XSD worker takes over.

Each is an optimisation that must never change a result: here each is compared with the
road every small file takes (lxml), on the examples and on documents written otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from lxml import etree

import cns_exchange.validate as validate
import cns_exchange.xmlplain as xmlplain
import cns_exchange.xsdstream as xsdstream
from cns_exchange.nomenclature import load_codes, load_nomenclature
from cns_exchange.schemaset import SchemaRegistry
from cns_exchange.xmlplain import NotPlain, read_plain, read_plain_records
from cns_exchange.xmlread import read_document
from cns_exchange.xmlsafe import PARSER_OPTIONS
from conftest import EXAMPLES

REGISTRY = SchemaRegistry([])
BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"
PAYMENT = EXAMPLES / "CNS_DEC_20261125_000001.xml"
ROOTS = {"billing": "FichierFacturation", "payment": "JustificatifPaiement"}
HOSTILE = sorted((EXAMPLES.parent / "tests" / "corpus" / "hostile").glob("*.xml"))


def _kind_and_xsd(path):
    """(kind, XSD path) of a document, by its root element; None if it has no known root."""
    try:
        root = next(etree.iterparse(str(path), events=("start",), **PARSER_OPTIONS))[1].tag
    except (etree.XMLSyntaxError, StopIteration):
        return None
    found = REGISTRY.kind_of_root(root)
    return (found[0][1], found[0][0].documents[found[0][1]].xsd) if found else None


def _lxml_valid(path, xsd) -> bool:
    try:
        tree = etree.parse(str(path), etree.XMLParser(**PARSER_OPTIONS))
    except etree.XMLSyntaxError:
        return False
    try:
        return etree.XMLSchema(etree.parse(str(xsd))).validate(tree)
    except etree.XMLSchemaValidateError:  # e.g. "internal error" on a UTF-16 document with entities
        return False


def _by_either_road(run, monkeypatch, *args) -> list[tuple]:
    """(exit code, stdout, stderr) of cnsx ARGS as a small file, then as a large one."""
    outputs = []
    for threshold in (10**12, 0):
        monkeypatch.setattr(validate, "PARALLEL_XSD_BYTES", threshold)
        r = run(*args)
        outputs.append((r.exit_code, r.stdout, r.stderr))
    return outputs


def _variant(tmp_path, source, name, edit) -> str:
    path = tmp_path / name
    path.write_bytes(edit(source.read_bytes()))
    return str(path)


# --- xsdstream: the verdict -----------------------------------------------------------------

BROKEN = {  # edits that break a billing file and a payment statement alike
    "line-not-a-number": lambda b: b.replace(b"<NumeroLigne>2<", b"<NumeroLigne>x<", 1),
    "unknown-element": lambda b: b.replace(b"<NumeroLigne>", b"<Remarque>x</Remarque><NumeroLigne>", 1),
    "missing-element": lambda b: b.replace(b"<NumeroLigne>2</NumeroLigne>", b"", 1),
    "truncated": lambda b: b[: len(b) // 2],
    "not-well-formed": lambda b: b.replace(b"</NumeroLigne>", b"</Numero>", 1),
    "empty": lambda b: b"",
    "header-sequence-not-a-number": lambda b: b.replace(b"<NumeroSequence>", b"<NumeroSequence>x", 1),
}


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


@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p.name)
def test_verdict_agrees_with_lxml_on_hostile_documents(path, capfd):
    xsd = REGISTRY.get("1").documents["billing"].xsd
    found = _kind_and_xsd(path)
    if found is not None:
        xsd = found[1]
    assert xsdstream.verdict(str(path), str(xsd)) is _lxml_valid(path, xsd)
    assert capfd.readouterr() == ("", "")


def test_without_the_verdict_lxml_alone_finds_the_errors(run, tmp_path, monkeypatch):
    bad = _variant(tmp_path, BILLING, BILLING.name, BROKEN["line-not-a-number"])
    reports = []
    for lib in ([None], []):  # None: the functions were not found in lxml's module
        monkeypatch.setattr(xsdstream, "_LIB", lib)
        r = run("validate", "--json", bad)
        assert r.exit_code == 3
        reports.append(json.loads(r.stdout)[0]["issues"])
    assert reports[0] == reports[1] and [i["code"] for i in reports[0]] == ["XSD01"]


# --- xmlplain: the reader -------------------------------------------------------------------

def _no_names(b: bytes) -> bytes:
    lines = b.split(b"\n")
    return b"\n".join(line for line in lines if b"<Nom>" not in line and b"<Prenom>" not in line)


PLAIN = {
    "as-is": lambda b: b,
    "no-names": _no_names,
    "one-line": lambda b: b.replace(b"\n", b"").replace(b"  ", b""),
    "tabs-and-blank-lines": lambda b: b.replace(b"\n  ", b"\n\n\t  "),
    "no-declaration": lambda b: b.split(b"?>", 1)[1].lstrip(),
    "declaration-single-quotes": lambda b: b.replace(b'<?xml version="1.0" encoding="UTF-8"?>',
                                                     b"<?xml version='1.0' encoding='utf-8' standalone='yes'?>"),
}


@pytest.mark.parametrize("chunk", [1, 7, 300, 4 << 20])
@pytest.mark.parametrize("change", sorted(PLAIN), ids=str)
@pytest.mark.parametrize("kind", ["billing", "payment"])
def test_plain_reader_yields_what_lxml_yields(tmp_path, monkeypatch, kind, change, chunk):
    source = BILLING if kind == "billing" else PAYMENT
    path = _variant(tmp_path, source, source.name, PLAIN[change])
    assert _lxml_valid(path, REGISTRY.get("1").documents[kind].xsd)
    monkeypatch.setattr(xmlplain, "CHUNK", chunk)
    for columns in (True, False):
        with open(path, "rb") as f:
            expected = list(read_document(f, kind, ROOTS[kind], columns=columns))
        with open(path, "rb") as f:
            got = list(read_plain(f, kind, ROOTS[kind], columns=columns))
        assert len(got) == len(expected) > 1
        assert got == expected
        if columns and kind == "billing":  # the session lines, counted lazily, are lxml's too
            assert [list(i.record.lines) for i in got[1:]] == [i.record.lines for i in expected[1:]]


NOT_PLAIN_PAYMENT = {  # the same changes, where a payment statement has no such element
    "comment": lambda b: b.replace(b"<Ligne>", b"<Ligne><!-- x -->", 1),
    "processing-instruction": lambda b: b.replace(b"<Ligne>", b"<?cnsx x?><Ligne>", 1),
    "attribute": lambda b: b.replace(b"<Ligne>", b'<Ligne xmlns:x="urn:x">', 1),
    "cdata": lambda b: b.replace(b"<Libelle>", b"<Libelle><![CDATA[x]]>", 1),
    "entity": lambda b: b.replace(b"<Libelle>", b"<Libelle>&amp;", 1),
    "character-reference": lambda b: b.replace(b"<Libelle>", b"<Libelle>&#105;", 1),
    "space-in-tag": lambda b: b.replace(b"<NumeroTitre>", b"<NumeroTitre >", 1),
    "doctype": lambda b: b.replace(b"<JustificatifPaiement>", b"<!DOCTYPE JustificatifPaiement>\n<JustificatifPaiement>", 1),
}

NOT_PLAIN = {
    "comment": lambda b: b.replace(b"<Seance>", b"<Seance><!-- x -->", 1),
    "cdata": lambda b: b.replace(b"<Nom>Schmit</Nom>", b"<Nom><![CDATA[Schmit]]></Nom>"),
    "entity": lambda b: b.replace(b"<Nom>Schmit</Nom>", b"<Nom>Schmit &amp; Co</Nom>"),
    "character-reference": lambda b: b.replace(b"<Nom>Schmit</Nom>", b"<Nom>Schm&#105;t</Nom>"),
    "crlf": lambda b: b.replace(b"\n", b"\r\n"),
    "latin-1": lambda b: b.decode("utf-8").replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1"),
    "bom": lambda b: b"\xef\xbb\xbf" + b,
    "processing-instruction": lambda b: b.replace(b"<Seance>", b"<?cnsx x?><Seance>", 1),
    "attribute": lambda b: b.replace(b"<MemoireHonoraires>", b'<MemoireHonoraires xmlns:x="urn:x">', 1),
    "space-in-tag": lambda b: b.replace(b"<Nom>Schmit</Nom>", b"<Nom >Schmit</Nom >"),
    "doctype": lambda b: b.replace(b"<FichierFacturation>", b"<!DOCTYPE FichierFacturation>\n<FichierFacturation>", 1),
}


@pytest.mark.parametrize("change", sorted(NOT_PLAIN), ids=str)
def test_documents_written_otherwise_are_left_to_lxml(run, tmp_path, monkeypatch, change):
    path = _variant(tmp_path, BILLING, BILLING.name, NOT_PLAIN[change])
    with open(path, "rb") as f, pytest.raises(NotPlain):
        list(read_plain(f, "billing", ROOTS["billing"], columns=True))
    payment = _variant(tmp_path, PAYMENT, PAYMENT.name, NOT_PLAIN_PAYMENT.get(change, NOT_PLAIN[change]))
    if open(payment, "rb").read() != PAYMENT.read_bytes():  # (the change applies to a payment statement too)
        with open(payment, "rb") as f, pytest.raises(NotPlain):
            list(read_plain_records(f, "payment", ROOTS["payment"]))
    # ... and validate says the same of it by either road.
    small, large = _by_either_road(run, monkeypatch, "validate", "--json", path)
    assert small == large


def test_a_long_item_that_is_not_plain_is_given_up_without_reading_the_rest(monkeypatch):
    # Past MAX_ITEM characters without a match the reader stops: it never reads a whole
    # large file into memory to find that it cannot read it.
    monkeypatch.setattr(xmlplain, "CHUNK", 1 << 16)
    head, rest = BILLING.read_bytes().split(b"<MemoireHonoraires>", 1)
    big = head + b'<MemoireHonoraires a="1">' + b" " * (xmlplain.MAX_ITEM * 3) + b"<MemoireHonoraires>" + rest

    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, size=-1):
            data = super().read(size)
            Counting.read_bytes += len(data)
            return data

    with pytest.raises(NotPlain):
        list(read_plain(Counting(big), "billing", ROOTS["billing"]))
    assert Counting.read_bytes < len(big)


# --- the matricule checks the XSD worker takes over ----------------------------------------

def test_deferred_matricules_are_settled_by_the_worker_or_here(tmp_path):
    rules = validate._BillingRules(validate.Report("x"), load_codes(), load_nomenclature())
    good, wrong_luhn = "1974091186700", "1974091186710"
    rules.deferred = {good, wrong_luhn}
    assert rules.settle({good, wrong_luhn}) is True     # the worker's word is taken
    assert rules.settle({good}) is False                # else checked here: C1 is wrong
    rules.deferred = {good}
    assert rules.settle(None) is True                   # the worker found nothing: all checked here
    path = tmp_path / "m.xml"
    path.write_text(f"<a><Matricule>{good}</Matricule><Matricule> {wrong_luhn}</Matricule><Matricule>12</Matricule></a>")
    assert validate.clean_matricules(str(path)) == {good}


BAD_MATRICULES = {
    "wrong-check-digit": lambda b: b.replace(b"<Matricule>1974091186700<", b"<Matricule>1974091186710<"),
    "impossible-birth-date": lambda b: b.replace(b"<Matricule>1974091186700<", b"<Matricule>1974133186700<"),
}


@pytest.mark.parametrize("change", sorted(BAD_MATRICULES), ids=str)
def test_a_bad_matricule_in_a_large_file_is_reported_as_in_a_small_one(run, tmp_path, monkeypatch, change):
    path = _variant(tmp_path, BILLING, BILLING.name, BAD_MATRICULES[change])
    assert path and open(path, "rb").read() != BILLING.read_bytes()
    small, large = _by_either_road(run, monkeypatch, "validate", "--json", path)
    assert small == large
    assert any(i["code"].startswith("MAT") for i in json.loads(small[1])[0]["issues"])


# --- import: the same records by either road ------------------------------------------------

IMPORTED = {
    "as-is": lambda b: b,
    "deviating": lambda b: b.replace(b"<NumeroTitre>TPC-2026-000101<", b"<NumeroTitre>not a certificate<", 1),
    "not-plain": NOT_PLAIN["comment"],
}


@pytest.mark.parametrize("change", sorted(IMPORTED), ids=str)
@pytest.mark.parametrize("source", [BILLING, PAYMENT], ids=lambda p: p.name)
def test_import_reads_the_same_by_either_road(run, tmp_path, monkeypatch, source, change):
    path = _variant(tmp_path, source, source.name, IMPORTED[change])
    small, large = _by_either_road(run, monkeypatch, "import", "--no-db", "--json", path)
    assert small == large and small[1].strip()


# --- build: the XSD check while the document is written ------------------------------------

def _validator():
    from cns_exchange.validate import Validator

    return Validator(REGISTRY, load_codes(), load_nomenclature(), 1 << 30)


@pytest.mark.parametrize("change, expected", [("as-is", True), ("line-not-a-number", False),
                                              ("not-well-formed", False), ("empty", False)])
def test_the_verdict_while_writing_writes_everything_through(tmp_path, change, expected):
    data = (PLAIN if change == "as-is" else BROKEN)[change](BILLING.read_bytes())
    target = io.BytesIO()
    checking = xsdstream.WhileWriting(target, str(REGISTRY.get("1").documents["billing"].xsd))
    for start in range(0, len(data), 1000):  # in pieces, as a writer does
        checking.write(data[start:start + 1000])
    assert checking.result() is expected
    assert target.getvalue() == data  # also when the check stopped reading early


def test_a_check_that_stops_early_never_holds_up_the_writer():
    # libxml2 stops at the first well-formedness error; the writer then still writes many
    # times what the queue between them holds (8 chunks of 1 MiB), and must not wait.
    session = b"<Seance><NumeroLigne>1</NumeroLigne></Seance>\n" * 1000
    target = io.BytesIO()
    checking = xsdstream.WhileWriting(target, str(REGISTRY.get("1").documents["billing"].xsd))
    checking.write(b"<?xml version='1.0'?><FichierFacturation><<")
    for _ in range(500):  # ~23 MB
        checking.write(session)
    assert checking.result() is False
    assert len(target.getvalue()) > 20_000_000


@pytest.mark.parametrize("broken", [False, True])
def test_a_built_document_that_fails_its_xsd_is_not_published(tmp_path, broken):
    from cns_exchange.build import Destination, publish_document
    from cns_exchange.errors import InputError

    data = BROKEN["line-not-a-number"](BILLING.read_bytes()) if broken else BILLING.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    if broken:
        with pytest.raises(InputError) as caught:
            publish_document("billing", lambda stream: stream.write(data), BILLING.name, Destination(out), _validator(), "1")
        assert [i.code for i in caught.value.issues] == ["XSD01"]
        assert list(out.iterdir()) == []
    else:
        path, sha = publish_document("billing", lambda stream: stream.write(data), BILLING.name, Destination(out),
                                     _validator(), "1")
        assert path.read_bytes() == data and sha == hashlib.sha256(data).hexdigest()


def test_import_of_a_large_billing_file_names_the_real_line_of_a_session(run, tmp_path, monkeypatch):
    # Bare records for import: a session still carries its line in the file (DOC08's warning).
    data = BILLING.read_bytes()
    last = data.rindex(b"<NumeroLigne>2<")
    path = tmp_path / BILLING.name
    path.write_bytes(data[:last] + b"<NumeroLigne>1<" + data[last + len(b"<NumeroLigne>2<"):])
    monkeypatch.setenv("CNSX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(validate, "PARALLEL_XSD_BYTES", 0)
    r = run("import", str(path))
    line = data[:data.rindex(b"<Seance>", 0, last)].count(b"\n") + 1  # a session's line: where it starts
    assert f"{path}:{line} " in r.stderr and "DOC08" in r.stderr, r.stderr


def test_a_failed_write_ends_the_check_while_writing(tmp_path):
    import threading

    from cns_exchange.build import Destination, publish_document

    before = threading.active_count()

    def failing(stream):
        stream.write(BILLING.read_bytes()[:1000])
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        publish_document("billing", failing, BILLING.name, Destination(tmp_path), _validator(), "1")
    assert threading.active_count() == before and list(tmp_path.iterdir()) == []


def test_the_import_error_is_reported_not_the_archive_thread_one(tmp_path, monkeypatch):
    import sqlite3

    from cns_exchange import importing
    from cns_exchange.errors import InputError

    def import_fails(conn, doc):
        raise sqlite3.OperationalError("database is locked")

    def archive_fails(*args):
        raise InputError("the archive copy failed")

    monkeypatch.setattr(importing, "import_document", import_fails)
    monkeypatch.setattr(importing, "_keep", archive_fails)
    with pytest.raises(sqlite3.OperationalError):
        importing.import_path(sqlite3.connect(":memory:"), PAYMENT, _validator(), tmp_path / "archive", tmp_path / "errors",
                              move=False)
