"""Prescription attachments: what build-request accepts, refuses and converts; what validate
checks beside a request file.

Every refusal is exit 3, nothing written, and the issue on stderr names the file, the line and
the column: ``requests.csv:2 [prescription_pdf]: error PDF0x``. The PDFs and scans are made
here: pypdf writes the encrypted and page-less PDFs, Pillow the JPEG and PNG scans.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile

import pytest
from lxml import etree
from PIL import Image
from pypdf import PdfReader, PdfWriter

from cns_exchange.pdf import prescriptions as pdf
from conftest import CREATED, EXAMPLES, PROVIDER

ARGS = ("--provider", PROVIDER, "--created", CREATED)
HEADER = "request_ref,matricule,last_name,first_name,prescriber_code,prescription_date,pathology_codes,treatment,prescription_pdf"
ROWS = [  # distinct patients and pathologies: no treatment rule between the rows
    "REQ-0001,1974091186700,Schmit,Léa,12345678,2026-10-15,D12,initial,{}",
    "REQ-0002,1982080285657,Weber-Müller,François,23456789,2026-11-02,D08,initial,{}",
    "REQ-0003,2001120308757,Hoffmann,Zoë,345678,2026-11-10,D04,initial,{}",
]


def requests_csv(folder, *prescriptions: str):
    """Write requests.csv in ``folder`` with one row per prescription value; return its path."""
    path = folder / "requests.csv"
    lines = [HEADER] + [ROWS[i].format(value) for i, value in enumerate(prescriptions)]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def jpeg(path, size=(320, 450), colour=(200, 60, 40)):
    Image.new("RGB", size, colour).save(path, "JPEG", quality=85)
    return path


def png(path, size=(300, 420), mode="RGB"):
    Image.new(mode, size, (30, 90, 160, 200)[: len(mode)]).save(path, "PNG")
    return path


def blank_pdf(path, pages=1, password=None, padding=0):
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(595, 842)
    if padding:
        writer.add_metadata({"/Padding": "x" * padding})
    if password:
        writer.encrypt(password)
    with open(path, "wb") as f:
        writer.write(f)
    return path


def refused(r, source, line: int, code: str) -> None:
    assert r.exit_code == 3, r.stderr
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    assert f"{source}:{line} [prescription_pdf]: error {code}:" in r.stderr, r.stderr
    assert "nothing was written" in r.stderr


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# --- refused PDFs ----------------------------------------------------------------------------

def test_broken_pdf(run, tmp_path, out):
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R\ntruncated by the scanner")
    source = requests_csv(tmp_path, "broken.pdf")
    r = run("build-request", str(source), *ARGS, "-o", str(out))
    refused(r, source, 2, "PDF01")
    assert "'broken.pdf' cannot be read as a PDF" in r.stderr
    assert list(out.iterdir()) == []


def test_encrypted_pdf(run, tmp_path, out):
    blank_pdf(tmp_path / "locked.pdf", password="secret")
    source = requests_csv(tmp_path, EXAMPLES_PDF(1), "locked.pdf")
    r = run("build-request", str(source), *ARGS, "-o", str(out))
    refused(r, source, 3, "PDF02")
    assert "encrypted" in r.stderr and "qpdf --decrypt" in r.stderr
    assert list(out.iterdir()) == []


def test_pdf_without_a_page(run, tmp_path, out):
    blank_pdf(tmp_path / "empty.pdf", pages=0)
    assert len(PdfReader(tmp_path / "empty.pdf").pages) == 0
    source = requests_csv(tmp_path, "empty.pdf")
    refused(run("build-request", str(source), *ARGS, "-o", str(out)), source, 2, "PDF03")


def test_oversized_pdf_against_max_pdf_bytes(run, tmp_path, out, monkeypatch):
    blank_pdf(tmp_path / "big.pdf", padding=6000)
    blank_pdf(tmp_path / "small.pdf")
    size = (tmp_path / "big.pdf").stat().st_size
    assert (tmp_path / "small.pdf").stat().st_size < 5000 < size
    monkeypatch.setenv("CNSX_MAX_PDF_BYTES", "5000")
    source = requests_csv(tmp_path, "small.pdf", "big.pdf")
    r = run("build-request", str(source), *ARGS, "-o", str(out))
    refused(r, source, 3, "PDF04")
    assert f"'big.pdf' is {size / 1024:.1f} KiB, over the limit of 4.9 KiB (max_pdf_bytes)" in r.stderr
    assert "max_pdf_bytes" in r.stderr   # the hint names the setting
    monkeypatch.setenv("CNSX_MAX_PDF_BYTES", str(size))
    assert run("build-request", str(source), *ARGS, "-o", str(out)).exit_code == 0


def test_default_limit_is_20_mib():
    from cns_exchange.config import SETTINGS, load_settings

    assert SETTINGS["max_pdf_bytes"] == ("int", 20 * 1024 * 1024)
    assert load_settings().max_pdf_bytes == 20 * 1024 * 1024
    assert pdf.PrescriptionFiles().max_bytes == 20 * 1024 * 1024


def test_max_pdf_bytes_from_the_config_file(run, tmp_path, out, isolated_config):
    (isolated_config / "config.toml").write_text("max_pdf_bytes = 100\n", "utf-8")
    source = requests_csv(tmp_path, EXAMPLES_PDF(1))
    refused(run("build-request", str(source), *ARGS, "-o", str(out)), source, 2, "PDF04")
    (isolated_config / "config.toml").write_text("max_pdf_bytes = 0\n", "utf-8")
    assert run("build-request", str(source), *ARGS, "-o", str(out)).exit_code == 4


# --- images and other formats --------------------------------------------------------------

@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_image_without_the_flag_is_refused_with_the_way_to_convert(run, tmp_path, out, kind):
    name = "scan.jpg" if kind == "jpeg" else "scan.png"
    (jpeg if kind == "jpeg" else png)(tmp_path / name)
    source = requests_csv(tmp_path, name)
    r = run("build-request", str(source), *ARGS, "-o", str(out))
    refused(r, source, 2, "PDF05")
    assert f"'{name}' is a {kind.upper()} image, not a PDF" in r.stderr
    assert "--convert-images" in r.stderr and f"img2pdf {name} -o scan.pdf" in r.stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("content, what", [
    (b"<!DOCTYPE html>\n<html><body>Ordonnance</body></html>", "an HTML page"),
    (b"<html><body>prescription saved from a web mail</body></html>", "an HTML page"),
    (b"GIF89a\x01\x00\x01\x00", "a GIF image"),
    (b"PK\x03\x04 a Word document", "a ZIP archive"),
    (b"Ordonnance du Dr Example", "is not a PDF"),
])
@pytest.mark.parametrize("convert", [False, True], ids=["plain", "convert-images"])
def test_other_formats_are_always_refused(run, tmp_path, out, content, what, convert):
    (tmp_path / "ordonnance.pdf").write_bytes(content)  # the name does not matter: the content does
    source = requests_csv(tmp_path, "ordonnance.pdf")
    r = run("build-request", str(source), *ARGS, "-o", str(out), *(["--convert-images"] if convert else []))
    refused(r, source, 2, "PDF05")
    assert what in r.stderr
    if b"html" in content:
        assert "the CNS refuses HTML" in r.stderr


def test_jpeg_converted_losslessly(run, tmp_path, out):
    scan = jpeg(tmp_path / "scan.jpg")
    source = requests_csv(tmp_path, "scan.jpg", EXAMPLES_PDF(2))
    r = run("build-request", str(source), *ARGS, "-o", str(out), "--convert-images")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["123456_DTP_20261120_000001.xml", "123456_ORD_REQ-0001.pdf",
                                                       "123456_ORD_REQ-0002.pdf"]
    converted = out / "123456_ORD_REQ-0001.pdf"
    data = converted.read_bytes()
    assert data.startswith(b"%PDF-")
    assert scan.read_bytes() in data            # the JPEG is embedded as it is: no re-encoding
    reader = PdfReader(converted)
    assert len(reader.pages) == 1
    assert converted.stat().st_mode & 0o777 == 0o600
    demande = etree.parse(str(out / "123456_DTP_20261120_000001.xml")).getroot().find("Demande")
    assert demande.findtext("Ordonnance/NomFichier") == "123456_ORD_REQ-0001.pdf"
    assert demande.findtext("Ordonnance/Sha256") == hashlib.sha256(data).hexdigest()   # the converted PDF is hashed
    assert run("validate", str(out / "123456_DTP_20261120_000001.xml")).exit_code == 0


def test_several_scans_become_one_multi_page_pdf(run, tmp_path, out):
    jpeg(tmp_path / "page1.jpg")
    png(tmp_path / "page2.png", mode="RGBA")           # a PNG with transparency
    jpeg(tmp_path / "page3.jpg", size=(600, 400))       # a landscape scan
    source = requests_csv(tmp_path, "page1.jpg;page2.png;page3.jpg")
    r = run("build-request", str(source), *ARGS, "-o", str(out), "--convert-images")
    assert r.exit_code == 0, r.stderr
    reader = PdfReader(out / "123456_ORD_REQ-0001.pdf")
    assert len(reader.pages) == 3
    widths = [round(float(p.mediabox.width)) for p in reader.pages]
    heights = [round(float(p.mediabox.height)) for p in reader.pages]
    assert (widths[0], heights[0]) == (595, 842)      # fitted into A4
    assert widths[2] > heights[2]                       # turned to landscape for the landscape scan


def test_json_array_of_scans(run, tmp_path, out):
    jpeg(tmp_path / "a.jpg")
    jpeg(tmp_path / "b.jpg", colour=(10, 10, 10))
    source = tmp_path / "requests.json"
    source.write_text('[{"request_ref": "REQ-0001", "matricule": "1974091186700", "last_name": "Schmit", '
                      '"first_name": "Léa", "prescriber_code": "12345678", "prescription_date": "2026-10-15", '
                      '"pathology_codes": "D12", "treatment": "initial", "prescription_pdf": ["a.jpg", "b.jpg"]}]', "utf-8")
    r = run("build-request", str(source), *ARGS, "-o", str(out), "--convert-images")
    assert r.exit_code == 0, r.stderr
    assert len(PdfReader(out / "123456_ORD_REQ-0001.pdf").pages) == 2


def test_conversion_is_reproducible(run, tmp_path):
    jpeg(tmp_path / "a.jpg")
    png(tmp_path / "b.png")
    source = requests_csv(tmp_path, "a.jpg;b.png")
    digests = []
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        assert run("build-request", str(source), *ARGS, "-o", str(folder), "--convert-images").exit_code == 0
        digests.append(hashlib.sha256((folder / "123456_ORD_REQ-0001.pdf").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    # Built again into the same folder: the same PDF is already there, the request takes the next number.
    again = run("build-request", str(source), *ARGS, "-o", str(tmp_path / "one"), "--convert-images")
    assert again.exit_code == 0, again.stderr
    assert (tmp_path / "one" / "123456_DTP_20261120_000002.xml").exists()


def test_converted_pdfs_do_not_outlive_the_build(run, tmp_path, out, monkeypatch):
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    jpeg(tmp_path / "a.jpg")
    source = requests_csv(tmp_path, "a.jpg")
    assert run("build-request", str(source), *ARGS, "-o", str(out), "--convert-images").exit_code == 0
    png(tmp_path / "b.png")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 nothing")
    source = requests_csv(tmp_path, "a.jpg", "broken.pdf")
    assert run("build-request", str(source), *ARGS, "-o", str(out), "--convert-images").exit_code == 3
    assert list(spool.iterdir()) == []


def test_the_converted_pdf_is_held_to_the_limit(run, tmp_path, out, monkeypatch):
    import random

    rng = random.Random(5)
    for name in ("a.png", "b.png"):   # noise does not compress: each PNG about 12 KiB
        image = Image.new("L", (110, 110))
        image.putdata([rng.randrange(256) for _ in range(110 * 110)])
        image.save(tmp_path / name, "PNG")
    sizes = [(tmp_path / n).stat().st_size for n in ("a.png", "b.png")]
    monkeypatch.setenv("CNSX_MAX_PDF_BYTES", str(max(sizes) + 2000))   # each scan fits, the two together do not
    source = requests_csv(tmp_path, "a.png;b.png")
    r = run("build-request", str(source), *ARGS, "-o", str(out), "--convert-images")
    refused(r, source, 2, "PDF04")
    assert "the PDF made from 'a.png;b.png' is" in r.stderr


def test_convert_images_needs_an_output_folder(run, tmp_path):
    jpeg(tmp_path / "a.jpg")
    source = requests_csv(tmp_path, "a.jpg")
    r = run("build-request", str(source), *ARGS, "--convert-images")
    assert r.exit_code == 2
    assert "--convert-images needs -o" in r.stderr and r.stdout == ""


def test_a_pdf_and_a_scan_for_one_prescription(run, tmp_path, out):
    jpeg(tmp_path / "a.jpg")
    source = requests_csv(tmp_path, f"{EXAMPLES_PDF(1)};a.jpg")
    refused(run("build-request", str(source), *ARGS, "-o", str(out), "--convert-images"), source, 2, "PDF06")


def test_damaged_image_is_named(run, tmp_path, out):
    jpeg(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    source = requests_csv(tmp_path, "good.jpg;bad.jpg")
    r = run("build-request", str(source), *ARGS, "-o", str(out), "--convert-images")
    refused(r, source, 2, "PDF07")
    assert "'bad.jpg' cannot be converted to PDF" in r.stderr


def test_missing_scan_among_several(run, tmp_path, out):
    jpeg(tmp_path / "a.jpg")
    source = requests_csv(tmp_path, "a.jpg;b.jpg")
    r = run("build-request", str(source), *ARGS, "-o", str(out), "--convert-images")
    refused(r, source, 2, "IN008")
    assert "cannot read 'b.jpg'" in r.stderr


def test_every_problem_of_the_file_in_one_run(run, tmp_path, out):
    jpeg(tmp_path / "a.jpg")
    blank_pdf(tmp_path / "locked.pdf", password="x")
    (tmp_path / "page.html").write_text("<html></html>", "utf-8")
    source = requests_csv(tmp_path, "a.jpg", "locked.pdf", "page.html")
    r = run("build-request", str(source), *ARGS, "-o", str(out))
    for line, code in ((2, "PDF05"), (3, "PDF02"), (4, "PDF05")):
        assert f"{source}:{line} [prescription_pdf]: error {code}:" in r.stderr
    assert "3 problems in the requests" in r.stderr


def test_a_fifo_is_not_read(run, tmp_path, out):
    os.mkfifo(tmp_path / "pipe.pdf")  # reading it would hang the build under cron
    source = requests_csv(tmp_path, "pipe.pdf")
    r = run("build-request", str(source), *ARGS, "-o", str(out))
    refused(r, source, 2, "IN008")
    assert "not a regular file" in r.stderr


@pytest.mark.parametrize("head, kind", [
    (b"%PDF-1.4\n", "pdf"), (b"\x00" * 100 + b"%PDF-1.7", "pdf"), (b"\xff\xd8\xff\xe1", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"), (b"II*\x00", "tiff"), (b"\xef\xbb\xbf  <!doctype HTML>", "html"),
    (b"\x00\x00\x00\x18ftypheic", "heic"), (b"", "unknown"),
])
def test_sniff(head, kind):
    assert pdf.sniff(head) == kind


# --- validate: the PDFs beside a request file -------------------------------------------------

@pytest.fixture
def built(run, examples, out):
    r = run("build-request", str(examples / "requests.csv"), *ARGS, "-o", str(out))
    assert r.exit_code == 0, r.stderr
    return out / "123456_DTP_20261120_000001.xml"


def test_validate_checks_the_pdfs_beside_a_request(run, built):
    r = run("validate", str(built))
    assert r.exit_code == 0, r.stderr
    (built.parent / "123456_ORD_REQ-0002.pdf").unlink()
    with open(built.parent / "123456_ORD_REQ-0003.pdf", "ab") as f:
        f.write(b"% edited\n")
    r = run("validate", "--json", str(built))
    assert r.exit_code == 3
    assert (f"{built}:70 /DemandesTitrePriseEnCharge/Demande[2]/Ordonnance/NomFichier: error PDF08: "
            "prescription 123456_ORD_REQ-0002.pdf is not beside the request file") in r.stderr
    assert f"{built}:95 /DemandesTitrePriseEnCharge/Demande[3]/Ordonnance/Sha256: error PDF09:" in r.stderr
    import json

    [report] = json.loads(r.stdout)
    assert [(i["code"], i["line"]) for i in report["issues"]] == [("PDF08", 70), ("PDF09", 95)]


def test_validate_without_attachments_and_from_stdin(run, built):
    for pdf_file in built.parent.glob("*.pdf"):
        pdf_file.unlink()
    assert run("validate", str(built)).exit_code == 3
    assert run("validate", "--no-attachments", str(built)).exit_code == 0
    assert run("validate", "-", input=built.read_bytes()).exit_code == 0   # no folder to look in


def test_upload_refuses_an_altered_pdf_with_the_same_check(run, built, tmp_path, isolated_config):
    (isolated_config / "config.toml").write_text(
        f'remote = "file://{tmp_path / "dropbox"}"\ndatabase = "{tmp_path / "db.sqlite"}"\n', "utf-8")
    for folder in ("upload", "download"):
        (tmp_path / "dropbox" / folder).mkdir(parents=True)
    with open(built.parent / "123456_ORD_REQ-0001.pdf", "ab") as f:
        f.write(b"% edited\n")
    r = run("upload", str(built))
    assert r.exit_code == 3
    assert "error PDF09: 123456_ORD_REQ-0001.pdf differs from the SHA-256 the request names" in r.stderr
    assert list((tmp_path / "dropbox" / "upload").iterdir()) == []


def EXAMPLES_PDF(n: int) -> str:  # noqa: N802 - reads as a constant in the rows above
    """An absolute path to an example prescription (a small valid PDF)."""
    return str(EXAMPLES / "prescriptions" / f"ordonnance-REQ-000{n}.pdf")


def test_pdf_check_unit():
    data = io.BytesIO()
    writer = PdfWriter()
    writer.add_blank_page(100, 100)
    writer.add_blank_page(100, 100)
    writer.write(data)
    assert pdf.check_pdf(data.getvalue(), "x.pdf") == (2, None)
    pages, problem = pdf.check_pdf(b"%PDF-1.4\n%%EOF", "x.pdf")
    assert pages == 0 and problem.code in ("PDF01", "PDF03")
