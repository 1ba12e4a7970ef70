"""cnsx status --pdf: the status report of the practice database as an A4 PDF.

The examples are imported into a private database, or made by a real exchange through the
sandbox (build-request, upload, sandbox --once, fetch, import, build-invoice, ...); the PDF's
text is read back with pypdf (and pdftotext -layout, line by line) and compared with what
`cnsx status --json` says of the same database (amounts to the cent, written the French way,
a patient's history in French), and its data SHA-256 is computed again from that JSON. Pages
are rendered to tests/artefacts/ for a person to look at.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
from datetime import date
from decimal import Decimal

import pytest
from pypdf import PdfReader

from cns_exchange import __version__
from conftest import EXAMPLES
from test_cli_print import flat, french, metadata, render, second_reader, text_of
from test_ledger import _billed_through_the_sandbox

DOCUMENTS = ["123456_DTP_20261120_000001.xml", "123456_FAC_20261120_000001.xml", "CNS_ACR_20261120_000001.xml",
             "CNS_RTP_20261120_000002.xml", "CNS_DEC_20261125_000001.xml"]
EPOCH = "1795253400"   # 2026-11-21T09:30:00Z: the PDF's creation date
MATRICULES = ["1974091186700", "1982080285657", "2001120308757", "2015123101725"]


@pytest.fixture
def db(run, tmp_path, monkeypatch):
    """A practice database holding the five example documents."""
    monkeypatch.setenv("CNSX_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "practice.sqlite"
    r = run("import", "--db", str(path), *(str(EXAMPLES / name) for name in DOCUMENTS))
    assert r.exit_code == 0, r.stderr
    return path


def status_json(run, db, *options: str) -> dict:
    r = run("status", "--json", "--db", str(db), *options)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def sha256_of_json(sections: dict) -> str:
    """The data SHA-256 as docs/cli.md tells a reader to compute it."""
    text = json.dumps(sections, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_status_pdf_shows_every_section(run, db, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    target = tmp_path / "out" / "status.pdf"
    target.parent.mkdir()
    r = run("status", "--pdf", str(target), "--db", str(db))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""                                   # no tables with --pdf
    assert "status report, 1 page, data SHA-256 " in r.stderr and f"→ {target}" in r.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["status.pdf"]   # no temp file left
    data = status_json(run, db)
    text = text_of(target)
    today = date.today()
    assert f"État du cabinet au {today:%d/%m/%Y}" in text
    assert "Code prestataire 123456" in text
    assert "Demandes en attente de réponse : aucune" in text
    refused = data["refused_requests"][0]
    assert refused["request_ref"] == "REQ-0003" and refused["reasons"].startswith("R03")
    assert f"REQ-0003 •••••••••{refused['matricule'][-4:]} {refused['patient']} {refused['reasons']}" in text
    for cert in data["certificates"]:
        assert (f"{cert['certificate']} •••••••••{cert['matricule'][-4:]} {cert['patient']} "
                f"{cert['valid_from'][8:]}/{cert['valid_from'][5:7]}/"
                f"{cert['valid_from'][:4]}") in text
        assert (f"{cert['sessions_authorised']} {cert['sessions_billed']} {cert['sessions_remaining']} "
                f"{'valide' if cert['state'] == 'valid' else 'expiré'}") in text
    disputed = data["disputed"][0]
    assert (disputed["reason_code"], disputed["billed"]) == ("C01", "55.55")
    assert f"C01 {disputed['reason_label']} {french(disputed['billed'])} {french(disputed['accepted'])}" in text
    assert "Montants par mois (2)" in text
    for month in data["per_month"]:
        assert (f"{month['month'][5:]}/{month['month'][:4]} {month['sessions']} {french(month['gross'])} "
                f"{french(month['patient_share'])} {french(month['billed'])} "
                f"{french(month['paid'])} {french(month['disputed'])}") in text
    totals = [sum(Decimal(m[k]) for m in data["per_month"])
              for k in ("gross", "patient_share", "billed", "paid", "disputed")]
    sessions = sum(m["sessions"] for m in data["per_month"])
    assert f"Total {sessions} {' '.join(french(str(t)) for t in totals)}" in text
    assert "176,00" in text and "384,86" in text and "560,86" in text
    for matricule in MATRICULES:                            # masked by default
        assert matricule not in text
    sha = sha256_of_json(status_json(run, db, "--matricule", "masked"))
    assert f"data SHA-256 : {sha}" in text                   # footer
    assert "page 1/1" in text and f"cnsx {__version__}" in text
    meta = metadata(target)
    assert meta["/Producer"] == meta["/Creator"] == f"cnsx {__version__}"
    assert meta["/Title"] == f"État du cabinet 123456 au {today:%d/%m/%Y}"
    assert meta["/Author"] == "Prestataire 123456"
    assert sha in meta["/Subject"] and f"data-sha256:{sha}" in meta["/Keywords"]
    assert meta["/CreationDate"].startswith("D:20261121093000+00'00'")
    values = "".join(str(v) for v in meta.values())
    assert not any(m[-4:] in values for m in MATRICULES)   # no patient data in the metadata
    other = second_reader(target)
    if other is not None:
        assert "REQ-0003" in other and "55,55" in other and sha in other
    pages = render(target, "status")
    assert len(pages) in (0, 1)


def test_pdf_and_json_together(run, db, tmp_path):
    r = run("status", "--pdf", str(tmp_path / "s.pdf"), "--json", "--db", str(db))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == status_json(run, db)    # the JSON as without --pdf (matricules in full)
    assert (tmp_path / "s.pdf").read_bytes().startswith(b"%PDF-")
    r = run("status", "--pdf", str(tmp_path / "c.pdf"), "--csv", "--db", str(db))
    assert r.exit_code == 0 and r.stdout.startswith("section,")


def test_full_matricules_and_their_hash(run, db, tmp_path):
    r = run("status", "--pdf", str(tmp_path / "s.pdf"), "--matricule", "full", "--db", str(db))
    assert r.exit_code == 0, r.stderr
    text = text_of(tmp_path / "s.pdf")
    assert "1974091186700" in text
    assert sha256_of_json(status_json(run, db)) in text     # the hash of the --json output itself


def test_masked_json(run, db):
    data = status_json(run, db, "--matricule", "masked")
    assert data["certificates"][0]["matricule"] == "•••••••••6700"


def test_never_overwrites(run, db, tmp_path):
    target = tmp_path / "s.pdf"
    target.write_bytes(b"mine")
    r = run("status", "--pdf", str(target), "--db", str(db))
    assert r.exit_code == 2
    assert "never overwrites" in r.stderr and r.stdout == ""
    assert target.read_bytes() == b"mine"
    r = run("status", "--pdf", str(tmp_path / "no" / "such.pdf"), "--db", str(db))
    assert r.exit_code == 2 and "does not exist" in r.stderr


def test_certificate_filter(run, db, tmp_path):
    target = tmp_path / "one.pdf"
    r = run("status", "--pdf", str(target), "--certificate", "TPC-2026-000102", "--db", str(db))
    assert r.exit_code == 0, r.stderr
    text = text_of(target)
    assert "Sélection titre de prise en charge TPC-2026-000102" in text
    assert "TPC-2026-000101" not in text and "Lignes contestées par la CNS : aucune" in text
    one = status_json(run, db, "--certificate", "TPC-2026-000102")
    for month in one["per_month"]:
        assert french(month["billed"]) in text
    assert sha256_of_json(status_json(run, db, "--certificate", "TPC-2026-000102", "--matricule", "masked")) in text
    meta = metadata(target)
    assert meta["/Title"].endswith("(un titre de prise en charge)") and "TPC-2026-000102" not in "".join(meta.values())


def test_patient_filter_masks_the_patient(run, db, tmp_path):
    target = tmp_path / "p.pdf"
    r = run("status", "--pdf", str(target), "--patient", "1974091186700", "--db", str(db))
    assert r.exit_code == 0, r.stderr
    text = text_of(target)
    assert "Sélection patient de matricule •••••••••6700" in text and "1974091186700" not in text
    assert "TPC-2026-000101" in text and "TPC-2026-000102" not in text
    assert metadata(target)["/Title"].endswith("(un patient)")
    history = status_json(run, db, "--patient", "1974091186700")["history"]
    assert f"Historique du patient (montants en €) ({len(history)})" in text
    render(target, "status-patient")


def test_pdf_to_stdout(run, db):
    r = run("status", "--pdf", "-", "--db", str(db))
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes.startswith(b"%PDF-") and "→ stdout" in r.stderr
    text = flat("\n".join(p.extract_text() for p in PdfReader(io.BytesIO(r.stdout_bytes)).pages))
    assert "REQ-0003" in text
    r = run("status", "--pdf", "-", "--json", "--db", str(db))
    assert r.exit_code == 2 and "both would go to stdout" in r.stderr and r.stdout == ""


def test_no_database(run, tmp_path):
    r = run("status", "--pdf", str(tmp_path / "s.pdf"), "--db", str(tmp_path / "none.sqlite"))
    assert r.exit_code == 3 and not (tmp_path / "s.pdf").exists()


def test_columns_cover_every_key_of_status(run, tmp_path, monkeypatch, db):
    """Each column of the PDF shows a key of status()'s rows, and every key is shown (a new
    key in status.py must be given a column)."""
    from cns_exchange.store import database
    from cns_exchange.store import status as status_mod
    from cns_exchange.pdf.report import status_columns

    monkeypatch.setenv("CNSX_DATA_DIR", str(tmp_path / "data2"))
    early = tmp_path / "early.sqlite"   # requests and billing only: requests awaiting, sessions awaiting payment
    assert run("import", "--db", str(early), *(str(EXAMPLES / n) for n in DOCUMENTS[:2])).exit_code == 0
    conn = database.connect(db)
    try:   # a day by which the examples' treatments are interrupted: final reports due
        later = status_mod.status(conn, date(2030, 1, 1), year=2026)
    finally:
        conn.close()
    seen: dict[str, set] = {}
    one = status_json(run, db, "--patient", "Schmit")   # and the history of one patient
    for data in (status_json(run, db, "--year", "2026"), status_json(run, early), later, one):
        for name, rows in data.items():
            for row in rows:
                seen.setdefault(name, set()).update(row)
    columns = status_columns()
    assert set(columns) == set(seen) == set(later) | {"history"}
    for name, keys in seen.items():
        assert set(columns[name]) == keys, name


def test_long_sections_go_on_over_pages_with_their_column_titles(tmp_path):
    """120 sessions awaiting payment and 30 months: the tables run over pages, each page says
    'page k/N', each continued table has its title '(suite)' and its column titles again, and
    the months' total is under column titles."""
    from datetime import datetime, timezone

    from cns_exchange.pdf.report import StatusHeading, write_status

    awaiting = [{"certificate": f"TPC-2026-{n:06d}", "matricule": "•••••••••6700", "session_date": "2026-11-02",
                 "act": "ZD12", "cns_share": n * 100 + n % 100, "billing_file": "123456_FAC_20261120_000001.xml"}
                for n in range(1, 121)]
    months = [{"month": f"{2024 + m // 12}-{m % 12 + 1:02d}", "sessions": m, "gross": 140291, "patient_share": 16835,
               "billed": 123456, "paid": 100000, "disputed": 1} for m in range(30)]
    sections = {"requests_awaiting_answer": [], "refused_requests": [], "certificates": [],
                "billed_awaiting_payment": awaiting, "disputed": [], "per_month": months}
    heading = StatusHeading(["123456"], date(2026, 11, 21), datetime(2026, 11, 21, tzinfo=timezone.utc), "0" * 64)
    out = io.BytesIO()
    pages = write_status(out, sections, heading)
    reader = PdfReader(io.BytesIO(out.getvalue()))
    assert len(reader.pages) == pages >= 3
    texts = [flat(p.extract_text()) for p in reader.pages]
    for k, text in enumerate(texts, 1):
        assert f"page {k}/{pages}" in text
        if k > 1:
            assert "État du cabinet 123456 au 21/11/2026 (suite)" in text
    assert "Séances facturées en attente de paiement (suite)" in texts[1]
    assert "Titre Matricule Patient Séance Acte Part CNS € Fichier de facturation" in texts[1]
    everything = " ".join(texts)
    for n in range(1, 121):
        assert f"TPC-2026-{n:06d}" in everything
    assert "120,20" in everything and "1,01" in everything
    last = texts[-1]
    assert "Mois Séances Brut € Part patient € Part CNS € Payé € Contesté €" in last
    assert (f"Total {sum(range(30))} {french(str(Decimal('1402.91') * 30))} {french(str(Decimal('168.35') * 30))} "
            f"{french(str(Decimal('1234.56') * 30))} {french('30000.00')} 0,30") in last
    path = tmp_path / "long.pdf"
    path.write_bytes(out.getvalue())
    render(path, "status-long")


def test_status_gives_cents_and_each_output_writes_them(run, db):
    """status() returns amounts as integer cents (no text made in SQL, none parsed back); the
    JSON writes them as decimal text (docs/cli.md), and the PDF's amount columns are exactly
    the amounts status.AMOUNTS names."""
    from cns_exchange.pdf.report import SECTIONS
    from cns_exchange.store import database
    from cns_exchange.store import status as status_mod

    conn = database.connect(db)
    try:
        sections = status_mod.status(conn, date.today(), year=2026)
        one = status_mod.status(conn, date.today(), patient="1974091186700")
    finally:
        conn.close()
    checked = 0
    for name, keys in status_mod.AMOUNTS.items():
        for row in (sections | {"history": one["history"]})[name]:
            for key in keys:
                assert row[key] is None or type(row[key]) is int, (name, key, row[key])
                checked += row[key] is not None
    assert checked > 10
    assert sections["disputed"][0]["billed"] == 5555
    text = status_mod.as_text(sections)
    assert text["disputed"][0]["billed"] == "55.55" and sections["disputed"][0]["billed"] == 5555   # a copy
    assert status_json(run, db, "--year", "2026") == json.loads(status_mod.canonical_json(sections))
    assert status_json(run, db, "--patient", "1974091186700") == json.loads(status_mod.canonical_json(one))
    shown = {name: {col.key for col in columns if col.kind == "amount"} for name, _, columns in SECTIONS}
    assert {name: keys for name, keys in shown.items() if keys} == {n: set(k) for n, k in status_mod.AMOUNTS.items()}


# --- the month chart -----------------------------------------------------------------------------

def _charts(pages) -> list:
    """The bar charts drawn on the pages of a layout (pdf.report.layout's return value)."""
    from reportlab.graphics.charts.barcharts import VerticalBarChart

    from cns_exchange.pdf.layout import Graphic

    return [item for page in pages for _, band in page for mark in band.marks if isinstance(mark, Graphic)
            for item in mark.drawing.contents if isinstance(item, VerticalBarChart)]


def _month(month: str, billed: int, paid: int, disputed: int) -> dict:
    return {"month": month, "sessions": 1, "gross": billed + 1000, "patient_share": 1000, "billed": billed,
            "paid": paid, "disputed": disputed}


def test_month_chart_has_every_month_with_the_tables_figures():
    """The chart's bars are the table's billed, paid and disputed (euros) month by month, and
    the months without a row in between are there as zero bars: its axis is a time axis (three
    months with something in them over five months, a year's end between)."""
    from datetime import datetime, timezone

    from cns_exchange.pdf.report import StatusHeading, layout, write_status

    months = [_month("2025-11", 12345, 10000, 2345), _month("2026-02", 50000, 0, 0), _month("2026-03", 7, 5, 2)]
    heading = StatusHeading(["123456"], date(2026, 4, 1), datetime(2026, 4, 1, tzinfo=timezone.utc), "0" * 64)
    [chart] = _charts(layout({"per_month": months}, heading))
    assert list(chart.categoryAxis.categoryNames) == ["11/2025", "12/2025", "01/2026", "02/2026", "03/2026"]
    assert [list(series) for series in chart.data] == [
        [123.45, 0, 0, 500.0, 0.07],      # billed (the CNS's share)
        [100.0, 0, 0, 0, 0.05],           # paid
        [23.45, 0, 0, 0, 0.02]]           # disputed
    out = io.BytesIO()
    write_status(out, {"per_month": months}, heading)
    text = flat("\n".join(p.extract_text() for p in PdfReader(io.BytesIO(out.getvalue())).pages))
    assert "Montants par mois (3)" in text             # the table: the months with something in them
    assert "12/2025" in text and "01/2026" in text     # the chart: every month


def test_month_chart_shows_the_last_24_months_empty_ones_too():
    from datetime import datetime, timezone

    from cns_exchange.pdf.report import StatusHeading, layout

    months = [_month("2024-01", 100, 100, 0), _month("2025-12", 300, 200, 100), _month("2026-06", 200, 0, 200)]
    heading = StatusHeading(["123456"], date(2026, 7, 1), datetime(2026, 7, 1, tzinfo=timezone.utc), "0" * 64)
    [chart] = _charts(layout({"per_month": months}, heading))
    names = list(chart.categoryAxis.categoryNames)
    assert len(names) == 24 and names[0] == "07/2024" and names[-1] == "06/2026"
    billed, paid, disputed = ([0] * 17 + [x] + [0] * 5 + [y] for x, y in ((3.0, 2.0), (2.0, 0), (1.0, 2.0)))
    assert [list(series) for series in chart.data] == [billed, paid, disputed]


# --- on a database made by a real exchange through the sandbox ------------------------------------

#: The history's detail as status() gives it (English data), and as the printed report says it.
_DAY = r"(\d{4})-(\d\d)-(\d\d)"
_FRENCH_DETAIL = [
    (rf"prescription of {_DAY} by (\S+), (.+)", r"ordonnance du \3/\2/\1 par \4, \5"),
    (rf"valid {_DAY} to {_DAY}, (\d+) sessions", r"valide du \3/\2/\1 au \6/\5/\4, \7 séances"),
    (r"1 session counted", r"1 séance comptée"),
    (r"(\d+) sessions counted", r"\1 séances comptées"),
    (rf"session of {_DAY}; (.+)", r"séance du \3/\2/\1 ; \4"),
    (rf"session of {_DAY}", r"séance du \3/\2/\1"),
    (r"awaiting payment", r"en attente de paiement"),
    (r"(R\d\d .+)", r"\1"),   # the reasons of a refusal: the CNS's own words
]
_FRENCH_EVENT = {"request": "demande", "certificate": "titre", "refused": "refus", "fee note": "mémoire",
                 "session": "séance", "payment": "paiement", "dispute": "contesté", "final report sent": "rapport final"}


def _in_french(detail: str) -> str:
    for english, french_text in _FRENCH_DETAIL:
        if re.fullmatch(english, detail):
            return re.sub(english, french_text, detail)
    raise AssertionError(f"a detail this test does not know: {detail!r}")


def _in_order(cells: list[str], line: str) -> bool:
    """Whether the cells are words of ``line``, in that order."""
    words = iter(line.split(" "))
    return all(any(word == cell for word in words) for cell in cells)


def _layout_lines(path) -> list[str]:
    """The PDF's text as pdftotext -layout reads it, a line for each line of the page, its runs
    of blanks as one space."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed (Debian: poppler-utils)")
    out = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True)
    return [" ".join(line.split()) for line in out.stdout.decode("utf-8").splitlines()]


def test_every_event_of_a_history_is_printed_in_french():
    """Each word of status.EVENTS as the history's 'Quoi' prints it: French, whatever the user's
    language (English here)."""
    from datetime import datetime, timezone

    from cns_exchange.pdf.report import StatusHeading, status_columns, write_status
    from cns_exchange.store.status import EVENTS

    assert set(EVENTS) == set(_FRENCH_EVENT)
    history = [{key: None for key in status_columns()["history"]} | {"date": f"2026-11-{day:02d}", "event": event,
                                                                     "detail": ""}
               for day, event in enumerate(EVENTS, 1)]
    heading = StatusHeading(["123456"], date(2026, 12, 1), datetime(2026, 12, 1, tzinfo=timezone.utc), "0" * 64,
                            patient="•••••••••6700")
    out = io.BytesIO()
    write_status(out, {"history": history}, heading)
    text = flat("\n".join(p.extract_text() for p in PdfReader(io.BytesIO(out.getvalue())).pages))
    for day, event in enumerate(EVENTS, 1):
        assert f"{day:02d}/11/2026 {_FRENCH_EVENT[event]}" in text, event
        assert event not in text.replace("rapport final", ""), event


@pytest.fixture
def exchanged(run, dropbox, tmp_path):
    """The practice database of the example exchange through the sandbox (test_ledger's): the
    requests answered (one refused), the sessions billed, then paid or disputed."""
    _billed_through_the_sandbox(run, tmp_path / "outbox")
    return dropbox[1] / "practice.sqlite"


def test_status_pdf_of_an_exchange_through_the_sandbox(run, exchanged, tmp_path):
    """Every section of status, with as many rows as --json gives, its figures the French way."""
    from cns_exchange.pdf.report import SECTIONS

    target = tmp_path / "status.pdf"
    r = run("status", "--pdf", str(target), "--year", "2026")
    assert r.exit_code == 0, r.stderr
    data = status_json(run, exchanged, "--year", "2026")
    text = text_of(target)
    captions = {name: caption for name, caption, _ in SECTIONS}
    assert set(data) <= set(captions) and {"certificates", "disputed", "per_month", "refused_requests"} <= set(data)
    for name, rows in data.items():
        if rows:
            assert f"{captions[name]} ({len(rows)})" in text, name
        else:
            assert f"{captions[name]} : aucun" in text, name
    assert {c["certificate"] for c in data["certificates"]} == {"TPC-2026-000101", "TPC-2026-000102"}
    for cert in data["certificates"]:
        assert f"{cert['certificate']} •••••••••{cert['matricule'][-4:]} {cert['patient']}" in text
    assert data["refused_requests"][0]["reasons"] in text
    for row in data["disputed"]:
        assert f"{row['reason_code']} {row['reason_label']} {french(row['billed'])} {french(row['accepted'])}" in text
    for month in data["per_month"]:
        assert (f"{month['month'][5:]}/{month['month'][:4]} {month['sessions']} {french(month['gross'])} "
                f"{french(month['patient_share'])} {french(month['billed'])} "
                f"{french(month['paid'])} {french(month['disputed'])}") in text
    assert f"data SHA-256 : {sha256_of_json(status_json(run, exchanged, '--year', '2026', '--matricule', 'masked'))}" \
        in text
    render(target, "status-exchange")


@pytest.mark.parametrize("patient, events", [
    ("Schmit Léa", {"request", "certificate", "session", "fee note", "payment"}),
    ("Kieffer Noah", {"session", "fee note", "dispute"}),   # billed on a certificate the CNS does not know
    ("Hoffmann Zoë", {"request", "refused"})])
def test_patient_history_in_french_from_an_exchange_through_the_sandbox(run, exchanged, tmp_path, patient, events):
    """A patient's history printed in French (the user's language being English): each row's
    date, event and figures on its line, its detail whole on a line of its own under it, the
    references whole; nothing cut, no English."""
    target = tmp_path / "history.pdf"
    r = run("status", "--patient", patient, "--pdf", str(target))
    assert r.exit_code == 0, r.stderr
    history = status_json(run, exchanged, "--patient", patient)["history"]
    assert run("status", "--patient", patient).stdout.count("session of") == \
        sum(h["detail"].startswith("session of") for h in history)   # the terminal speaks English
    text = text_of(target)
    assert f"Historique du patient (montants en €) ({len(history)})" in text
    assert "…" not in text                                            # no cell cut
    for english in ("prescription of", "session of", "sessions counted", "valid 20", "awaiting payment", " to 20"):
        assert english not in text, english
    lines = _layout_lines(target)
    header = lines.index("Date Quoi Titre Référence Acte Brut Patient CNS Payé Contesté")
    assert lines[header + 1] == "Détail"
    assert {h["event"] for h in history} == events
    at = header + 1
    for h in history:
        start = f"{h['date'][8:]}/{h['date'][5:7]}/{h['date'][:4]} {_FRENCH_EVENT[h['event']]} "
        cells = [h[key] for key in ("certificate", "act") if h[key]] + [
            french(h[key]) for key in ("gross", "patient_share", "cns_share", "paid", "disputed") if h[key]]
        at = next(i for i in range(at + 1, len(lines)) if lines[i].startswith(start) and _in_order(cells, lines[i]))
        if h["reference"]:   # whole, though a file name may be broken over the lines of its cell
            reference = h["reference"].replace(" ", "")
            first = max((w for w in lines[at].split(" ") if reference.startswith(w)), key=len)
            assert "".join(lines[at + 1:at + 3]).replace(" ", "").startswith(reference[len(first):]), lines[at:at + 3]
            assert len(first) >= 8, first
        if h["detail"]:      # whole, on a line of its own
            assert _in_french(h["detail"]) in lines[at + 1:at + 4], (h, lines[at:at + 4])
    render(target, f"status-history-{patient.split()[0].lower()}")
