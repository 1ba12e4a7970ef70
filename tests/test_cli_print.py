"""cnsx print fee-notes / summary: the printed PDFs say what the billing file says.

The text of every PDF is read back with pypdf (and with poppler's pdftotext, a second reader,
when it is installed): names with their accents, every amount and total as in the XML,
metadata with the billing file's SHA-256. Pages are rendered to PNG with pdftoppm into
tests/artefacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree
from pypdf import PdfReader

from cns_exchange import __version__
from conftest import CREATED, EXAMPLES, PROVIDER, ROOT, make_matricule

ARTEFACTS = ROOT / "tests" / "artefacts"
PRINTED = "2026-11-21T10:30:00+01:00"
NAME = "123456_FAC_20261120_000001.xml"
ZOE = ["TPC-2026-000110;2001120308757;2026-11-13;ZD11;123456;Hoffmann;Zoë",
       "TPC-2026-000110;2001120308757;2026-11-17;ZD12;123456;Hoffmann;Zoë"]


def build_billing(run, folder: Path, csv_path: Path) -> Path:
    out = folder / "out"
    out.mkdir(exist_ok=True)
    r = run("build-invoice", str(csv_path), "--provider", PROVIDER, "--created", CREATED, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    return out / NAME


@pytest.fixture
def billing(run, examples, tmp_path) -> Path:
    """The examples' sessions plus a patient Zoë: 4 fee notes, 10 sessions."""
    source = examples / "sessions.csv"
    source.write_text(source.read_text("utf-8").rstrip("\n") + "\n" + "\n".join(ZOE) + "\n", "utf-8")
    return build_billing(run, tmp_path, source)


def xml_notes(path: Path) -> tuple[dict[str, str], list[dict]]:
    """Header totals and fee notes of a billing file, as the XML writes them."""
    root = etree.parse(str(path)).getroot()
    header = {el.tag: el.text for el in root.find("EnTete")}
    notes = []
    for note in root.iter("MemoireHonoraires"):
        notes.append({
            "number": note.findtext("NumeroMemoire"), "certificate": note.findtext("NumeroTitre"),
            "matricule": note.findtext("Patient/Matricule"), "last": note.findtext("Patient/Nom"),
            "first": note.findtext("Patient/Prenom"),
            "sessions": [{child.tag: child.text for child in s} for s in note.iter("Seance")],
        })
    return header, notes


def french(amount: str) -> str:
    """'1234.56' as printed and read back: '1 234,56'."""
    value = Decimal(amount).quantize(Decimal("0.01"))
    return f"{int(value):,}".replace(",", " ") + "," + f"{value:.2f}"[-2:]


def flat(text: str) -> str:
    """Text with runs of blanks and line ends as one space: pypdf ends a line at each drawn
    string, and reads the no-break space between thousands as a space."""
    return re.sub(r"[ \t\r\n\u00a0]+", " ", text)


def text_of(path: Path) -> str:
    return flat("\n".join(page.extract_text() for page in PdfReader(path).pages))


def second_reader(path: Path) -> str | None:
    """pdftotext's reading of the PDF, when poppler-utils is installed (CI installs it)."""
    if shutil.which("pdftotext") is None:
        return None
    return flat(subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True).stdout.decode())


def render(path: Path, stem: str) -> list[Path]:
    """Render the PDF's pages to PNG in tests/artefacts/ with pdftoppm, when installed."""
    if shutil.which("pdftoppm") is None:
        return []
    ARTEFACTS.mkdir(exist_ok=True)
    for old in ARTEFACTS.glob(f"{stem}-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-r", "80", "-png", str(path), str(ARTEFACTS / stem)], check=True, capture_output=True)
    pages = sorted(ARTEFACTS.glob(f"{stem}-*.png"))
    assert pages and all(p.read_bytes().startswith(b"\x89PNG") for p in pages)
    return pages


def metadata(path: Path) -> dict:
    return dict(PdfReader(path).metadata)


# --- fee notes -----------------------------------------------------------------------------

def test_fee_notes_one_pdf_per_note_with_every_amount(run, billing, tmp_path):
    notes_dir = tmp_path / "notes"
    r = run("print", "fee-notes", str(billing), "-o", str(notes_dir), "--created", PRINTED)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    assert f"4 fee notes → {notes_dir}/" in r.stderr
    header, notes = xml_notes(billing)
    files = sorted(notes_dir.iterdir(), key=lambda f: f.name[-10:])   # by fee note number: MHnnnn.pdf
    assert [f.name for f in files] == [
        "Schmit_Lea_2026-11-10_123456_FAC_20261120_000001_MH0001.pdf",
        "Weber-Muller_Francois_2026-11-12_123456_FAC_20261120_000001_MH0002.pdf",
        "Kieffer_Noah_2026-11-11_123456_FAC_20261120_000001_MH0003.pdf",
        "Hoffmann_Zoe_2026-11-17_123456_FAC_20261120_000001_MH0004.pdf"]   # patient, last session, file, number
    assert notes_dir.stat().st_mode & 0o777 == 0o700
    sha = hashlib.sha256(billing.read_bytes()).hexdigest()
    for note, path in zip(notes, files):
        assert path.stat().st_mode & 0o777 == 0o600
        text = text_of(path)
        assert "Mémoire d'honoraires" in text
        assert f"{note['last']} {note['first']}" in text              # accents and all
        assert note["matricule"] in text                               # the patient's own: in full
        assert note["certificate"] in text and f"n° {note['number']}" in text
        assert f"Code prestataire CNS : {PROVIDER}" in text
        gross = patient = cns = Decimal(0)
        for s in note["sessions"]:
            day = s["DateSeance"]
            assert f"{day[8:10]}/{day[5:7]}/{day[:4]}" in text
            assert s["CodeActe"] in text
            for amount in (s["MontantBrut"], s["ParticipationPersonnelle"], s["PartStatutaire"]):
                assert french(amount) in text
            gross += Decimal(s["MontantBrut"])
            patient += Decimal(s["ParticipationPersonnelle"])
            cns += Decimal(s["PartStatutaire"])
        assert f"Montant total des prestations {french(str(gross))} €" in text
        assert f"Réglé directement par la CNS au prestataire (part statutaire) {french(str(cns))} €" in text
        assert f"Reste à votre charge (participation personnelle) {french(str(patient))} €" in text
        assert sha in text                                             # printed in the footer
        meta = metadata(path)
        assert meta["/Producer"] == f"cnsx {__version__}"
        assert meta["/Title"] == f"Mémoire d'honoraires n° {note['number']} — {NAME}"
        assert sha in meta["/Subject"] and f"sha256:{sha}" in meta["/Keywords"]
        assert meta["/CreationDate"].startswith("D:20261121103000+01'00'")
        assert note["last"] not in "".join(meta.values())              # no patient data in the metadata
    labels = text_of(files[0])
    assert "Consultation initiale : anamnèse et" in labels             # the act's label (wrapped over two lines)
    assert "Zoë" in text_of(files[3])
    assert "page 1/1" in text_of(files[0])
    render(files[0], "fee-note")


def test_fee_note_masked_matricule(run, billing, tmp_path):
    r = run("print", "fee-notes", str(billing), "-o", str(tmp_path / "n"), "--matricule", "masked", "--created", PRINTED)
    assert r.exit_code == 0, r.stderr
    [path] = (tmp_path / "n").glob("*_MH0001.pdf")
    text = text_of(path)
    assert "1974091186700" not in text and "•••••••••6700" in text


def test_second_reader_agrees(run, billing, tmp_path):
    assert run("print", "fee-notes", str(billing), "-o", str(tmp_path / "n"), "--created", PRINTED).exit_code == 0
    [path] = (tmp_path / "n").glob("*_MH0002.pdf")
    text = second_reader(path)
    if text is not None:
        assert "Weber-Müller François" in text and "24,00 €" in text and "176,00 €" in text


def test_fee_notes_of_the_same_patient_and_day_from_two_billing_files(run, tmp_path):
    """A patient billed twice for the same day (a file billed again after its rejection), and
    a namesake seen the same day: both files' notes go into one folder under distinct names; printing a file again is
    refused, whichever name its notes had; the names of the patients are not on stderr."""
    source = tmp_path / "s.csv"
    source.write_text("certificate_number;matricule;session_date;act_code;last_name;first_name\n"
                      "TPC-2026-000300;1974091186700;2026-11-02;ZD11;Da Costa Gonçalves;Anaïs\n"
                      "TPC-2026-000301;1982080285657;2026-11-02;ZD11;Da Costa Gonçalves;Anaïs\n", "utf-8")
    out = tmp_path / "out"
    out.mkdir()
    for _ in range(2):
        r = run("build-invoice", str(source), "--provider", PROVIDER, "--created", CREATED, "-o", str(out))
        assert r.exit_code == 0, r.stderr
    first, second = sorted(out.glob("*.xml"))
    notes = tmp_path / "notes"
    for xml in (first, second):
        r = run("print", "fee-notes", str(xml), "-o", str(notes), "--created", PRINTED)
        assert r.exit_code == 0, r.stderr
        assert "Costa" not in r.stderr and "Ana" not in r.stderr
    assert sorted(p.name for p in notes.iterdir()) == [
        f"Da-Costa-Goncalves_Anais_2026-11-02_123456_FAC_20261120_00000{seq}_MH000{n}.pdf" for seq in (1, 2) for n in (1, 2)]
    r = run("print", "fee-notes", str(second), "-o", str(notes))
    assert r.exit_code == 2 and "already holds printed fee notes of this billing file" in r.stderr
    older = tmp_path / "older"   # a folder printed by an earlier cnsx, which named notes after the billing file only
    older.mkdir()
    (older / "123456_FAC_20261120_000001_MH0001.pdf").write_bytes(b"%PDF-")
    r = run("print", "fee-notes", str(first), "-o", str(older))
    assert r.exit_code == 2 and "already holds printed fee notes" in r.stderr
    assert [p.name for p in older.iterdir()] == ["123456_FAC_20261120_000001_MH0001.pdf"]


def test_fee_notes_never_overwrite(run, billing, tmp_path):
    notes_dir = tmp_path / "notes"
    assert run("print", "fee-notes", str(billing), "-o", str(notes_dir), "--created", PRINTED).exit_code == 0
    before = {p.name: p.read_bytes() for p in notes_dir.iterdir()}
    r = run("print", "fee-notes", str(billing), "-o", str(notes_dir))
    assert r.exit_code == 2
    assert "already holds printed fee notes" in r.stderr and "never overwrites" in r.stderr
    assert {p.name: p.read_bytes() for p in notes_dir.iterdir()} == before


def test_fee_notes_into_a_folder_whose_parent_is_missing(run, billing, tmp_path):
    r = run("print", "fee-notes", str(billing), "-o", str(tmp_path / "no" / "such"))
    assert r.exit_code == 2 and "cannot create the folder" in r.stderr


def test_printing_is_reproducible(run, billing, tmp_path):
    for name in ("a", "b"):
        assert run("print", "fee-notes", str(billing), "-o", str(tmp_path / name), "--created", PRINTED).exit_code == 0
        assert run("print", "summary", str(billing), "-o", str(tmp_path / name / "s.pdf"), "--created", PRINTED).exit_code == 0
    assert sorted(p.read_bytes() for p in (tmp_path / "a").iterdir()) == sorted(p.read_bytes() for p in (tmp_path / "b").iterdir())


# --- summary -----------------------------------------------------------------------------

def test_summary_rows_and_totals_equal_the_xml(run, billing, tmp_path):
    target = tmp_path / "recap.pdf"
    r = run("print", "summary", str(billing), "-o", str(target), "--created", PRINTED)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    assert f"4 fee notes, 10 sessions, 822.20 EUR gross, 736.86 EUR to the CNS → {target}" in r.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    header, notes = xml_notes(billing)
    text = text_of(target)
    assert "Relevé récapitulatif" in text
    for note in notes:
        assert f"{note['last']} {note['first']}" in text
        assert "•" * 9 + note["matricule"][-4:] in text and note["matricule"] not in text   # masked by default
        assert note["certificate"] in text
        for field in ("MontantBrut", "ParticipationPersonnelle", "PartStatutaire"):
            assert french(str(sum(Decimal(s[field]) for s in note["sessions"]))) in text
    assert header["TotalMontantBrut"] == "822.20"
    assert f"Total montant brut {french(header['TotalMontantBrut'])} €" in text
    assert f"Total participation personnelle (patients) {french(header['TotalParticipationPersonnelle'])} €" in text
    assert f"Total part statutaire (à régler par la CNS) {french(header['TotalPartStatutaire'])} €" in text
    assert f"Mémoires d'honoraires {header['NombreMemoires']}" in text and f"Séances {header['NombreSeances']}" in text
    assert "Créé le 20/11/2026 à 09:00 (UTC+01:00)" in text
    sha = hashlib.sha256(billing.read_bytes()).hexdigest()
    assert sha in text
    meta = metadata(target)
    assert meta["/Producer"] == f"cnsx {__version__}" and meta["/Title"] == f"Relevé récapitulatif — {NAME}"
    assert sha in meta["/Subject"] and f"sha256:{sha}" in meta["/Keywords"]
    assert meta["/CreationDate"].startswith("D:20261121103000+01'00'")
    other = second_reader(target)
    if other is not None:
        assert "Hoffmann Zoë" in other and french(header["TotalPartStatutaire"]) in other
    render(target, "summary")


def test_summary_full_matricules(run, billing, tmp_path):
    assert run("print", "summary", str(billing), "-o", str(tmp_path / "s.pdf"), "--matricule", "full").exit_code == 0
    assert "1974091186700" in text_of(tmp_path / "s.pdf")


def test_summary_into_a_folder_takes_the_conventional_name(run, billing):
    r = run("print", "summary", str(billing), "-o", str(billing.parent))
    assert r.exit_code == 0, r.stderr
    assert (billing.parent / "123456_FAC_20261120_000001_RECAP.pdf").is_file()
    again = run("print", "summary", str(billing), "-o", str(billing.parent))
    assert again.exit_code == 2 and "never overwrites" in again.stderr


def test_summary_never_overwrites_a_file(run, billing, tmp_path):
    target = tmp_path / "recap.pdf"
    target.write_bytes(b"mine")
    r = run("print", "summary", str(billing), "-o", str(target))
    assert r.exit_code == 2 and "never overwrites" in r.stderr
    assert target.read_bytes() == b"mine"


@pytest.mark.parametrize("via_stdin", [False, True], ids=["file", "stdin"])
def test_summary_to_stdout(run, billing, tmp_path, via_stdin):
    if via_stdin:
        r = run("print", "summary", "-", "-o", "-", "--created", PRINTED, input=billing.read_bytes())
    else:
        r = run("print", "summary", str(billing), "-o", "-", "--created", PRINTED)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes.startswith(b"%PDF-")
    assert "→ stdout" in r.stderr
    reader = PdfReader(io.BytesIO(r.stdout_bytes))
    text = flat("\n".join(p.extract_text() for p in reader.pages))
    assert "Schmit Léa" in text and hashlib.sha256(billing.read_bytes()).hexdigest() in text
    assert NAME in text   # from stdin, the billing file is named by the convention, from its header


def test_fee_notes_from_stdin(run, billing, tmp_path):
    r = run("print", "fee-notes", "-", "-o", str(tmp_path / "n"), input=billing.read_bytes())
    assert r.exit_code == 0, r.stderr
    assert len(list((tmp_path / "n").iterdir())) == 4


def test_multi_page_summary_numbers_its_pages(run, tmp_path):
    """45 fee notes: the table runs onto a second page, every page says 'page k/2'; 34 fit on one
    page with the totals, 42 fill it so that the totals go to a second page."""
    for count, pages in ((34, 1), (42, 2), (45, 2)):
        source = tmp_path / f"s{count}.csv"
        with open(source, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["certificate_number", "matricule", "session_date", "act_code", "last_name", "first_name"])
            for n in range(1, count + 1):
                w.writerow([f"TPC-{n:04d}", make_matricule(__import__("datetime").date(1960, 1, 1 + n % 28), n),
                            "2026-11-02", "ZD11", "Lefèvre", "Anaïs"])
        folder = tmp_path / f"b{count}"
        folder.mkdir()
        xml = build_billing(run, folder, source)
        target = folder / "recap.pdf"
        assert run("print", "summary", str(xml), "-o", str(target)).exit_code == 0
        reader = PdfReader(target)
        assert len(reader.pages) == pages, count
        for k, page in enumerate(reader.pages, 1):
            assert f"page {k}/{pages}" in page.extract_text()
        last = flat(reader.pages[-1].extract_text())
        assert f"Total montant brut {french(str(Decimal('88.89') * count))} €" in last
        assert "Brut €" in last   # the totals row under its column titles
    render(target, "summary-2-pages")


def test_invalid_billing_file_prints_nothing(run, billing, tmp_path):
    edited = tmp_path / "edited" / NAME
    edited.parent.mkdir()
    edited.write_text(billing.read_text("utf-8").replace("<TotalMontantBrut>822.20<", "<TotalMontantBrut>822.30<"), "utf-8")
    for command in (("fee-notes", "-o", str(tmp_path / "n")), ("summary", "-o", str(tmp_path / "s.pdf"))):
        r = run("print", command[0], str(edited), *command[1:])
        assert r.exit_code == 3, r.stderr
        assert f"{edited}:10 /FichierFacturation/EnTete/TotalMontantBrut: error DOC02" in r.stderr
        assert "not a valid billing file; nothing was printed" in r.stderr
    assert not (tmp_path / "n").exists() or list((tmp_path / "n").iterdir()) == []
    assert not (tmp_path / "s.pdf").exists()


def test_other_document_kinds_are_refused(run, tmp_path):
    r = run("print", "summary", str(EXAMPLES / "CNS_ACR_20261120_000001.xml"), "-o", str(tmp_path / "s.pdf"))
    assert r.exit_code == 3 and "DOC06" in r.stderr
    r = run("print", "summary", str(tmp_path / "missing.xml"), "-o", str(tmp_path / "s.pdf"))
    assert r.exit_code == 3 and "FIL01" in r.stderr


def test_print_needs_an_output(run, billing):
    r = run("print", "summary", str(billing))
    assert r.exit_code == 2 and "-o" in r.stderr


def test_bundled_font_when_no_system_font(tmp_path, billing):
    """Without DejaVu (a machine without fonts-dejavu-core), reportlab's own Vera is embedded
    and the accents still come out."""
    script = f"""
import io, sys
from datetime import datetime
from pathlib import Path
from cns_exchange.pdf import feenote, layout
from cns_exchange.domain.nomenclature import load_codes
from cns_exchange.documents.read import read_document
layout.FONT_CANDIDATES.clear()
print(layout.font_files()[0].name)
items = list(read_document(open({str(billing)!r}, "rb"), "billing", "FichierFacturation"))
source = feenote.Source("b.xml", "0" * 64, items[0].record, datetime(2026, 11, 21), {{}}, False)
out = io.BytesIO()
feenote.write_fee_note(out, items[-1].record, source)
Path({str(tmp_path / 'vera.pdf')!r}).write_bytes(out.getvalue())
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Vera.ttf"
    assert "Hoffmann Zoë" in text_of(tmp_path / "vera.pdf")
    fonts = str(PdfReader(tmp_path / "vera.pdf").pages[0]["/Resources"]["/Font"].get_object())
    assert fonts  # embedded TrueType subsets


def test_amounts_are_french():
    from cns_exchange.domain.identifiers import show_matricule
    from cns_exchange.pdf.layout import euros

    assert euros(0) == "0,00" and euros(8889) == "88,89" and euros(123456789) == "1\u00a0234\u00a0567,89"
    assert show_matricule("1974091186700", True) == "•••••••••6700"
    assert re.fullmatch(r"\d{13}", show_matricule("1974091186700", False))
    assert french("1234567.89") == "1 234 567,89"
