"""The practice's identity ([practice] in the config) on the documents it hands out: fee notes
and summaries show its name, address, phone, IBAN and the dieticians' names; a bad IBAN or an
unknown key is a configuration error, exit 4."""

from __future__ import annotations

import pytest

from decimal import Decimal

from conftest import PROVIDER
from test_cli_print import billing, french, metadata, render, text_of, xml_notes  # noqa: F401 - billing: the fixture
from test_status_pdf import db  # noqa: F401 - the fixture: a practice database of the examples

PRACTICE = f'''provider = "{PROVIDER}"

[practice]
name = "Cabinet de diététique Muller"
address = ["12, rue de l'Alzette", "L-4010 Esch-sur-Alzette"]
phone = "+352 26 12 34 56"
iban = "lu28 0019 4006 4475 0000"
dieticians = {{ "123456" = "Anne Muller", "654321" = "Marc Weber" }}
'''


def _config(isolated_config, text: str) -> None:
    config = isolated_config / "config.toml"
    config.write_text(text, "utf-8")
    config.chmod(0o600)


def test_fee_notes_and_summary_show_the_practice(run, billing, isolated_config, tmp_path):
    _config(isolated_config, PRACTICE)
    notes = tmp_path / "notes"
    r = run("print", "fee-notes", str(billing), "-o", str(notes), "--created", "2026-11-21T10:30:00+01:00")
    assert r.exit_code == 0, r.stderr
    [first] = notes.glob("*_MH0001.pdf")   # Schmit Léa's: sessions by both dieticians
    text = text_of(first)
    for shown in ("Cabinet de diététique Muller", "12, rue de l'Alzette, L-4010 Esch-sur-Alzette",
                  "Tél. +352 26 12 34 56", "IBAN LU28 0019 4006 4475 0000", "Anne Muller (123456)", "Marc Weber (654321)"):
        assert shown in text, (shown, text)
    render(first, "practice-fee-note")
    summary = tmp_path / "recap.pdf"
    r = run("print", "summary", str(billing), "-o", str(summary))
    assert r.exit_code == 0, r.stderr
    text = text_of(summary)
    assert "Cabinet de diététique Muller · 12, rue de l'Alzette" in text and "LU28 0019 4006 4475 0000" in text
    render(summary, "practice-summary")


def test_the_summary_names_the_dieticians_by_provider_code(run, billing, isolated_config, tmp_path):
    """The billing provider is named beside its code, and the sessions of the file are added
    up by executing provider, each with the name the config gives its code."""
    _config(isolated_config, PRACTICE)
    summary = tmp_path / "recap.pdf"
    r = run("print", "summary", str(billing), "-o", str(summary))
    assert r.exit_code == 0, r.stderr
    text = text_of(summary)
    assert f"Code prestataire {PROVIDER} — Anne Muller" in text
    assert "Séances par prestataire exécutant Exécutant Diététicien(ne) Séances Brut € Patient € CNS €" in text
    sums: dict[str, list] = {}
    for note in xml_notes(billing)[1]:
        for s in note["sessions"]:
            row = sums.setdefault(s["PrestataireExecutant"], [0, Decimal(0), Decimal(0), Decimal(0)])
            row[0] += 1
            for k, field in enumerate(("MontantBrut", "ParticipationPersonnelle", "PartStatutaire"), 1):
                row[k] += Decimal(s[field])
    assert set(sums) == {"123456", "654321"}   # the examples: two dieticians
    for code, name in (("123456", "Anne Muller"), ("654321", "Marc Weber")):
        sessions, gross, patient, cns = sums[code]
        assert f"{code} {name} {sessions} {french(str(gross))} {french(str(patient))} {french(str(cns))}" in text, text


def test_without_named_dieticians_the_summary_has_no_table_of_them(run, billing, tmp_path):
    r = run("print", "summary", str(billing), "-o", str(tmp_path / "recap.pdf"))
    assert r.exit_code == 0, r.stderr
    assert "prestataire exécutant" not in text_of(tmp_path / "recap.pdf")


def test_the_status_report_shows_the_practice(run, db, isolated_config, tmp_path):
    """The status PDF names the practice (name, address, phone, IBAN) and each provider code
    of the database with its dietician's name; the metadata stay free of it as before."""
    _config(isolated_config, PRACTICE)
    target = tmp_path / "status.pdf"
    r = run("status", "--pdf", str(target), "--db", str(db))
    assert r.exit_code == 0, r.stderr
    text = text_of(target)
    assert "Cabinet Cabinet de diététique Muller · 12, rue de l'Alzette · L-4010 Esch-sur-Alzette" in text, text
    assert "Téléphone · IBAN +352 26 12 34 56 · LU28 0019 4006 4475 0000" in text
    assert "Code prestataire 123456 (Anne Muller)" in text
    assert metadata(target)["/Author"] == "Prestataire 123456"
    render(target, "practice-status")


def test_without_a_practice_the_fee_note_shows_the_provider_code_only(run, billing, tmp_path):
    r = run("print", "fee-notes", str(billing), "-o", str(tmp_path / "notes"))
    assert r.exit_code == 0, r.stderr
    text = text_of(sorted((tmp_path / "notes").iterdir())[0])
    assert f"Code prestataire CNS : {PROVIDER}" in text and "IBAN" not in text


@pytest.mark.parametrize("table, says", [
    ('iban = "LU29 0019 4006 4475 0000"', "not a valid IBAN"),
    ('iban = "LU28 0019"', "not a valid IBAN"),
    ('name = ""', "practice.name must be a non-empty string"),
    ('name = "X"\nbank = "BCEE"', "unknown key bank"),
    ('name = "X"\ndieticians = { "Anne" = "123456" }', "must be a provider code"),
    ('name = "X"\naddress = 12', "address must be a string or a list of lines"),
])
def test_a_bad_practice_table_is_a_configuration_error(run, isolated_config, table, says):
    if "name" not in table:
        table = 'name = "X"\n' + table
    _config(isolated_config, f'provider = "{PROVIDER}"\n[practice]\n{table}\n')
    r = run("print", "summary", "nothing.xml", "-o", "x.pdf")
    assert r.exit_code == 4, r.stderr
    assert says in r.stderr
