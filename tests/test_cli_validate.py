"""cnsx validate: exit code, stdout and stderr checked separately; files and '-'."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import EXAMPLES

#: The exact issues of each file: with a current tariff table, no NOM05 joins them (test_tariffs.py tests it).
pytestmark = pytest.mark.usefixtures("current_tariffs")

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.xml"))
KINDS = {"DTP": "request", "FAC": "billing", "ACR": "ack", "RTP": "answers", "DEC": "payment"}


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_is_valid(run, path):
    r = run("validate", str(path))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    version = "2" if "<VersionSchema>2</VersionSchema>" in path.read_text("utf-8") else "1"
    assert f"{path}: valid ({KINDS[path.name.split('_')[1]]} v{version}" in r.stderr


def test_many_files_json(run):
    r = run("validate", "--json", *map(str, EXAMPLE_FILES))
    assert r.exit_code == 0, r.stderr
    reports = json.loads(r.stdout)
    assert [rep["file"] for rep in reports] == [str(p) for p in EXAMPLE_FILES]
    assert {rep["kind"] for rep in reports} == set(KINDS.values())
    assert all(rep["valid"] and rep["issues"] == [] for rep in reports)
    billing = next(rep for rep in reports if rep["kind"] == "billing")
    assert billing["items"] == 3


def test_many_files_compile_each_schema_once(run, tmp_path, monkeypatch):
    # Every file of a kind is checked against the XSD compiled for the first one.
    from lxml import etree

    compiled = []
    real = etree.XMLSchema

    def counting(*args, **kwargs):
        compiled.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(etree, "XMLSchema", counting)
    files = []
    for copy in range(3):
        (tmp_path / str(copy)).mkdir()
        for path in EXAMPLE_FILES:
            files.append(shutil.copy(path, tmp_path / str(copy) / path.name))
    r = run("validate", "--no-attachments", *map(str, files))  # (the prescription PDFs stay behind)
    assert r.exit_code == 0, r.stderr
    assert r.stderr.count(": valid (") == 3 * len(EXAMPLE_FILES)
    # Once per kind and version: the examples hold the five kinds of v1 and a billing file of v2.
    assert len(compiled) == len(set(KINDS.values())) + 1


def test_stdin(run):
    source = next(p for p in EXAMPLE_FILES if "_FAC_" in p.name)
    r = run("validate", "-", input=source.read_bytes())
    assert r.exit_code == 0, r.stderr
    assert "<stdin>: valid (billing v1" in r.stderr


def test_invalid_file_exit_3_with_line_and_xpath(run, tmp_path):
    source = next(p for p in EXAMPLE_FILES if "_FAC_" in p.name)
    lines = source.read_text("utf-8").splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if "<CodeActe>ZD12</CodeActe>" in line)
    lines[index] = lines[index].replace("ZD12", "ZD99")
    bad = tmp_path / source.name
    bad.write_text("".join(lines), "utf-8")
    r = run("validate", "--json", str(bad), str(source))
    assert r.exit_code == 3
    reports = json.loads(r.stdout)
    assert [rep["valid"] for rep in reports] == [False, True]
    issue = reports[0]["issues"][0]
    assert issue["code"] == "XSD01" and issue["severity"] == "error"
    assert issue["line"] == index + 1
    assert issue["xpath"] == "/FichierFacturation/MemoireHonoraires[1]/Seance[2]/CodeActe"
    assert "ZD99" in issue["message"] and issue["hint"]
    assert f"{bad}:{index + 1} /FichierFacturation/MemoireHonoraires[1]/Seance[2]/CodeActe" in r.stderr


def test_business_rule_error(run, tmp_path):
    source = next(p for p in EXAMPLE_FILES if "_FAC_" in p.name)
    text = source.read_text("utf-8").replace("<NombreSeances>8</NombreSeances>", "<NombreSeances>9</NombreSeances>")
    bad = tmp_path / source.name
    bad.write_text(text, "utf-8")
    r = run("validate", "--json", str(bad))
    assert r.exit_code == 3
    issues = json.loads(r.stdout)[0]["issues"]
    assert [(i["code"], i["xpath"]) for i in issues] == [("DOC01", "/FichierFacturation/EnTete/NombreSeances")]


def test_name_convention_is_a_warning(run, tmp_path):
    source = next(p for p in EXAMPLE_FILES if "_ACR_" in p.name)
    target = tmp_path / "ack.xml"
    shutil.copy(source, target)
    r = run("validate", "--json", str(target))
    assert r.exit_code == 0
    issues = json.loads(r.stdout)[0]["issues"]
    assert [(i["code"], i["severity"]) for i in issues] == [("DOC07", "warning")]


def test_no_files_is_usage_error(run):
    r = run("validate")
    assert r.exit_code == 2
    assert "FILE" in r.stderr


def test_missing_file(run, tmp_path):
    r = run("validate", str(tmp_path / "missing.xml"))
    assert r.exit_code == 3
    assert "missing.xml" in r.stderr and "cannot open" in r.stderr


def test_lxml_alone_finds_what_libxml2_verdict_refuses(run, tmp_path, monkeypatch):
    """With libxml2's verdict and with it switched off (lxml alone): the same issue."""
    import cns_exchange.documents.verdict as xsdstream

    source = next(p for p in EXAMPLE_FILES if "_FAC_" in p.name)
    lines = source.read_text("utf-8").splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if "<MontantBrut>" in line)
    lines[index] = lines[index].replace("<MontantBrut>", "<MontantBrut>x")
    bad = tmp_path / source.name
    bad.write_text("".join(lines), "utf-8")
    results = []
    assert xsdstream.available()
    for state in ({"lib": None, "reason": "switched off by the test"}, dict(xsdstream._STATE)):
        monkeypatch.setattr(xsdstream, "_STATE", state)
        r = run("validate", "--json", str(bad))
        assert r.exit_code == 3
        results.append([(i["code"], i["line"], i["xpath"]) for i in json.loads(r.stdout)[0]["issues"]])
    assert results[0] == results[1] == [("XSD01", index + 1, "/FichierFacturation/MemoireHonoraires[1]/Seance[1]/MontantBrut")]
