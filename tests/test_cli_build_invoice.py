"""cnsx build-invoice: exit code, stdout and stderr checked separately; file and '-'."""

from __future__ import annotations

import json

import pytest
from lxml import etree

from conftest import CREATED, PROVIDER, SCHEMAS, xmllint

ARGS = ("--provider", PROVIDER, "--created", CREATED)


def _sessions(root: etree._Element) -> list[tuple[str, str, str, str, str]]:
    return [(n.findtext("NumeroTitre"), n.findtext("Patient/Matricule"), s.findtext("DateSeance"),
             s.findtext("CodeActe"), s.findtext("MontantBrut"))
            for n in root.iter("MemoireHonoraires") for s in n.iter("Seance")]


@pytest.mark.parametrize("via_stdin", [False, True], ids=["file", "stdin"])
def test_build_to_stdout(run, examples, via_stdin):
    source = examples / "sessions.csv"
    if via_stdin:
        r = run("build-invoice", "-", *ARGS, input=source.read_bytes())
    else:
        r = run("build-invoice", str(source), *ARGS)
    assert r.exit_code == 0, r.stderr
    root = etree.fromstring(r.stdout_bytes)
    assert root.tag == "FichierFacturation"
    assert root.findtext("EnTete/NombreSeances") == "8"
    assert root.findtext("EnTete/TotalMontantBrut") == "622.20"
    # stdout is data only: the summary goes to stderr
    assert "8 sessions" in r.stderr and "stdout" in r.stderr
    assert r.stdout.startswith("<?xml")


def test_amounts_priced_by_age_and_act(run, examples):
    r = run("build-invoice", str(examples / "sessions.csv"), *ARGS)
    rows = _sessions(etree.fromstring(r.stdout_bytes))
    amounts = {(cert, act): gross for cert, _, _, act, gross in rows}
    assert amounts[("TPC-2026-000101", "ZD11")] == "88.89"
    assert amounts[("TPC-2026-000101", "ZD12")] == "111.11"
    assert amounts[("TPC-2026-000101", "ZD13")] == "55.55"
    root = etree.fromstring(r.stdout_bytes)
    # Patient born 2015-12-31 is a minor: the CNS pays all.
    minor = [s for n in root.iter("MemoireHonoraires") if n.findtext("NumeroTitre") == "TPC-2026-000087"
             for s in n.iter("Seance")]
    assert {s.findtext("ParticipationPersonnelle") for s in minor} == {"0.00"}
    adult = root.find("MemoireHonoraires/Seance")
    assert adult.findtext("ParticipationPersonnelle") == "10.67"  # 12 % of 88.89, half up
    assert adult.findtext("PartStatutaire") == "78.22"


def test_output_folder_gets_conventional_names_and_sequences(run, examples, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for expected in ("123456_FAC_20261120_000001.xml", "123456_FAC_20261120_000002.xml"):
        r = run("build-invoice", str(examples / "sessions.csv"), *ARGS, "-o", str(out))
        assert r.exit_code == 0, r.stderr
        assert r.stdout == ""
        assert (out / expected).is_file()
        assert (out / expected).stat().st_mode & 0o777 == 0o600
    second = etree.parse(str(out / "123456_FAC_20261120_000002.xml"))
    assert second.findtext("EnTete/NumeroSequence") == "2"
    assert sorted(p.name for p in out.iterdir()) == ["123456_FAC_20261120_000001.xml", "123456_FAC_20261120_000002.xml"]
    assert xmllint(out / "123456_FAC_20261120_000001.xml", SCHEMAS / "v1" / "facturation.xsd").returncode == 0


def test_output_file_path(run, examples, tmp_path):
    target = tmp_path / "billing.xml"
    r = run("build-invoice", str(examples / "sessions.csv"), *ARGS, "-o", str(target), "--sequence", "7")
    assert r.exit_code == 0, r.stderr
    assert etree.parse(str(target)).findtext("EnTete/NumeroSequence") == "7"


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_json_inputs(run, tmp_path, fmt):
    rows = [
        {"certificate_number": "TPC-1", "matricule": "1974091186700", "session_date": "2026-10-20", "act_code": "ZD11"},
        {"certificate_number": "TPC-1", "matricule": 1974091186700, "session_date": "2026-10-27", "act_code": "zd12",
         "executing_provider": "654321"},
    ]
    path = tmp_path / f"sessions.{fmt}"
    path.write_text(json.dumps(rows) if fmt == "json" else "\n".join(json.dumps(r) for r in rows) + "\n")
    r = run("build-invoice", str(path), *ARGS)
    assert r.exit_code == 0, r.stderr
    root = etree.fromstring(r.stdout_bytes)
    assert [s.findtext("CodeActe") for s in root.iter("Seance")] == ["ZD11", "ZD12"]
    assert [s.findtext("PrestataireExecutant") for s in root.iter("Seance")] == [PROVIDER, "654321"]
    # stdin: the format is sniffed from the first byte
    r2 = run("build-invoice", "-", *ARGS, input=path.read_bytes())
    assert r2.exit_code == 0, r2.stderr
    assert r2.stdout_bytes == r.stdout_bytes


def test_semicolon_bom_accents(run, tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes("\ufeffcertificate_number;matricule;session_date;act_code;last_name;first_name\r\n"
                     "TPC-9;1974091186700;2026-10-20;ZD11;Müller-Gëtz;Zoé\r\n".encode("utf-8"))
    r = run("build-invoice", str(path), *ARGS)
    assert r.exit_code == 0, r.stderr
    root = etree.fromstring(r.stdout_bytes)
    assert root.findtext("MemoireHonoraires/Patient/Nom") == "Müller-Gëtz"
    assert root.findtext("MemoireHonoraires/Patient/Prenom") == "Zoé"


def test_sessions_sorted_by_date_within_fee_note(run, tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("certificate_number,matricule,session_date,act_code\n"
                    "TPC-1,1974091186700,2026-10-27,ZD12\n"
                    "TPC-2,1982080285657,2026-10-21,ZD11\n"
                    "TPC-1,1974091186700,2026-10-20,ZD11\n")
    r = run("build-invoice", str(path), *ARGS)
    assert r.exit_code == 0, r.stderr
    rows = _sessions(etree.fromstring(r.stdout_bytes))
    assert [(c, d, a) for c, _, d, a, _ in rows] == [
        ("TPC-1", "2026-10-20", "ZD11"), ("TPC-1", "2026-10-27", "ZD12"), ("TPC-2", "2026-10-21", "ZD11")]


def test_invalid_row_nothing_written(run, examples, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    path = tmp_path / "bad.csv"
    path.write_text("certificate_number,matricule,session_date,act_code\n"
                    "TPC-1,1974091186701,2026-10-20,ZD11\n"
                    "TPC-1,1974091186700,2026-13-01,ZD99\n")
    r = run("build-invoice", str(path), *ARGS, "-o", str(out))
    assert r.exit_code == 3
    assert r.stdout == ""
    assert f"{path}:2 [matricule]" in r.stderr and "MAT03" in r.stderr
    assert f"{path}:3 [session_date]" in r.stderr and "IN004" in r.stderr
    assert f"{path}:3 [act_code]" in r.stderr and "ACT01" in r.stderr
    assert list(out.iterdir()) == []
    assert "Traceback" not in r.stderr
    # the full matricule is not echoed (health data)
    assert "1974091186701" not in r.stderr


def test_provider_required(run, examples):
    r = run("build-invoice", str(examples / "sessions.csv"), "--created", CREATED)
    assert r.exit_code == 4
    assert "provider" in r.stderr
    assert r.stdout == ""


def test_provider_from_config(run, examples, isolated_config):
    (isolated_config / "config.toml").write_text('provider = "654321"\n')
    r = run("build-invoice", str(examples / "sessions.csv"), "--created", CREATED)
    assert r.exit_code == 0, r.stderr
    assert etree.fromstring(r.stdout_bytes).findtext("EnTete/CodePrestataire") == "654321"
    r = run("build-invoice", str(examples / "sessions.csv"), "--created", CREATED, "--provider", "7654321")
    assert etree.fromstring(r.stdout_bytes).findtext("EnTete/CodePrestataire") == "7654321"


def test_missing_input_file(run, tmp_path):
    r = run("build-invoice", str(tmp_path / "nope.csv"), *ARGS)
    assert r.exit_code == 3
    assert "nope.csv" in r.stderr and "cannot open" in r.stderr


def test_bad_created_is_usage_error(run, examples):
    r = run("build-invoice", str(examples / "sessions.csv"), "--provider", PROVIDER, "--created", "yesterday")
    assert r.exit_code == 2
    assert "--created" in r.stderr


def test_unknown_schema_version_is_config_error(run, examples):
    r = run("build-invoice", str(examples / "sessions.csv"), *ARGS, "--schema-version", "9")
    assert r.exit_code == 4
    assert "schema version '9'" in r.stderr


@pytest.mark.parametrize("fmt, text", [("json", "[" * 100_000), ("ndjson", '{"a":' * 100_000 + "\n")])
def test_deeply_nested_json_is_a_malformed_input_not_a_crash(run, tmp_path, fmt, text):
    path = tmp_path / f"deep.{fmt}"
    path.write_text(text)
    r = run("build-invoice", str(path), *ARGS)
    assert r.exit_code == 3, r.stderr
    assert "IN006" in r.stderr and "nested too deeply" in r.stderr and r.stdout == ""
