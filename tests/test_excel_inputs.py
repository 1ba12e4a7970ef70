"""The practice's files as they come from Excel (issue 13, part 1).

A French Excel "CSV (séparateur: point-virgule)" export is Windows-1252 with CRLF, dates
dd/mm/yyyy, French headers, the secretary's own columns and rows of empty cells at the end.
Built from it, a document must be byte for byte the one built from the canonical CSV.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import pytest

from cns_exchange.rows.records import (
    REQUEST_COLUMNS, REQUEST_OPTIONAL, InputReport, Reading, excel_hint, input_date, read_rows,
)
from conftest import CREATED, PROVIDER

pytestmark = pytest.mark.usefixtures("current_tariffs")

REQUEST_HEADERS = {"request_ref": "Référence", "matricule": "MATRICULE", "last_name": "Nom", "first_name": "Prénom",
                   "prescriber_code": "Code Médecin", "prescription_date": "Date ordonnance",
                   "pathology_codes": "Pathologies", "treatment": "Traitement", "prescription_pdf": "Ordonnance"}
SESSION_HEADERS = {"certificate_number": "N° titre", "matricule": "Matricule", "session_date": "Date",
                   "act_code": "Acte", "executing_provider": "Prestataire", "last_name": "NOM", "first_name": "prénom"}
TREATMENTS = {"initial": "Initiale", "extension": "Prolongation"}
EXTRA = ["Durée", "Montant", "Remarque"]


def _french(date_text: str) -> str:
    return date.fromisoformat(date_text).strftime("%d/%m/%Y")


def excel_export(canonical: Path, headers: dict[str, str]) -> bytes:
    """The rows of ``canonical`` as a secretary's Excel sheet exports them: French headers in
    another order, dd/mm/yyyy dates, French treatment names, extra columns (a decimal comma in
    Montant), Windows-1252, CRLF, ';', and empty rows at the end."""
    rows = list(csv.DictReader(canonical.read_text("utf-8").splitlines(), delimiter=";"))
    columns = list(reversed(rows[0]))   # another order than ours
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow([EXTRA[0]] + [headers[c] for c in columns] + EXTRA[1:])
    for row in rows:
        cells = []
        for column in columns:
            value = row[column]
            if column.endswith("_date"):
                value = _french(value)
            elif column == "treatment":
                value = TREATMENTS[value]
            cells.append(value)
        writer.writerow(["45 min"] + cells + ["44,44", "payé en liquide; reçu donné"])
    for _ in range(3):
        writer.writerow([""] * (len(columns) + len(EXTRA)))
    return out.getvalue().encode("cp1252")


def _build(run, command: str, path: Path, *options: str):
    return run(command, str(path), "--created", CREATED, "--provider", PROVIDER, "-o", "-", *options)


@pytest.mark.parametrize("command, canonical, headers", [
    ("build-request", "requests.csv", REQUEST_HEADERS),
    ("build-invoice", "sessions.csv", SESSION_HEADERS),
])
def test_a_french_excel_export_builds_the_same_bytes_as_the_canonical_csv(run, examples, command, canonical, headers):
    export = excel_export(examples / canonical, headers)
    assert b"\r\n" in export and b"\xe9" in export and b";;;;" in export  # cp1252 é, CRLF, empty rows
    path = examples / "export-excel.csv"
    path.write_bytes(export)
    expected = _build(run, command, examples / canonical)
    assert expected.exit_code == 0, expected.stderr
    r = _build(run, command, path)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == expected.stdout_bytes
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert warnings == [f"{path}:1: warning IN017: columns not used by cnsx, ignored: 'Durée', 'Montant', 'Remarque'"]
    assert "error" not in r.stderr


def test_strict_refuses_the_columns_cnsx_does_not_use(run, examples):
    path = examples / "export-excel.csv"
    path.write_bytes(excel_export(examples / "sessions.csv", SESSION_HEADERS))
    r = _build(run, "build-invoice", path, "--strict")
    assert r.exit_code == 3
    assert r.stdout == ""
    for name in EXTRA:
        assert f"{path}:1 [{name}]: error IN002: unknown column '{name}'" in r.stderr


def test_the_config_maps_other_headers_and_sets_the_encoding(run, examples, isolated_config):
    text = (examples / "sessions.csv").read_text("utf-8").replace("certificate_number", "Dossier CNS", 1)
    path = examples / "own-headers.csv"
    path.write_bytes(text.encode("cp1252"))
    refused = _build(run, "build-invoice", path)
    assert refused.exit_code == 3
    assert "[certificate_number]: error IN001" in refused.stderr
    assert "IN017: column not used by cnsx, ignored: 'Dossier CNS'" in refused.stderr
    config = isolated_config / "config.toml"
    config.write_text('encoding = "utf-8"\n[columns]\n"dossier cns" = "certificate_number"\n', "utf-8")
    r = _build(run, "build-invoice", path)   # cp1252 bytes, but the config says UTF-8: the config wins
    assert r.exit_code == 3
    assert f"{path}:2: error IN005: byte b'\\xe9' at column" in r.stderr
    r = _build(run, "build-invoice", path, "--encoding", "detect")   # and the flag wins over the config
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == _build(run, "build-invoice", examples / "sessions.csv").stdout_bytes


@pytest.mark.parametrize("config, message", [
    ('encoding = "klingon"\n', "encoding in the config: unknown encoding 'klingon'"),
    ('[columns]\n"Patient" = "patient_name"\n', "[columns] 'Patient' = 'patient_name': cnsx has no column 'patient_name'"),
    ('columns = "last_name"\n', "columns must be a table of names"),
])
def test_a_bad_input_setting_is_a_configuration_error(run, examples, isolated_config, config, message):
    (isolated_config / "config.toml").write_text(config, "utf-8")
    r = _build(run, "build-invoice", examples / "sessions.csv")
    assert r.exit_code == 4, r.stderr
    assert message in r.stderr


def test_french_keys_in_json_and_unused_keys_warned_once(run, examples):
    rows = [{"Titre": "TPC-2026-000101", "Matricule": "1974091186700", "Date": "20/10/2026", "Acte": "ZD11",
             "Durée": 45}, {"Titre": "TPC-2026-000101", "Matricule": "1974091186700", "Date": "27.10.2026",
                            "Acte": "ZD12", "Durée": 30}]
    canonical = [{"certificate_number": "TPC-2026-000101", "matricule": "1974091186700", "session_date": d,
                  "act_code": a} for d, a in (("2026-10-20", "ZD11"), ("2026-10-27", "ZD12"))]
    (examples / "fr.json").write_text(json.dumps(rows), "utf-8")
    (examples / "en.json").write_text(json.dumps(canonical), "utf-8")
    r = _build(run, "build-invoice", examples / "fr.json")
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == _build(run, "build-invoice", examples / "en.json").stdout_bytes
    assert r.stderr.count("IN017") == 1 and "field not used by cnsx, ignored: 'Durée'" in r.stderr


# --- dates ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, day", [
    ("2026-10-05", date(2026, 10, 5)), ("05/10/2026", date(2026, 10, 5)), ("5/10/2026", date(2026, 10, 5)),
    ("05.10.2026", date(2026, 10, 5)), ("29/02/2028", date(2028, 2, 29)), ("01/02/2026", date(2026, 2, 1)),
])
def test_dates_iso_or_day_first(text, day):
    assert input_date(text) == day


@pytest.mark.parametrize("text, why", [
    ("05/10/26", "four digits"),            # which century?
    ("05.10.126", "four digits"),
    ("10/20/2026", "no such day: day 10 of month 20"),   # month first: never
    ("31/11/2026", "no such day"),
    ("29/02/2026", "no such day"),
    ("05/10.2026", "not a date"),           # two separators
    ("2026/10/05", "not a date"),
    ("05-10-2026", "not a date"),
    ("05/10/2026 00:00", "not a date"),
    ("٠٥/١٠/٢٠٢٦", "not a date"),           # digits, but not ASCII ones
    ("2026-1-5", "not a date"),
])
def test_ambiguous_or_impossible_dates_are_refused(text, why):
    with pytest.raises(ValueError, match=why):
        input_date(text)


def test_a_bad_date_names_its_cell(run, examples):
    path = examples / "s.csv"
    path.write_text("titre;matricule;date;acte\nTPC-1;1974091186700;20/10/26;ZD11\n", "utf-8")
    r = _build(run, "build-invoice", path)
    assert r.exit_code == 3
    assert (f"{path}:2 [session_date]: error IN004: 'session_date' value '20/10/26': the year must have four digits"
            in r.stderr)


# --- encodings and empty rows --------------------------------------------------------------

def _read(data: bytes, fmt: str = "csv", encoding: str | None = None):
    report = InputReport("in")
    rows = list(read_rows(io.BytesIO(data), fmt, report, ("a",), ("b",), Reading(encoding)))
    return [r.values for r in rows], [(i.code, i.line, i.message) for i in report.issues]


HEADER = b"a;b\r\n"


@pytest.mark.parametrize("data, values", [
    (HEADER + "é;ü\r\n".encode("utf-8"), "é"),
    (b"\xef\xbb\xbf" + HEADER + "é;ü\r\n".encode("utf-8"), "é"),
    (HEADER + "é;ü\r\n".encode("cp1252"), "é"),
    (HEADER + b"x;y\r\n" * 3 + "€;ü\r\n".encode("cp1252"), "€"),
])
def test_utf8_or_windows_1252_detected(data, values):
    rows, issues = _read(data)
    assert issues == []
    assert rows[-1] == {"a": values, "b": "ü"}


def test_a_file_that_mixes_encodings_or_holds_an_undefined_byte_names_its_line():
    _, issues = _read(HEADER + "é;x\r\n".encode("utf-8") + b"x;y\r\n" + "é;x\r\n".encode("cp1252"))
    assert issues == [("IN005", 4, "byte b'\\xe9' at column 1 is not UTF-8, as line 2 was: the file mixes two encodings")]
    _, issues = _read(HEADER + b"x;y\r\n" + b"\x81;x\r\n")
    assert issues == [("IN005", 3, "byte b'\\x81' at column 1 is neither UTF-8 nor Windows-1252")]
    _, issues = _read(b'{"a": "x"}\n{"a": "\x81"}\n', "ndjson")
    assert [(code, line) for code, line, _ in issues] == [("IN005", 2)]


def test_a_json_array_in_windows_1252_is_detected_too():
    rows, issues = _read('[{"a": "Müller", "b": "é"}]'.encode("cp1252"), "json")
    assert issues == [] and rows == [{"a": "Müller", "b": "é"}]
    rows, issues = _read('[{"a": "Müller"}]'.encode("cp1252"), "json", "utf-8")
    assert [code for code, *_ in issues] == ["IN005"]



# --- a byte-order mark, and UTF-8 bytes under another encoding -------------------------------

BOM = b"\xef\xbb\xbf"
UTF8_ROWS = HEADER + b"x;y\r\n" + "Weber-Müller;Léa\r\n".encode("utf-8")


@pytest.mark.parametrize("encoding", [None, "detect", "utf-8", "cp1252", "latin-1", "utf-8-sig"])
@pytest.mark.parametrize("fmt, data", [
    ("csv", UTF8_ROWS),
    ("ndjson", '{"a": "x", "b": "y"}\n{"a": "Weber-Müller", "b": "Léa"}\n'.encode("utf-8")),
    ("json", '[{"a": "x", "b": "y"}, {"a": "Weber-Müller", "b": "Léa"}]'.encode("utf-8")),
], ids=["csv", "ndjson", "json"])
def test_a_utf8_byte_order_mark_means_utf8_whatever_the_encoding_set(encoding, fmt, data):
    rows, issues = _read(BOM + data, fmt, encoding)
    assert issues == []
    assert rows == [{"a": "x", "b": "y"}, {"a": "Weber-Müller", "b": "Léa"}]


def test_a_byte_order_mark_then_a_byte_that_is_not_utf8_says_the_mark():
    _, issues = _read(BOM + HEADER + "é;x\r\n".encode("cp1252"), "csv", "cp1252")
    assert issues == [("IN005", 2, "byte b'\\xe9' at column 1 is not UTF-8, which the file's byte-order mark says it is")]


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_utf8_bytes_under_another_encoding_are_refused_at_their_first_line(encoding):
    name = "iso8859-1" if encoding == "latin-1" else encoding
    report = InputReport("in")
    rows = list(read_rows(io.BytesIO(UTF8_ROWS + "Ünal;x\r\n".encode("utf-8")), "csv", report, ("a",), ("b",),
                          Reading(encoding)))
    assert [(i.code, i.line, i.message) for i in report.issues] == [
        ("IN005", 3, f"the file is UTF-8 ('Weber-Müller'), but the encoding is set to {name}, which would read "
                     "'Weber-MÃ¼ller'")]
    assert report.issues[0].hint.startswith('let cnsx detect the encoding: encoding = "detect" (or "utf-8") in the config')
    assert rows == [r for r in rows if r.values["a"].isascii()]   # nothing garbled went through
    _, issues = _read('[{"a": "Weber-Müller"}]'.encode("utf-8"), "json", encoding)
    assert [(code, message.split(",")[0]) for code, _, message in issues] == [
        ("IN005", "the file is UTF-8 ('Weber-Müller')")]


def test_windows_1252_set_reads_windows_1252():
    data = HEADER + b"x;y\r\n" + "Weber-Müller;Léa\r\n€;ü\r\n".encode("cp1252")
    for fmt, text in (("csv", data), ("json", '[{"a": "Müller", "b": "é€"}]'.encode("cp1252"))):
        rows, issues = _read(text, fmt, "cp1252")
        assert issues == [] and rows[-1] in ({"a": "€", "b": "ü"}, {"a": "Müller", "b": "é€"})


def test_a_utf8_line_after_a_windows_1252_one_is_refused_as_a_mix():
    data = HEADER + "Müller;x\r\n".encode("cp1252") + "Weber-Müller;x\r\n".encode("utf-8")
    for encoding in (None, "cp1252"):   # detected, or set
        _, issues = _read(data, "csv", encoding)
        assert issues == [("IN005", 3, "'Weber-Müller' is UTF-8, but line 2 was cp1252: the file mixes two encodings")]


def test_a_byte_order_mark_cut_by_the_reads_of_a_json_array_is_one():
    from cns_exchange.rows.decoding import Decoder

    decoder = Decoder("cp1252")
    text = "".join(decoder.piece(bytes([b]), final=False) for b in BOM + '[{"a": "Müller"}]'.encode("utf-8"))
    assert text + decoder.piece(b"", final=True) == '[{"a": "Müller"}]'


def test_the_config_set_to_windows_1252_refuses_a_utf8_file_and_reads_one_with_a_mark(run, examples, isolated_config):
    (isolated_config / "config.toml").write_text('encoding = "cp1252"\n', "utf-8")
    sessions = examples / "sessions.csv"
    assert sessions.read_bytes().isascii() is False and not sessions.read_bytes().startswith(BOM)
    r = _build(run, "build-invoice", sessions)
    assert r.exit_code == 3 and r.stdout == ""
    assert (f"{sessions}:2: error IN005: the file is UTF-8 ('Léa'), but the encoding is set to cp1252, which would read "
            "'LÃ©a'") in r.stderr
    assert 'hint: let cnsx detect the encoding: encoding = "detect" (or "utf-8") in the config, or --encoding detect' in r.stderr
    marked = examples / "marked.csv"
    marked.write_bytes(BOM + sessions.read_bytes().replace(b"certificate_number", "N° titre".encode("utf-8"), 1))
    r = _build(run, "build-invoice", marked)
    assert r.exit_code == 0, r.stderr
    assert "warning" not in r.stderr.replace("warning NOM05", "")
    (isolated_config / "config.toml").write_text("", "utf-8")
    assert r.stdout_bytes == _build(run, "build-invoice", sessions).stdout_bytes


def test_rows_of_empty_cells_are_skipped_silently_but_a_file_of_them_has_no_rows():
    rows, issues = _read(HEADER + b"x;y\r\n;\r\n  ;  \r\n;;;;;;\r\nz;\r\n")
    assert rows == [{"a": "x", "b": "y"}, {"a": "z", "b": ""}] and issues == []
    rows, issues = _read(HEADER + b";\r\n;\r\n")
    assert rows == [] and [code for code, *_ in issues] == ["IN010"]



# --- a totals line: values in ignored columns only (IN018) -------------------------------------

def with_totals_line(export: bytes) -> tuple[bytes, int]:
    """``export`` (excel_export) with the line a secretary adds under the rows: 'Total' under
    Remarque and the sum under Durée and Montant, every column of cnsx empty; and its number."""
    lines = export.split(b"\r\n")
    header = lines[0].decode("cp1252").split(";")
    cells = [""] * len(header)
    cells[header.index("Durée")], cells[header.index("Montant")], cells[header.index("Remarque")] = "6 h", "622,20", "Total"
    data = [line for line in lines[1:] if line.strip(b";")]
    rest = [line for line in lines[1:] if not line.strip(b";")]
    totals = ";".join(cells).encode("cp1252")
    return b"\r\n".join([lines[0], *data, totals, *rest]), len(data) + 2


@pytest.mark.parametrize("command, canonical, headers", [
    ("build-request", "requests.csv", REQUEST_HEADERS),
    ("build-invoice", "sessions.csv", SESSION_HEADERS),
])
def test_a_totals_line_is_skipped_with_one_warning(run, examples, command, canonical, headers):
    export, line = with_totals_line(excel_export(examples / canonical, headers))
    path = examples / "export-excel.csv"
    path.write_bytes(export)
    r = _build(run, command, path)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == _build(run, command, examples / canonical).stdout_bytes
    warnings = [text for text in r.stderr.splitlines() if "warning IN01" in text]
    assert warnings == [
        f"{path}:1: warning IN017: columns not used by cnsx, ignored: 'Durée', 'Montant', 'Remarque'",
        f"{path}:{line}: warning IN018: only columns cnsx does not use have values here ('Durée', 'Montant', 'Remarque'): "
        "row skipped (a totals line?)"]
    assert "error" not in r.stderr and "IN003" not in r.stderr


def test_strict_refuses_a_totals_line_with_one_error(run, examples):
    export, line = with_totals_line(excel_export(examples / "sessions.csv", SESSION_HEADERS))
    path = examples / "export-excel.csv"
    path.write_bytes(export)
    r = _build(run, "build-invoice", path, "--strict")
    assert r.exit_code == 3 and r.stdout == ""
    assert (f"{path}:{line}: error IN018: only columns cnsx does not use have values here ('Durée', 'Montant', 'Remarque'): "
            "refused (--strict)") in r.stderr
    assert "hint: remove the row from the file, or run without --strict" in r.stderr
    assert "IN003" not in r.stderr


IGNORED = b"a;b;Remarque;;Montant\r\n"


def test_a_row_with_values_in_ignored_columns_only_is_skipped_and_named():
    rows, issues = _read(IGNORED + b"x;;;;\r\n;;Total;;622,20\r\n; ;;n;\r\n;y;Total;;\r\n;;;;\r\n")
    assert rows == [{"a": "x", "b": ""}, {"a": "", "b": "y"}]
    assert issues == [
        ("IN017", 1, "columns not used by cnsx, ignored: 'Remarque', 'Montant'"),
        ("IN018", 3, "only columns cnsx does not use have values here ('Remarque', 'Montant'): row skipped (a totals line?)"),
        ("IN018", 4, "only a column cnsx does not use has a value here ('column 4'): row skipped (a totals line?)"),
    ]
    report = InputReport("in")
    list(read_rows(io.BytesIO(IGNORED + b"x;;;;\r\n;;Total;;\r\n"), "csv", report, ("a",), ("b",), Reading(strict=True)))
    assert [(i.code, i.line, i.severity) for i in report.issues] == [
        ("IN002", 1, "error"), ("IN002", 1, "error"), ("IN018", 3, "error")]


def test_a_file_of_totals_lines_only_has_no_rows():
    rows, issues = _read(IGNORED + b";;Total;;622,20\r\n")
    assert rows == [] and [(code, line) for code, line, _ in issues] == [("IN017", 1), ("IN018", 2), ("IN010", 1)]


def test_no_warning_for_each_row_when_the_header_lacks_a_required_column():
    # Every row holds values in ignored columns only; the header's IN001 says why, once.
    rows, issues = _read(b"Titre;Remarque\r\n" + b"T-1;x\r\n" * 5)
    assert [(code, line) for code, line, _ in issues] == [("IN017", 1), ("IN001", 1)]
    assert len(rows) == 5


def test_headers_are_compared_without_case_accents_or_punctuation():
    report = InputReport("in")
    data = "Référence;MATRICULE;nom;PRENOM;code_medecin;Date d'ordonnance;Pathologies;TRAITEMENT;Ordonnance\n"
    data += "R1;1;N;P;123456;05/10/2026;D01;Prolongation;x.pdf\n"
    rows = list(read_rows(io.BytesIO(data.encode()), "csv", report, REQUEST_COLUMNS, REQUEST_OPTIONAL))
    assert report.issues == []
    assert list(rows[0].values) == list(REQUEST_COLUMNS)


def test_two_headers_giving_one_column_are_refused():
    _, issues = _read(b"a;A;b\r\nx;y;z\r\n")
    assert [(code, line) for code, line, _ in issues] == [("IN002", 1)]


# --- Excel's usual damage ------------------------------------------------------------------

@pytest.mark.parametrize("column, value, hint", [
    ("matricule", "1,96503E+12", "scientific notation"),
    ("matricule", "1.96503e+12", "scientific notation"),
    ("prescriber_code", "23456", "leading zero"),
    ("executing_provider", "12345", "leading zero"),
    ("act_code", "ZD 13", "without a space: ZD13"),
    ("matricule", "19740911867", ""),
    ("matricule", "12345", ""),
    ("act_code", "ZD99", ""),
])
def test_hints_for_what_a_spreadsheet_does_to_a_value(column, value, hint):
    assert (hint in excel_hint(column, value)) if hint else excel_hint(column, value) == ""


def test_a_matricule_in_scientific_notation_says_excel(run, examples):
    path = examples / "s.csv"
    path.write_text("titre;matricule;date;acte\nTPC-1;1,96503E+12;20/10/2026;ZD 13\n", "utf-8")
    r = _build(run, "build-invoice", path)
    assert r.exit_code == 3
    assert "error MAT01" in r.stderr and "hint: Excel wrote this number in scientific notation" in r.stderr
    assert "error ACT01" in r.stderr and "hint: write the act code without a space: ZD13" in r.stderr


def test_a_prescriber_code_that_lost_its_leading_zero_says_so(run, examples):
    text = (examples / "requests.csv").read_text("utf-8").replace(";123456-78;", ";23456;", 1)
    path = examples / "r.csv"
    path.write_text(text, "utf-8")
    r = _build(run, "build-request", path)
    assert r.exit_code == 3
    assert f"{path}:2 [prescriber_code]: error PRS01" in r.stderr
    assert "hint: a spreadsheet drops the leading zero" in r.stderr


def test_cli_md_lists_every_french_header_name():
    from cns_exchange.rows.records import HEADER_NAMES, TREATMENT_NAMES

    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text("utf-8")
    section = text[text.index("#### French header names"):text.index("**What a spreadsheet does to values.**")]
    for column, names in HEADER_NAMES.items():
        row = next((line for line in section.splitlines() if line.startswith(f"| `{column}` |")), "")
        assert row, f"docs/cli.md has no row for {column}"
        assert all(f"`{name}`" in row for name in names if name != column), row
    assert all(f"`{name}`" in text for name in TREATMENT_NAMES)
