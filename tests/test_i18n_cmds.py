"""French on the terminal, English as data: import, status (tables and --due), report-sent,
tariffs, export, sandbox and the transport's address, run for real under a French locale.

Each run is the command itself (CliRunner, in-process, the language read from LANG as a
user's shell sets it) on real files: the example exchange of examples/."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import date, timedelta

import pytest

from cns_exchange import i18n
from cns_exchange.errors import UsageError
from cns_exchange.i18n import tr
from conftest import EXAMPLES

FILES = [EXAMPLES / name for name in ("123456_DTP_20261120_000001.xml", "123456_FAC_20261120_000001.xml",
                                      "CNS_ACR_20261120_000001.xml", "CNS_RTP_20261120_000002.xml",
                                      "CNS_DEC_20261125_000001.xml")]


@pytest.fixture
def french(monkeypatch):
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    yield
    i18n.choose(None)


@pytest.fixture
def imported(run, data):
    """The example exchange imported (in English); returns the database."""
    r = run("import", *map(str, FILES))
    assert r.exit_code == 0, r.stderr
    return data / "practice.sqlite"


def test_import_speaks_french(run, data, french):
    r = run("import", *map(str, FILES))
    assert r.exit_code == 0, r.stderr
    again = run("import", str(FILES[3]))
    assert again.exit_code == 0
    assert again.stderr.strip() == "CNS_RTP_20261120_000002.xml : déjà importé, rien n'a changé"
    alone = run("import", str(FILES[4]), "--db", str(data / "other.sqlite"))   # a statement of no billing file
    assert "remarque : 1 décompte de paiement ne correspond à aucun fichier de facturation" in alone.stderr
    assert "ne correspondent à aucune séance facturée" in alone.stderr and "match no" not in alone.stderr
    missing = run("import", str(data / "none.xml"))
    assert missing.exit_code != 0 and f"erreur : {data / 'none.xml'} : ce fichier n'existe pas" in missing.stderr
    assert "conseil : vérifiez le chemin" in missing.stderr


def test_import_json_stays_english(run, data, french):
    r = run("import", "--no-db", "--json", str(FILES[3]))
    assert r.exit_code == 0, r.stderr
    line = json.loads(r.stdout.splitlines()[0])
    assert line["status"] == "read" and line["kind"] == "answers"


def test_status_tables_in_french_and_json_in_english(run, imported, french):
    r = run("status")
    assert r.exit_code == 0, r.stderr
    assert "titres de prise en charge" in r.stdout
    assert "séances restantes" in r.stdout and "sessions_remaining" not in r.stdout
    assert "demandes en attente de réponse : néant" in r.stdout  # néant: for any title, feminine too
    history = run("status", "--patient", "Schmit Léa")
    assert history.exit_code == 0, history.stderr
    assert "historique" in history.stdout and re.search(r"séance du \d\d/\d\d/2026", history.stdout)   # a French day
    assert "séance du 2026-" not in history.stdout
    assert "mémoire d'honoraires" in history.stdout and "session of" not in history.stdout
    data = json.loads(run("status", "--json", "--patient", "Schmit Léa").stdout)
    assert "certificates" in data and "sessions_remaining" in data["certificates"][0]
    assert {row["event"] for row in data["history"]} >= {"request", "certificate", "session"}
    assert any(row["detail"].startswith("session of 2026-") for row in data["history"])
    unknown = run("status", "--patient", "Nobody")
    assert unknown.exit_code == 3
    assert "erreur : --patient 'Nobody' : aucun patient de ce nom dans la base du cabinet" in unknown.stderr


def test_status_due_in_french(run, imported, french):
    soon = date.today() + timedelta(days=3)
    conn = sqlite3.connect(imported)
    conn.execute("UPDATE certificates SET valid_to = ?, sessions_billed = sessions_authorised - 2 "
                 "WHERE number = 'TPC-2026-000101'", (soon.isoformat(),))
    conn.commit()
    conn.close()
    r = run("status", "--due")
    assert r.exit_code == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "TPC-2026-000101" in x)
    assert line.startswith("titre TPC-2026-000101, Schmit")
    assert line.endswith(f": expire le {soon:%d/%m/%Y} (dans 3 jours), 2 séances restantes")
    rows = json.loads(run("status", "--due", "--json").stdout)["due"]
    assert {(row["what"], row["reason"]) for row in rows if row["reference"] == "TPC-2026-000101"} == {
        ("certificate", "expiring")}


def test_status_due_reason_in_words(run, imported, french, monkeypatch):
    """The due table's reason 'sessions' (JSON) says what it means on the terminal."""
    conn = sqlite3.connect(imported)
    conn.execute("UPDATE certificates SET sessions_billed = sessions_authorised - 1 WHERE number = 'TPC-2026-000101'")
    conn.commit()
    conn.close()
    fr = run("status")
    row = next(x for x in fr.stdout.splitlines() if "TPC-2026-000101" in x and "certificate" not in x and "titre" in x)
    assert "1 séance restante ou aucune" in row, fr.stdout
    assert {row["reason"] for row in json.loads(run("status", "--json").stdout)["due"]} == {"sessions"}
    monkeypatch.setenv("LANG", "C")
    assert "1 session left or none" in run("status").stdout


def test_status_options_refused_in_french(run, imported, french):
    r = run("status", "--certificate", "X", "--patient", "Y")
    assert r.exit_code == 2
    assert "erreur : --certificate et --patient : un cas à la fois" in r.stderr
    assert "conseil : donnez l'un des deux" in r.stderr


def test_report_sent_in_french(run, imported, french):
    r = run("report-sent", "TPC-2026-999999")
    assert r.exit_code == 3
    assert "erreur : TPC-2026-999999 : ce titre de prise en charge n'est pas dans la base du cabinet" in r.stderr
    conn = sqlite3.connect(imported)
    valid_from = conn.execute("SELECT valid_from FROM certificates WHERE number = 'TPC-2026-000101'").fetchone()[0]
    conn.close()
    first = run("report-sent", "TPC-2026-000101", "--date", valid_from)
    assert first.exit_code == 0, first.stderr
    sent = f"{date.fromisoformat(valid_from):%d/%m/%Y}"   # a day in a French sentence
    assert first.stderr.strip() == f"TPC-2026-000101 : rapport final marqué envoyé le {sent}"
    again = run("report-sent", "TPC-2026-000101", "--date", valid_from)
    assert again.stderr.strip() == f"TPC-2026-000101 : rapport final déjà marqué envoyé le {sent} ; rien n'a changé"
    today, later = date.today(), (date.today() + timedelta(days=2)).isoformat()
    future = run("report-sent", "TPC-2026-000101", "--date", later)
    # the option's argument as typed, today the French way
    assert future.exit_code == 2 and f"erreur : --date {later} : après aujourd'hui ({today:%d/%m/%Y})" in future.stderr


def test_tariffs_in_french_and_json_in_english(run, current_tariffs, french):
    r = run("tariffs", "--date", "2026-11-20")
    assert r.exit_code == 0, r.stderr
    assert "table des tarifs en vigueur le 20/11/2026" in r.stdout
    assert "tariff table" not in r.stdout
    refused = run("tariffs", "--date", "2026-11-20", "--all")
    assert refused.exit_code == 2 and "erreur : --date et --all : une table, ou toutes" in refused.stderr
    shown = json.loads(run("tariffs", "--date", "2026-11-20", "--json").stdout)
    assert shown["table"]["valid_from"] == "2026-01-01"
    bundled = run("tariffs", "--date", "2025-06-01")   # the table cnsx ships: its file named in French too
    assert "2019-01-01.json (fourni avec cnsx)" in bundled.stdout and "bundled" not in bundled.stdout
    assert "valeur de la lettre-clé 11,1108 EUR" in bundled.stdout and "du 01/01/2019 au 31/12/2025" in bundled.stdout
    assert json.loads(run("tariffs", "--date", "2025-06-01", "--json").stdout)["table"]["file"] == "bundled 2019-01-01.json"


def test_export_in_french(run, imported, french):
    r = run("export", "accounting")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.strip().endswith("séances facturées → stdout")
    assert r.stdout_bytes.startswith(b"\xef\xbb\xbfbilling_file;")   # the CSV's columns stay English


def test_sandbox_refusal_in_french(run, tmp_path, french):
    r = run("sandbox", "--root", str(tmp_path / "nowhere"), "--once")
    assert r.exit_code == 2
    assert f"erreur : --root {tmp_path / 'nowhere'} : ce dossier n'existe pas" in r.stderr
    assert "conseil :" in r.stderr and "hint:" not in r.stderr


def test_a_bad_port_in_french(french):
    from cns_exchange.transport import parse_address

    with pytest.raises(UsageError) as caught:
        parse_address("sftp.example.lu:abc")
    assert str(caught.value.message) == "sftp.example.lu:abc: the port is not a number"   # English as data
    assert tr(i18n.reason(caught.value)) == "sftp.example.lu:abc : le port n'est pas un nombre"
