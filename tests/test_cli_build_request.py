"""cnsx build-request: exit code, stdout and stderr checked separately; file and '-'."""

from __future__ import annotations

import hashlib

import pytest
from lxml import etree

from conftest import CREATED, PROVIDER, SCHEMAS, xmllint

ARGS = ("--provider", PROVIDER, "--created", CREATED)


@pytest.mark.parametrize("via_stdin", [False, True], ids=["file", "stdin"])
def test_build_to_stdout(run, examples, monkeypatch, via_stdin):
    source = examples / "requests.csv"
    if via_stdin:
        monkeypatch.chdir(examples)  # relative PDF paths of stdin rows are read from the cwd
        r = run("build-request", "-", *ARGS, input=source.read_bytes())
    else:
        r = run("build-request", str(source), *ARGS)
    assert r.exit_code == 0, r.stderr
    root = etree.fromstring(r.stdout_bytes)
    assert root.tag == "DemandesTitrePriseEnCharge"
    assert root.findtext("EnTete/NombreDemandes") == "3"
    first = root.find("Demande")
    assert first.findtext("ReferenceDemande") == "REQ-0001"
    assert first.findtext("Patient/Prenom") == "Léa"
    assert first.findtext("CodeMedecinPrescripteur") == "12345678"  # '123456-78' normalised
    assert [a.findtext("CodeActe") + "x" + a.findtext("Nombre") for a in first.iter("Acte")] == ["ZD11x1", "ZD12x1", "ZD13x4"]
    pdf = examples / "prescriptions" / "ordonnance-REQ-0001.pdf"
    assert first.findtext("Ordonnance/NomFichier") == "123456_ORD_REQ-0001.pdf"  # the naming convention
    assert first.findtext("Ordonnance/Sha256") == hashlib.sha256(pdf.read_bytes()).hexdigest()
    third = root.findall("Demande")[2]
    assert third.findtext("TypeTraitement") == "prolongation"
    assert [a.findtext("CodeActe") for a in third.iter("Acte")] == ["ZD21"]
    assert "3 requests" in r.stderr


def test_output_folder_copies_prescriptions(run, examples, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    r = run("build-request", str(examples / "requests.csv"), *ARGS, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["123456_DTP_20261120_000001.xml", "123456_ORD_REQ-0001.pdf", "123456_ORD_REQ-0002.pdf",
                     "123456_ORD_REQ-0003.pdf"]
    assert (out / "123456_ORD_REQ-0002.pdf").read_bytes() == (examples / "prescriptions" / "ordonnance-REQ-0002.pdf").read_bytes()
    for p in out.iterdir():
        assert p.stat().st_mode & 0o777 == 0o600
    assert xmllint(out / names[0], SCHEMAS / "v1" / "demande_titre.xsd").returncode == 0


def test_requested_acts_column(run, examples):
    lines = (examples / "requests.csv").read_text("utf-8").splitlines()
    lines[0] += ";requested_acts"
    lines[1] += ';"ZD11:1;ZD12:1;ZD13:2"'  # the value holds ';': quoted
    lines[2] += ";"
    lines[3] += ";"
    path = examples / "with_acts.csv"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    r = run("build-request", str(path), *ARGS)
    assert r.exit_code == 0, r.stderr
    first = etree.fromstring(r.stdout_bytes).find("Demande")
    assert [(a.findtext("CodeActe"), a.findtext("Nombre")) for a in first.iter("Acte")] == [
        ("ZD11", "1"), ("ZD12", "1"), ("ZD13", "2")]


def test_old_prescription_refused(run, examples):
    r = run("build-request", str(examples / "requests.csv"), "--provider", PROVIDER, "--created", "2027-03-01T09:00:00+01:00")
    assert r.exit_code == 3
    assert "TRT06" in r.stderr
    assert f"{examples / 'requests.csv'}:2 [prescription_date]" in r.stderr
    assert r.stdout == ""


def test_missing_pdf(run, examples):
    (examples / "prescriptions" / "ordonnance-REQ-0002.pdf").unlink()
    r = run("build-request", str(examples / "requests.csv"), *ARGS)
    assert r.exit_code == 3
    assert f"{examples / 'requests.csv'}:3 [prescription_pdf]" in r.stderr and "IN008" in r.stderr
