"""French at the first places a practice meets cnsx: the input readers' issues and their Excel
hints (rows/), the build's refusal (billing/), validate's findings on a broken document
(validation/, documents/); real files through the real command under a French locale, and
--json that stays English whatever the locale.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cns_exchange import i18n
from conftest import CREATED, EXAMPLES, PROVIDER

FRENCH = {"LANG": "fr_FR.UTF-8"}
ENGLISH = {"LANG": "C.UTF-8"}


@pytest.fixture
def french(monkeypatch):
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    yield
    i18n.choose(None)


def _cnsx(args, cwd: Path, language_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG", "CNSX_LANGUAGE")}
    env.update(language_env)
    return subprocess.run([sys.executable, "-m", "cns_exchange", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def excel_sessions(tmp_path) -> Path:
    """Sessions as Excel's "CSV (séparateur: point-virgule)" writes them on a French Windows:
    cp1252, ';', French headers, dates day first; with the mistakes a spreadsheet makes."""
    rows = [
        "N° Titre;Matricule;Date séance;Acte;Remarque",
        "TPC-2026-000001;1893120105732;31/11/2026;ZD11;première séance",   # no 31 November
        "TPC-2026-000001;1,89312E+12;02/11/26;ZD 12;",                     # Excel's damage
        "TPC-2026-000001;1893120105732;03/11/2026;;",                      # act left empty
    ]
    path = tmp_path / "séances.csv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("cp1252"))
    return path


def _build(path: Path, language_env, *extra) -> subprocess.CompletedProcess:
    return _cnsx(["build-invoice", path.name, "--provider", PROVIDER, "--created", CREATED, "--no-certificate-check",
                  *extra], path.parent, language_env)


def test_an_excel_csv_with_errors_is_explained_in_french(excel_sessions, current_tariffs):
    r = _build(excel_sessions, FRENCH)
    assert r.returncode == 3 and r.stdout == ""
    err = r.stderr
    # rows/reading: the column cnsx does not use (a warning), rows/records: each bad cell
    assert "colonne non utilisée par cnsx, ignorée : « Remarque »" in err   # quoted as IN002 and the cells are
    assert ("« session_date », valeur « 31/11/2026 » : ce jour n'existe pas : jour 31 du mois 11 de 2026 "
            "(les dates sont lues le jour d'abord)") in err
    assert ("« session_date », valeur « 02/11/26 » : l'année doit avoir quatre chiffres "
            "(une année à deux chiffres est ambiguë)") in err
    assert "« act_code » est vide" in err
    # the Excel hints, the secretary's way out
    assert ("conseil : Excel a écrit ce nombre en notation scientifique et a perdu ses derniers chiffres : "
            "mettez la colonne au format Texte") in err
    assert "conseil : écrivez le code d'acte sans espace : ZD12" in err
    # billing: the build's refusal, counted in French
    assert "séances.csv : 5 problèmes dans les séances ; rien n'a été écrit" in err
    assert "conseil : corrigez les lignes indiquées ci-dessus et relancez la commande" in err
    for english in ("not used by cnsx", "no such day", "is empty", "scientific notation", "nothing was written", "hint:"):
        assert english not in err
    assert not list(excel_sessions.parent.glob("*.xml"))


def test_the_same_file_in_english_and_as_json(excel_sessions, current_tariffs):
    en = _build(excel_sessions, ENGLISH)
    assert en.returncode == 3
    assert "'session_date' value '31/11/2026': no such day: day 31 of month 11 of 2026 (dates are read day first)" in en.stderr
    assert "hint: write the act code without a space: ZD12" in en.stderr
    assert "séances.csv: 5 problems in the sessions; nothing was written" in en.stderr


def test_a_totals_line_in_french(tmp_path, current_tariffs):
    """The secretary's totals line under the sessions: skipped, with one warning in French (IN018)."""
    path = tmp_path / "séances.csv"
    path.write_bytes("N° Titre;Matricule;Date séance;Acte;Remarque;Montant\r\n"
                     "TPC-2026-000001;1893120105732;02/11/2026;ZD11;;44,44\r\n"
                     ";;;;Total;44,44\r\n".encode("cp1252"))
    r = _build(path, FRENCH)
    assert r.returncode == 0, r.stderr
    assert ("séances.csv:3 : avertissement IN018 : seules des colonnes non utilisées par cnsx ont des valeurs ici "
            "(« Remarque », « Montant ») : ligne ignorée (une ligne de totaux ?)") in r.stderr
    assert "conseil : rien à faire si c'est une ligne de totaux ou de notes" in r.stderr
    r = _build(path, FRENCH, "--strict")
    assert r.returncode == 3
    assert "seules des colonnes non utilisées par cnsx ont des valeurs ici (« Remarque », « Montant ») : ligne refusée (--strict)" in r.stderr
    assert "conseil : retirez la ligne du fichier, ou lancez la commande sans --strict" in r.stderr
    assert "only columns" not in r.stderr and "hint:" not in r.stderr


def test_an_undecodable_file_in_french(tmp_path, current_tariffs):
    """A file that is UTF-8, then Windows-1252: refused at the line where it turns (IN005)."""
    path = tmp_path / "mixed.csv"
    path.write_bytes("certificate_number;matricule;session_date;act_code;last_name\n"
                     "TPC-2026-000001;1893120105732;2026-11-02;ZD11;Müller\n".encode("utf-8")
                     + "TPC-2026-000001;1893120105732;2026-11-03;ZD12;Müller\n".encode("cp1252"))
    r = _build(path, FRENCH)
    assert r.returncode == 3
    assert "erreur IN005" in r.stderr
    assert "n'est pas de l'UTF-8, comme l'était la ligne 2 : le fichier mélange deux encodages" in r.stderr



def test_a_utf8_file_under_windows_1252_in_french(tmp_path, current_tariffs):
    """UTF-8 bytes while the encoding is set to cp1252: refused (IN005), not read as 'MÃ¼ller'."""
    path = tmp_path / "utf8.csv"
    path.write_bytes("certificate_number;matricule;session_date;act_code;last_name\n"
                     "TPC-2026-000001;1893120105732;2026-11-02;ZD11;Müller\n".encode("utf-8"))
    r = _build(path, FRENCH, "--encoding", "cp1252")
    assert r.returncode == 3
    assert ("utf8.csv:2 : erreur IN005 : le fichier est en UTF-8 (« Müller »), mais l'encodage réglé est cp1252, "
            "qui lirait « MÃ¼ller »") in r.stderr
    assert 'conseil : laissez cnsx reconnaître l\'encodage : encoding = "detect" (ou "utf-8") dans la configuration' in r.stderr
    assert "the file is UTF-8" not in r.stderr


def test_an_unknown_encoding_in_french(excel_sessions, current_tariffs):
    r = _build(excel_sessions, FRENCH, "--encoding", "klingon")
    assert r.returncode == 2
    assert "encodage inconnu « klingon »" in r.stderr and "p. ex. utf-8, cp1252, latin-1" in r.stderr


def test_an_input_without_rows_in_french(tmp_path, current_tariffs):
    path = tmp_path / "empty.json"
    path.write_text("[]", "utf-8")
    r = _build(path, FRENCH)
    assert r.returncode == 3 and "le tableau est vide" in r.stderr


@pytest.fixture
def miscounted(tmp_path) -> Path:
    """A billing file whose header counts one fee note too many (DOC01)."""
    text = (EXAMPLES / "123456_FAC_20261120_000001.xml").read_text("utf-8")
    path = tmp_path / "123456_FAC_20261120_000009.xml"
    path.write_text(text.replace("<NombreMemoires>3</NombreMemoires>", "<NombreMemoires>4</NombreMemoires>"), "utf-8")
    return path


def test_validate_of_a_broken_document_in_french(miscounted, current_tariffs):
    r = _cnsx(["validate", miscounted.name], miscounted.parent, FRENCH)
    assert r.returncode == 3
    assert "erreur DOC01" in r.stderr
    assert "l'en-tête NombreMemoires vaut 4, le fichier contient 3 mémoires d'honoraires" in r.stderr
    assert "the file holds" not in r.stderr


def test_validate_of_a_misnamed_and_a_hostile_document_in_french(miscounted, tmp_path, current_tariffs):
    misnamed = tmp_path / "facture.xml"
    misnamed.write_bytes((EXAMPLES / "123456_FAC_20261120_000001.xml").read_bytes())
    r = _cnsx(["validate", misnamed.name], tmp_path, FRENCH)
    assert "« facture.xml » ne suit pas la forme EXPEDITEUR_TYPE_AAAAMMJJ_SEQUENCE.xml pour un document de facturation" in r.stderr
    hostile = tmp_path / "123456_FAC_20261120_000002.xml"
    hostile.write_text('<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "b">]>\n<FichierFacturation/>\n', "utf-8")
    r = _cnsx(["validate", hostile.name], tmp_path, FRENCH)
    assert r.returncode == 3
    assert "le document déclare un DOCTYPE (les DTD et les entités sont refusées)" in r.stderr


def test_json_stays_english_under_a_french_locale(miscounted, excel_sessions, current_tariffs):
    fr = _cnsx(["validate", "--json", miscounted.name], miscounted.parent, FRENCH)
    en = _cnsx(["validate", "--json", miscounted.name], miscounted.parent, ENGLISH)
    assert fr.returncode == en.returncode == 3 and fr.stdout == en.stdout
    [report] = json.loads(fr.stdout)
    [issue] = [i for i in report["issues"] if i["code"] == "DOC01"]
    assert issue["message"] == "header NombreMemoires is 4, the file holds 3 fee notes"


def test_input_issues_stay_english_as_data(excel_sessions, french):
    """build has no --json: its issues are data (Issue.as_dict, as JSON reports take them),
    English under a French locale, and French only where shown (tr)."""
    from cns_exchange.i18n import tr
    from cns_exchange.rows.records import InputReport, Reading, SESSION_COLUMNS, SESSION_OPTIONAL, read_rows, SessionReader
    from cns_exchange.domain.nomenclature import load_codes

    report = InputReport(excel_sessions.name)
    reader = SessionReader(report, load_codes(), PROVIDER)
    with open(excel_sessions, "rb") as stream:
        for row in read_rows(stream, "csv", report, SESSION_COLUMNS, SESSION_OPTIONAL, Reading()):
            reader.read(row)
    [issue] = [i for i in report.issues if i.code == "IN004" and "31/11" in i.message]
    english = "'session_date' value '31/11/2026': no such day: day 31 of month 11 of 2026 (dates are read day first)"
    assert issue.as_dict()["message"] == english and json.loads(json.dumps(issue.as_dict()))["message"] == english
    assert tr(issue.message).startswith("« session_date », valeur « 31/11/2026 » : ce jour n'existe pas")


def test_header_names_are_quoted_alike_in_french(tmp_path, current_tariffs):
    """IN002 (two columns giving one) quotes the names as IN017 (a column not used) does:
    '…' in English, « … » in French."""
    path = tmp_path / "sessions.csv"
    path.write_text("certificate_number;Titre;matricule;session_date;act_code;Remarque\n"
                    "TPC-2026-000001;TPC-2026-000001;1893120105732;2026-11-02;ZD11;x\n", "utf-8")
    fr, en = _build(path, FRENCH), _build(path, ENGLISH)
    assert fr.returncode == en.returncode == 3
    assert "les colonnes « certificate_number », « Titre » donnent toutes certificate_number" in fr.stderr
    assert "colonne non utilisée par cnsx, ignorée : « Remarque »" in fr.stderr
    assert "columns 'certificate_number', 'Titre' all give certificate_number" in en.stderr
    assert "column not used by cnsx, ignored: 'Remarque'" in en.stderr
