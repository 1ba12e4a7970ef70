"""Edges of the command line found by reviews: each gets its documented exit code and a
message, never exit 1 ("internal error") or a silent success."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import EXAMPLES, PROVIDER, ROOT

PAYMENT = EXAMPLES / "CNS_DEC_20261125_000001.xml"
ACK = EXAMPLES / "CNS_ACR_20261120_000001.xml"
SESSIONS = EXAMPLES / "sessions.csv"
BILLING_NAME = "123456_FAC_20261120_000001.xml"


@pytest.mark.parametrize("args", [["status", "--json"], ["import", "--no-db", "--ndjson", str(PAYMENT)]])
def test_a_reader_of_stdout_gone_away_cuts_the_output(data, args):
    # `cnsx ... | head`: the pipe's reader is gone before cnsx writes: 141, as after SIGPIPE,
    # and nothing on stderr.
    assert subprocess.run([sys.executable, "-m", "cns_exchange", "import", str(PAYMENT)], cwd=ROOT,
                          capture_output=True, env=os.environ).returncode == 0
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "cns_exchange", *args], stdout=write_end, stderr=subprocess.PIPE,
                              cwd=ROOT, env=os.environ, timeout=120)
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, b"")


def test_a_reader_of_stderr_gone_away_stops_no_run(data, tmp_path):
    # `cnsx ... 2>&1 | head -1`: the messages after are lost, the run goes on to its own end.
    bad = tmp_path / BILLING_NAME
    bad.write_bytes((EXAMPLES / BILLING_NAME).read_bytes().replace(b"<NumeroLigne>2<", b"<NumeroLigne>x<", 1))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        validate = subprocess.run([sys.executable, "-m", "cns_exchange", "validate", str(bad)], stdout=subprocess.PIPE,
                                  stderr=write_end, cwd=ROOT, env=os.environ, timeout=120)
        imported = subprocess.run([sys.executable, "-m", "cns_exchange", "import", str(bad), str(PAYMENT), str(ACK)],
                                  stdout=subprocess.PIPE, stderr=write_end, cwd=ROOT, env=os.environ, timeout=120)
    finally:
        os.close(write_end)
    assert validate.returncode == 3
    assert imported.returncode == 0
    import sqlite3

    names = {row[0] for row in sqlite3.connect(data / "practice.sqlite").execute("SELECT name FROM documents")}
    assert names == {bad.name, PAYMENT.name, ACK.name}


def test_an_encoding_that_is_not_for_text_is_a_usage_error(run):
    r = run("build-invoice", "--provider", PROVIDER, "--encoding", "rot13", str(SESSIONS))
    assert r.exit_code == 2 and "unknown encoding 'rot13'" in r.stderr and "internal error" not in r.stderr


def test_an_output_folder_that_cannot_take_a_file_is_named(run, tmp_path):
    r = run("build-invoice", "--provider", PROVIDER, "--no-certificate-check", "-o", "/proc/x.xml", str(SESSIONS))
    assert r.exit_code == 8, r.stderr
    assert "/proc: cannot create a file in this folder" in r.stderr and "internal error" not in r.stderr


def test_a_local_folder_setting_that_is_a_file(run, data, tmp_path, monkeypatch):
    not_a_folder = tmp_path / "inbox"
    not_a_folder.write_text("")
    monkeypatch.setenv("CNSX_INBOX", str(not_a_folder))
    r = run("import")
    assert r.exit_code == 8 and str(not_a_folder) in r.stderr and "internal error" not in r.stderr
    assert "Not a directory" in r.stderr or "a file stands where the path needs a folder" in r.stderr, r.stderr


@pytest.mark.parametrize("args", [["status", "--json", "--csv"], ["import", "--no-db", "--json", "--csv", str(ACK)],
                                  ["import", "--no-db", "--ndjson", "--json", str(ACK)]])
def test_two_output_formats_are_a_usage_error(run, data, args):
    r = run(*args)
    assert r.exit_code == 2 and "one output format at a time" in r.stderr and r.stdout == ""


def test_csv_of_two_kinds_is_refused_before_anything_is_imported(run, data):
    r = run("import", "--csv", str(PAYMENT), str(ACK))
    assert r.exit_code == 2 and "one document kind per run" in r.stderr and r.stdout == ""
    assert not (data / "practice.sqlite").exists()


def test_one_case_at_a_time_and_a_matricule_as_pasted(run, data):
    assert run("import", str(EXAMPLES / "123456_FAC_20261120_000001.xml"), str(PAYMENT)).exit_code == 0
    assert run("status", "--certificate", "TPC-2026-000101", "--patient", "1974091186700").exit_code == 2
    exact = json.loads(run("status", "--json", "--patient", "1974091186700").stdout)
    pasted = json.loads(run("status", "--json", "--patient", " 1974 0911 867 00 ").stdout)
    assert pasted == exact and exact["per_month"]
    assert json.loads(run("status", "--json", "--certificate", " TPC-2026-000101 ").stdout)["per_month"]


def test_control_characters_of_an_input_cell_are_shown_escaped(run, tmp_path):
    sessions = tmp_path / "sessions.csv"
    sessions.write_text("certificate_number,matricule,session_date,act_code\n"
                        "TPC-2026-000101,1974091186700,2026-10-20,\x1b]0;owned\x07ZD\x1b[31m\n", "utf-8")
    r = run("build-invoice", "--provider", PROVIDER, "--no-certificate-check", str(sessions))
    assert r.exit_code == 3
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert "\\x1b]0;owned\\x07zd\\x1b[31m" in r.stderr.lower()  # (act codes are read upper-cased)


def _cnsx(args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cns_exchange", *args], cwd=ROOT, env=os.environ,
                          capture_output=True, timeout=120)


def test_a_closed_stdout_or_stdin_is_a_usage_error_only_where_needed(data):
    assert _cnsx(["import", str(ACK)]).returncode == 0
    # A shell's >&- and <&- start cnsx without fd 1 or fd 0.
    closed_out = subprocess.run(f"{sys.executable} -m cns_exchange status --json >&-", shell=True, cwd=ROOT,
                                env=os.environ, capture_output=False, stderr=subprocess.PIPE, timeout=120)
    assert closed_out.returncode == 2 and b"stdout is closed" in closed_out.stderr
    closed_in = subprocess.run(f"{sys.executable} -m cns_exchange import --no-db --csv - <&-", shell=True, cwd=ROOT,
                               env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert closed_in.returncode == 2 and b"stdin is closed" in closed_in.stderr
    quiet = subprocess.run(f"{sys.executable} -m cns_exchange import {ACK} >&-", shell=True, cwd=ROOT,
                           env=os.environ, stderr=subprocess.PIPE, timeout=120)
    assert quiet.returncode == 0, quiet.stderr  # a command that writes nothing on stdout runs as usual


def test_a_full_disk_under_stdout(data):
    assert _cnsx(["import", str(ACK)]).returncode == 0
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "cns_exchange", "status", "--json"], cwd=ROOT, env=os.environ,
                           stdout=full, stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 8 and b"error: stdout: No space left on device" in r.stderr, r.stderr
    assert b"internal error" not in r.stderr and r.stderr.count(b"error:") == 1


def test_an_unreadable_file_given_by_path_is_copied_not_moved(run, data, tmp_path):
    broken = tmp_path / "CNS_DEC_20261125_000009.xml"
    broken.write_text("<JustificatifPaiement><EnTete>")
    r = run("import", str(broken))
    assert r.exit_code == 3 and f"a copy kept in {data / 'errors' / broken.name}" in r.stderr
    assert broken.exists()


def test_a_folder_given_to_import_is_named_as_a_folder(run, data, tmp_path):
    r = run("import", str(tmp_path))
    assert r.exit_code == 3 and f"{tmp_path}: a folder, not a document" in r.stderr


@pytest.mark.parametrize("option", ["--upload-dir", "--download-dir"])
def test_the_sandbox_writes_only_under_its_root(run, tmp_path, option):
    root = tmp_path / "root"
    root.mkdir()
    r = run("sandbox", "--root", str(root), option, "../outside", "--once")
    assert r.exit_code == 2 and "outside the root" in r.stderr
    assert not (tmp_path / "outside").exists()


def _edited(tmp_path, source, name, edit):
    path = tmp_path / name
    path.write_bytes(edit(source.read_bytes()))
    return path


def test_rows_left_out_of_an_import_are_warned_about(run, data, tmp_path):
    billing = EXAMPLES / "123456_FAC_20261120_000001.xml"
    twice = _edited(tmp_path, billing, billing.name, lambda b: b.replace(b"<NumeroLigne>2<", b"<NumeroLigne>1<", 1))
    r = run("import", str(twice))
    assert r.exit_code == 0, r.stderr
    [line] = [line for line in r.stderr.splitlines() if "DOC08" in line]  # one warning, both sessions' lines named
    first, second = [n for n, text in enumerate(twice.read_text().splitlines(), 1) if "<Seance>" in text][:2]
    assert (f"warning DOC08: line number 1 appears twice in fee note 1 (lines {first} and {second}): "
            "the second was not imported") in line
    request = EXAMPLES / "123456_DTP_20261120_000001.xml"
    assert "IN007" not in run("import", str(request)).stderr
    again = _edited(tmp_path, request, "123456_DTP_20261121_000002.xml",
                    lambda b: b.replace(b"<NumeroSequence>1<", b"<NumeroSequence>2<", 1))
    r = run("import", str(again))
    assert r.exit_code == 0 and r.stderr.count("warning IN007") == 3 and "from an earlier file" in r.stderr


def test_fee_notes_are_not_written_to_a_folder_named_dash(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("print", "fee-notes", "-o", "-", str(EXAMPLES / BILLING_NAME))
    assert r.exit_code == 2 and "they go to a folder" in r.stderr
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("row", ['TPC-2026-000101,1974091186700,2026-10-20,"ZD11\n',
                                 'TPC-2026-000101,1974091186700,"2026-10-20"x,ZD11\n'])
def test_a_quote_left_open_or_misplaced_is_a_csv_syntax_error(run, tmp_path, row):
    sessions = tmp_path / "sessions.csv"
    sessions.write_text("certificate_number,matricule,session_date,act_code\n" + row, "utf-8")
    r = run("build-invoice", "--provider", PROVIDER, "--no-certificate-check", str(sessions))
    assert r.exit_code == 3 and "IN006" in r.stderr and "CSV syntax error" in r.stderr and r.stdout == ""
