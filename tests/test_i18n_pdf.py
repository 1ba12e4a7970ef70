"""French on the terminal for the PDF and transport stages (issue 13, point 5): a prescription
refused by build-request, a billing file print refuses, the sandbox's state and notes, an
upload and a fetch refused by a file:// drop box. Each is a real run (a subprocess, or the
command in-process through CliRunner) under LANG=fr_FR.UTF-8; what goes to stdout as data
(the fetch list, upload --json) stays English.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pypdf import PdfWriter
from PIL import Image

from cns_exchange.i18n import tr
from conftest import CREATED, EXAMPLES, PROVIDER

FRENCH = "fr_FR.UTF-8"
BILLING = EXAMPLES / "123456_FAC_20261120_000001.xml"
RETURN_FILE = EXAMPLES / "CNS_ACR_20261120_000001.xml"
HEADER = "request_ref,matricule,last_name,first_name,prescriber_code,prescription_date,pathology_codes,treatment,prescription_pdf"


@pytest.fixture
def french(monkeypatch):
    """The commands run in-process speak French, as under a French locale."""
    monkeypatch.setenv("LANG", FRENCH)


def _cnsx(args, cwd: Path, lang: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    env["LANG"] = lang
    return subprocess.run([sys.executable, "-m", "cns_exchange", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


# --- prescriptions (build-request) ---------------------------------------------------------------

@pytest.fixture
def refused_prescriptions(tmp_path) -> Path:
    """requests.csv whose three prescriptions are refused: an encrypted PDF, a JPEG scan
    (no --convert-images) and a web page saved as .pdf."""
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.encrypt("secret")
    with open(tmp_path / "locked.pdf", "wb") as f:
        writer.write(f)
    Image.new("RGB", (320, 450), (200, 60, 40)).save(tmp_path / "scan.jpg", "JPEG")
    (tmp_path / "ordonnance.pdf").write_bytes(b"<!DOCTYPE html>\n<html><body>Ordonnance</body></html>")
    rows = ["REQ-0001,1974091186700,Schmit,Léa,12345678,2026-10-15,D12,initial,locked.pdf",
            "REQ-0002,1982080285657,Weber-Müller,François,23456789,2026-11-02,D08,initial,scan.jpg",
            "REQ-0003,2001120308757,Hoffmann,Zoë,345678,2026-11-10,D04,initial,ordonnance.pdf"]
    (tmp_path / "requests.csv").write_text("\n".join([HEADER, *rows]) + "\n", "utf-8")
    (tmp_path / "out").mkdir()
    return tmp_path


def test_refused_prescriptions_in_french(refused_prescriptions, current_tariffs):
    args = ["build-request", "requests.csv", "--provider", PROVIDER, "--created", CREATED, "-o", "out"]
    r = _cnsx(args, refused_prescriptions, FRENCH)
    assert r.returncode == 3 and r.stdout == ""
    assert "erreur PDF02" in r.stderr and "« locked.pdf » est chiffré (protégé par un mot de passe)" in r.stderr
    assert "« scan.jpg » est une image JPEG, pas un PDF" in r.stderr
    assert ("conseil : passez --convert-images pour la convertir en un PDF sans perte, ou convertissez-la "
            "vous-même : img2pdf scan.jpg -o scan.pdf") in r.stderr
    assert "« ordonnance.pdf » est une page HTML, pas un PDF" in r.stderr
    assert "conseil : la CNS refuse le HTML : imprimez l'ordonnance en PDF" in r.stderr
    assert "error" not in r.stderr and "hint:" not in r.stderr and "is encrypted" not in r.stderr
    assert list((refused_prescriptions / "out").iterdir()) == []
    english = _cnsx(args, refused_prescriptions, "C.UTF-8")   # the same run, the code's own English
    assert english.returncode == 3
    assert "'locked.pdf' is encrypted (password-protected)" in english.stderr
    assert "'scan.jpg' is a JPEG image, not a PDF" in english.stderr
    assert "'ordonnance.pdf' is an HTML page, not a PDF" in english.stderr


def test_an_oversized_prescription_in_french(run, refused_prescriptions, current_tariffs, isolated_config, french):
    (isolated_config / "config.toml").write_text("max_pdf_bytes = 1024\n")
    big = refused_prescriptions / "big.pdf"
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.add_metadata({"/Padding": "x" * 4000})
    with open(big, "wb") as f:
        writer.write(f)
    source = refused_prescriptions / "one.csv"
    source.write_text(HEADER + "\nREQ-0001,1974091186700,Schmit,Léa,12345678,2026-10-15,D12,initial,big.pdf\n", "utf-8")
    r = run("build-request", str(source), "--provider", PROVIDER, "--created", CREATED,
            "-o", str(refused_prescriptions / "out"))
    assert r.exit_code == 3
    assert "erreur PDF04" in r.stderr
    assert "« big.pdf » fait " in r.stderr and "Kio, au-delà de la limite de 1.0 Kio (max_pdf_bytes)" in r.stderr


# --- cnsx print ----------------------------------------------------------------------------------

def test_print_refuses_an_invalid_billing_file_in_french(run, tmp_path, current_tariffs, french):
    edited = tmp_path / BILLING.name
    edited.write_text(BILLING.read_text("utf-8").replace("<TotalMontantBrut>622.20<", "<TotalMontantBrut>622.30<"),
                      "utf-8")
    r = run("print", "summary", str(edited), "-o", str(tmp_path / "s.pdf"))
    assert r.exit_code == 3 and r.stdout == ""
    assert "erreur DOC02" in r.stderr
    assert f"erreur : {edited} : pas un fichier de facturation valide ; rien n'a été imprimé" in r.stderr
    assert "conseil : corrigez le document (cnsx validate montre les mêmes problèmes) et imprimez à nouveau" in r.stderr
    assert not (tmp_path / "s.pdf").exists()


def test_print_never_overwrites_in_french(run, tmp_path, current_tariffs, french):
    notes = tmp_path / "notes"
    assert run("print", "fee-notes", str(BILLING), "-o", str(notes)).exit_code == 0
    r = run("print", "fee-notes", str(BILLING), "-o", str(notes))
    assert r.exit_code == 2
    assert f"erreur : {notes} contient déjà des mémoires d'honoraires imprimés de ce fichier de facturation (" in r.stderr
    assert "conseil : supprimez-les, ou imprimez vers un autre dossier" in r.stderr
    r = run("print", "fee-notes", str(BILLING), "-o", str(tmp_path / "no" / "such"))
    assert r.exit_code == 2
    assert f"erreur : -o {tmp_path / 'no' / 'such'} : impossible de créer le dossier (" in r.stderr
    assert "conseil : donnez un dossier existant, ou un dossier dont le parent existe" in r.stderr


# --- cnsx sandbox --------------------------------------------------------------------------------

@pytest.fixture
def box(tmp_path) -> Path:
    root = tmp_path / "dropbox"
    (root / "upload").mkdir(parents=True)
    return root


@pytest.mark.parametrize("state, said", [
    (b"{ not JSON", "l'état du bac à sable est illisible ("),
    (b'{"format": 99}', "pas un fichier d'état du bac à sable au format 1"),
])
def test_a_sandbox_state_it_cannot_use_in_french(run, box, french, state, said):
    (box / ".sandbox-state.json").write_bytes(state)
    r = run("sandbox", "--root", str(box), "--once")
    assert r.exit_code == 4 and r.stdout == ""
    assert f"erreur : {box / '.sandbox-state.json'} : {said}" in r.stderr
    assert "conseil : déplacez-le pour repartir d'un bac à sable neuf, ou passez --state FICHIER" in r.stderr


def test_the_sandbox_s_note_on_a_file_it_cannot_answer_is_french_on_display(box, french):
    """The note cnsx sandbox prints for a deposit nobody can be answered for: English as data,
    French where it is shown."""
    from cns_exchange.documents.schemas import SchemaRegistry
    from cns_exchange.domain.nomenclature import load_codes, load_nomenclature
    from cns_exchange.transport.sandbox import Sandbox
    from cns_exchange.validation.validate import Validator

    (box / "upload" / "junk.xml").write_text("not XML\n")
    validator = Validator(SchemaRegistry(), load_codes(), load_nomenclature(), 1 << 29)
    [deposit] = Sandbox(box / "upload", box / "download", box / ".sandbox-state.json", validator).run_once().deposits
    assert deposit.note == "no valid provider code in its header or name: nobody to answer"
    assert tr(deposit.note) == "aucun code prestataire valide dans son en-tête ni son nom : personne à qui répondre"


# --- upload and fetch (file:// drop box) ---------------------------------------------------------

def test_upload_refused_by_the_drop_box_in_french(run, dropbox, french):
    root, _data = dropbox
    (root / "upload" / BILLING.name).write_text("someone else's file")
    r = run("upload", "--json", str(BILLING))
    assert r.exit_code == 6 and r.stdout == ""
    assert f"erreur : {BILLING.name} : le serveur détient déjà un autre fichier de ce nom" in r.stderr
    assert "conseil : cnsx n'écrase jamais un fichier sur le serveur" in r.stderr
    assert (root / "upload" / BILLING.name).read_text() == "someone else's file"


def test_upload_json_stays_english(run, dropbox, french):
    r = run("upload", "--json", str(BILLING))
    assert r.exit_code == 0
    [line] = [json.loads(x) for x in r.stdout.splitlines()]
    assert (line["name"], line["status"]) == (BILLING.name, "sent")


def test_fetch_in_french_its_list_in_english(run, dropbox, french):
    root, data = dropbox
    shutil.copy(RETURN_FILE, root / "download")
    r = run("fetch", "--dry-run")
    assert r.exit_code == 0
    assert json.loads(r.stdout) == {"name": RETURN_FILE.name, "path": "", "size": RETURN_FILE.stat().st_size,
                                    "sha256": "", "note": "would be fetched"}
    shutil.rmtree(root / "download")
    r = run("fetch")
    assert r.exit_code == 6 and r.stdout == ""
    assert f"erreur : file://{root} : le dossier download n'existe pas" in r.stderr
    assert "conseil : créez-le sur le dépôt, ou corrigez upload_dir / download_dir" in r.stderr
